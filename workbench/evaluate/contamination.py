"""Find eval rows that share an n-gram with training files: GPT-3's and lm-eval's decontamination rule.

    workbench contamination data/legal/sft.jsonl data/legal/preference.jsonl --eval data/legal/mc_test.jsonl
    workbench contamination TRAIN... --eval EVAL... [--ngram 13] [--json]    # exit 0 clean, 1 overlap, 2 bad input

    from workbench.evaluate.contamination import overlapping_rows, check, suite_data_files, task_data_files
    overlapping_rows(["data/legal/sft.jsonl"], ["data/legal/mc_test.jsonl"])   # [Overlap(...), ...], [] when clean
    check(train, evals, n=13).counts       # {"data/legal/mc_test.jsonl": (overlapping rows, rows), ...}
    suite_data_files("legal_chat")         # the local files the suite's lm-eval tasks read (mc_test, mc_dev)

The rule is lm-eval's (`lm_eval/decontamination/janitor.py`, after GPT-3, Brown et al. 2020, appendix C):
lowercase, delete ASCII punctuation, split on whitespace, n = 13 words. A row's text is every string value
in it, recursively (chat messages' contents, prompt/chosen/rejected, question and choices), joined by
newlines, so an n-gram may span two fields, as it would in the prompt a model sees. A row shorter than n
words has no n-grams and is never flagged: use a smaller --ngram for short rows.
Files: .jsonl, .json (a list of rows, one object, or JSON lines), .parquet; `.gz` on the first two.
"""

import contextlib
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from workbench.data.load import json_lines
from workbench.errors import WorkbenchError

