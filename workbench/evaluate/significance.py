"""Did fine-tuning change a score, or is the difference noise? A paired sign test over the same questions.

    from workbench.evaluate.significance import sign_test, paired_sign_test
    sign_test([0, 1, 0, 0], [1, 1, 1, 0])       # SignTest(n_improved=2, n_worsened=0, n_ties=2, p_value=0.5)
    # from workbench.evaluate.harness.run_suite results on the same suite before and after training:
    paired_sign_test(base_result, tuned_result, "legal_cloze_chat", "acc_mutual_info")
    # or from the samples artifacts a run logs (base/<suite>/ and eval/<suite>/ on the MLflow run):
    paired_sign_test(read_samples("base/samples_legal_cloze_chat.jsonl"),
                     read_samples("eval/samples_legal_cloze_chat.jsonl"), metric="acc_mutual_info")

Each question is right (1) or wrong (0) before and after. Questions right both times or wrong both times
(ties) say nothing about the change; of the others, under "no effect" each is equally likely to have
improved or worsened, so the number improved is Binomial(improved + worsened, 1/2). The p-value is that
binomial's exact two-sided tail (scipy.stats.binomtest; the same sum by hand if scipy is missing). It uses
the pairing that two independent accuracies with their own standard errors ignore, so it sees smaller
changes; it counts questions, not how confident the model was.
"""

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from workbench.errors import WorkbenchError


@dataclass(frozen=True)
class SignTest:
    n_improved: int  # wrong before, right after
    n_worsened: int  # right before, wrong after
    n_ties: int  # the same both times
    p_value: float  # exact two-sided sign test; 1.0 when nothing changed

    def as_dict(self) -> dict:
        return asdict(self)


def _binomial_two_sided(k: int, n: int) -> float:
    if n == 0:
        return 1.0
    try:
        from scipy.stats import binomtest
    except ImportError:  # the exact sum: Binomial(n, 1/2) is symmetric, so double the smaller tail
        tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
        return min(1.0, 2 * tail)
    return float(binomtest(k, n, 0.5, alternative="two-sided").pvalue)


def _as_bit(value, where: str) -> int:
    if value in (0, 1) and not isinstance(value, str):  # 0/1, True/False, 0.0/1.0
        return int(value)
    raise WorkbenchError(f"sign test: {where}: expected 0 or 1 (wrong or right), got {value!r}")


def sign_test(before: Sequence, after: Sequence) -> SignTest:
    """Per-question correctness before and after (0/1, the same questions in the same order)."""
    if len(before) != len(after):
        raise WorkbenchError(f"sign test: {len(before)} questions before but {len(after)} after; "
                             "pair the same questions (align them by doc_id)")
    improved = worsened = 0
    for i, (b, a) in enumerate(zip(before, after)):
        b, a = _as_bit(b, f"before[{i}]"), _as_bit(a, f"after[{i}]")
        improved += a > b
        worsened += b > a
    return SignTest(improved, worsened, len(before) - improved - worsened,
                    _binomial_two_sided(improved, improved + worsened))


def per_doc_scores(samples: Sequence[Mapping], metric: str = "acc_mutual_info",
                   filter_name: str = "none") -> dict[int, float]:
    """{doc_id: the metric's value} from lm-eval's logged samples (one record per document and filter)."""
    scores = {}
    for record in samples:
        if record.get("filter", "none") != filter_name:
            continue
        if metric not in record:
            known = sorted(k for k, v in record.items() if isinstance(v, (int, float)) and k != "doc_id")
            raise WorkbenchError(f"sign test: the samples carry no per-document '{metric}'; "
                                 f"they have: {', '.join(known)}")
        scores[int(record["doc_id"])] = record[metric]
    if not scores:
        raise WorkbenchError(f"sign test: no samples with filter '{filter_name}'")
    return scores


def task_samples(result: Mapping, task: str) -> list:
    """The logged samples of one lm-eval task in `workbench.evaluate.harness.run_suite`'s result
    (chat entries are named `<task>_chat`, e.g. legal_cloze_chat)."""
    samples = result.get("samples") or {}
    if task not in samples:
        raise WorkbenchError(f"sign test: no samples for task '{task}' in the eval result; it has: "
                             f"{', '.join(sorted(samples)) or 'none (run_suite logs them)'}")
    return samples[task]


def read_samples(path: str | Path) -> list[dict]:
    """The records of a `samples_<task>.jsonl` artifact (what `log_to_run` writes under `<prefix>/<suite>/`)."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"{path}: file not found")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise WorkbenchError(f"{path}: row {number}: not valid JSON ({exc.msg})") from None
    return records


def paired_sign_test(before, after, task: str | None = None, metric: str = "acc_mutual_info",
                     filter_name: str = "none") -> SignTest:
    """The sign test of `metric` between two evaluations of the same documents.

    `before`/`after` are run_suite results (then `task` names the lm-eval task, e.g. "legal_cloze_chat")
    or lists of sample records (read_samples). Documents are paired by doc_id; both must cover the same ones.
    """
    runs = []
    for label, value in (("before", before), ("after", after)):
        if isinstance(value, Mapping):
            if task is None:
                raise WorkbenchError("sign test: name the task when passing run_suite results")
            value = task_samples(value, task)
        runs.append(per_doc_scores(value, metric, filter_name))
    scores_before, scores_after = runs
    if scores_before.keys() != scores_after.keys():
        only = sorted(scores_before.keys() ^ scores_after.keys())
        raise WorkbenchError(f"sign test: the two evaluations cover different documents "
                             f"({len(scores_before)} vs {len(scores_after)}; e.g. doc_id {only[0]} is in one only)")
    ids = sorted(scores_before)
    return sign_test([scores_before[i] for i in ids], [scores_after[i] for i in ids])