DEFAULT_NGRAM = 13  # lm-eval's Janitor default and GPT-3's cut-off
SUFFIXES = (".jsonl", ".json", ".parquet", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class Overlap:
    eval_file: str
    row: int  # 1-based: the line of a .jsonl, the position in a .json list or a .parquet table
    ngram: str  # the row's first n-gram (normalised) that the training text also has
    train_file: str  # where that n-gram first occurs in the training files
    train_row: int


@dataclass
class Report:
    n: int
    overlaps: list[Overlap] = field(default_factory=list)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # eval file -> (overlapping rows, rows)
    train_rows: int = 0

    @property
    def clean(self) -> bool:
        return not self.overlaps

    def as_dict(self) -> dict:
        return {"ngram": self.n, "clean": self.clean, "train_rows": self.train_rows,
                "files": {f: {"overlapping_rows": k, "rows": total} for f, (k, total) in self.counts.items()},
                "overlaps": [vars(o) for o in self.overlaps]}


@cache
def _janitor():
    # janitor.py prints a warning and a traceback on import when its optional C++ helper is missing;
    # keep them off stdout (which may be carrying --json) and stderr.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from lm_eval.decontamination import janitor
    return janitor


@cache
def _normaliser(n: int):
    return _janitor().Janitor(ngram_n=n).normalize_string


def ngrams(text: str, n: int = DEFAULT_NGRAM) -> Iterator[str]:
    """Word n-grams of `text` under lm-eval's normalisation (Janitor.normalize_string, then word_ngrams)."""
    return _janitor().word_ngrams(_normaliser(n)(text), n)


def row_text(value) -> str:
    """Every string value of a row, recursively, one per line (keys, numbers and booleans left out)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return ""
    return "\n".join(text for text in (row_text(v) for v in value) if text)


def _decoded(path: Path, label: str) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise WorkbenchError(f"{label}: not a readable gzip file ({exc})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = " of the decompressed data" if path.suffix == ".gz" else ""
        raise WorkbenchError(f"{label}: not UTF-8: invalid byte 0x{data[exc.start]:02x} at byte offset "
                             f"{exc.start}{where}") from None


def _parquet_rows(path: Path, label: str) -> list[tuple[int, object]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # a malformed file: say which, not where inside pyarrow
        raise WorkbenchError(f"{label}: cannot read as parquet: {str(exc).splitlines()[0]}") from None
    return list(enumerate(table.to_pylist(), start=1))


def read_rows(path: str | Path) -> list[tuple[int, object]]:
    """(row number, row) for each row of a .jsonl/.json/.parquet file; bad input is a one-line WorkbenchError."""
    label, path = str(path), Path(path)
    if not path.is_file():
        raise WorkbenchError(f"{label}: file not found")
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise WorkbenchError(f"{label}: unsupported file type (expected {', '.join(SUFFIXES)})")
    if name.endswith(".parquet"):
        return _parquet_rows(path, label)
    text = _decoded(path, label)
    if name.endswith((".json", ".json.gz")):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return json_lines(text, label)  # datasets' json loader reads JSON lines from a .json file too
        return list(enumerate(document if isinstance(document, list) else [document], start=1))
    return json_lines(text, label)


def train_ngram_index(train_paths: Iterable[str | Path],
                      n: int = DEFAULT_NGRAM) -> tuple[dict[str, tuple[str, int]], int]:
    """({n-gram: (file, row) of its first occurrence}, rows read) over the training files."""
    index, rows = {}, 0
    for path in train_paths:
        for number, row in read_rows(path):
            rows += 1
            for gram in ngrams(row_text(row), n):
                index.setdefault(gram, (str(path), number))
    return index, rows


def check(train_paths: Iterable[str | Path], eval_paths: Iterable[str | Path], n: int = DEFAULT_NGRAM) -> Report:
    """Every eval row that shares an n-gram with the training files, and per eval file (overlapping, rows)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise WorkbenchError(f"contamination: --ngram must be an integer >= 1, got {n!r}")
    train_paths, eval_paths = list(train_paths), list(eval_paths)
    if not train_paths or not eval_paths:
        raise WorkbenchError("contamination: needs at least one training file and one eval file")
    eval_rows = {str(path): read_rows(path) for path in eval_paths}  # read first: bad eval input fails fast
    index, train_rows = train_ngram_index(train_paths, n)
    report = Report(n=n, train_rows=train_rows)
    for label, rows in eval_rows.items():
        hits = 0
        for number, row in rows:
            gram = next((g for g in ngrams(row_text(row), n) if g in index), None)
            if gram is not None:
                hits += 1
                report.overlaps.append(Overlap(label, number, gram, *index[gram]))
        report.counts[label] = (hits, len(rows))
    return report


def overlapping_rows(train_paths: Iterable[str | Path], eval_paths: Iterable[str | Path],
                     n: int = DEFAULT_NGRAM) -> list[Overlap]:
    """The eval rows that share an n-gram with the training files, in file and row order; [] when clean."""
    return check(train_paths, eval_paths, n).overlaps


def _task_files(manager, name: str, seen: set) -> list[Path]:
    if name in seen:
        return []
    seen.add(name)
    entry = manager.task_index.get(name)
    if entry is None:
        raise WorkbenchError(f"lm-eval task '{name}' is not defined in evals/tasks (nor upstream)")
    cfg = entry.cfg or {}
    files = _data_files((cfg.get("dataset_kwargs") or {}).get("data_files"))
    members = cfg.get("task") if isinstance(cfg.get("task"), list) else []  # a group lists its tasks
    members += [other for other, e in manager.task_index.items() if name in (e.tags or ())]  # a tag
    for member in members:
        if isinstance(member, dict):  # an inline task inside a group
            files += _data_files((member.get("dataset_kwargs") or {}).get("data_files"))
            member = member.get("task") if isinstance(member.get("task"), str) else None
        if member:
            files += _task_files(manager, member, seen)
    return files


def _data_files(spec) -> list[Path]:
    """`dataset_kwargs.data_files` as paths: a path, a list of paths, or {split: path or list}."""
    if spec is None:
        return []
    if isinstance(spec, (str, Path)):
        return [Path(spec)]
    if isinstance(spec, dict):
        spec = list(spec.values())
    return [path for item in spec for path in _data_files(item)]


def task_data_files(task: str, manager=None) -> list[Path]:
    """The local data files an lm-eval task (or group, or tag) of evals/tasks reads, placeholders filled in
    by `workbench.evaluate.tasks.task_dir()`; a task on a hub dataset reads none."""
    if manager is None:
        from workbench.evaluate.tasks import task_manager

        manager = task_manager()
    return list(dict.fromkeys(_task_files(manager, task, set())))


def suite_data_files(suite: str, source: str = "local") -> list[Path]:
    """The local data files every task of an eval suite (evals/suites.yaml, or an own questions file) reads,
    without repeats; an own questions file counts as itself and its few-shot file, not the task's copy of them."""
    from workbench.evaluate.tasks import suite_tasks, task_manager
    from workbench.evaluate.questions import question_files

    tasks = suite_tasks(suite, source)
    manager = task_manager(()) if any(not t.questions for t in tasks) else None
    files = [p for t in tasks for p in (question_files(t.questions) if t.questions else task_data_files(t.task, manager))]
    return list(dict.fromkeys(files))


def render(report: Report) -> str:
    """What the CLI prints: each overlapping row, then one count per eval file."""
    lines = [f"{o.eval_file}: row {o.row}: shares a {report.n}-gram with {o.train_file} row {o.train_row}: "
             f"\"{o.ngram}\"" for o in report.overlaps]
    for label, (hits, total) in report.counts.items():
        lines.append(f"{label}: {hits} of {total} rows share a {report.n}-gram with the training files")
    lines.append("clean" if report.clean else f"overlap found: {len(report.overlaps)} rows")
    return "\n".join(lines)
