"""The paired sign test: exact p-values against known binomial tails, pairing by doc_id, and per-document
correctness read from a real `run_suite` result and from the samples artifact it logs.

    .venv/bin/python -m pytest -q tests/unit/evaluate/test_significance.py
"""

import copy
import sys

import pytest

from workbench.errors import WorkbenchError
from workbench.evaluate.significance import SignTest, paired_sign_test, per_doc_scores, read_samples, sign_test, task_samples

TASK, SCORE = "legal_cloze_chat", "legal_cloze_chat/acc_mutual_info_none"


def test_counts_and_exact_two_sided_p_value():
    before = [0, 0, 0, 1, 1, 0, 1]
    after = [1, 1, 1, 1, 0, 0, 1]
    # 3 improved, 1 worsened, 3 ties: P(X <= 1 or X >= 3 | Binomial(4, 1/2)) = (1 + 4 + 4 + 1) / 16
    assert sign_test(before, after) == SignTest(n_improved=3, n_worsened=1, n_ties=3, p_value=10 / 16)
    assert sign_test([0] * 10, [1] * 10).p_value == pytest.approx(2 / 2 ** 10)  # ten of ten: 0.00195
    assert sign_test([True, False], [True, False]) == SignTest(0, 0, 2, 1.0)  # nothing changed
    assert sign_test([1.0, 0.0], [0.0, 0.0]).n_worsened == 1  # lm-eval logs correctness as floats


def test_the_formula_without_scipy_matches_scipy(monkeypatch):
    cases = [(k, n) for n in (1, 5, 12, 40) for k in range(0, n + 1, max(1, n // 6))]
    with_scipy = [sign_test([0] * k + [1] * (n - k), [1] * k + [0] * (n - k)).p_value for k, n in cases]
    monkeypatch.setitem(sys.modules, "scipy.stats", None)  # `from scipy.stats import binomtest` now fails
    without = [sign_test([0] * k + [1] * (n - k), [1] * k + [0] * (n - k)).p_value for k, n in cases]
    assert without == pytest.approx(with_scipy, rel=1e-12)
    assert with_scipy[0] == pytest.approx(1.0) and min(with_scipy) < 1e-10  # the grid spans the range


@pytest.mark.parametrize("before, after, message", [
    ([0, 1], [1], "2 questions before but 1 after"),
    ([0, 2], [1, 1], "before[1]: expected 0 or 1"),
    ([0, 1], [1, "1"], "after[1]: expected 0 or 1"),
])
def test_bad_input_is_named(before, after, message):
    with pytest.raises(WorkbenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sign_test(before, after)


@pytest.fixture(scope="module")
def suite_result(tiny):
    from workbench.evaluate.harness import run_suite

    model, tokenizer = tiny
    return run_suite(model, tokenizer, "legal_chat", limit=6)


def test_per_document_correctness_from_run_suite_averages_to_the_score(suite_result):
    scores = per_doc_scores(task_samples(suite_result, TASK), "acc_mutual_info")
    assert sorted(scores) == list(range(6))
    assert sum(scores.values()) / 6 == pytest.approx(suite_result["scores"][SCORE])
    with pytest.raises(WorkbenchError, match="no samples for task 'legal_cloze'.*legal_cloze_chat"):
        task_samples(suite_result, "legal_cloze")  # a chat entry is renamed <task>_chat
    with pytest.raises(WorkbenchError, match="no per-document 'exact_match'.*acc_mutual_info"):
        per_doc_scores(task_samples(suite_result, TASK), "exact_match")


def test_paired_by_doc_id_not_by_position(suite_result):
    before = task_samples(suite_result, TASK)
    after = copy.deepcopy(before)[::-1]  # the same documents, listed the other way round
    flipped = {record["doc_id"]: record for record in after}
    for doc_id in (0, 1, 2):  # three documents change: each flip is an improvement or a worsening
        flipped[doc_id]["acc_mutual_info"] = 1.0 - flipped[doc_id]["acc_mutual_info"]
    was = {record["doc_id"]: record["acc_mutual_info"] for record in before}
    expected_improved = sum(was[doc_id] == 0 for doc_id in (0, 1, 2))
    result = paired_sign_test({"samples": {TASK: before}}, {"samples": {TASK: after}}, TASK)
    assert (result.n_improved, result.n_worsened, result.n_ties) == (expected_improved, 3 - expected_improved, 3)
    with pytest.raises(WorkbenchError, match="cover different documents"):
        paired_sign_test(before, after[1:])


def test_reads_the_samples_artifact_a_run_logs(suite_result, tmp_path):
    from workbench.evaluate.harness import _write_artifacts

    _write_artifacts(tmp_path, suite_result)  # what log_to_run uploads under <prefix>/<suite>/
    records = read_samples(tmp_path / f"samples_{TASK}.jsonl")
    assert per_doc_scores(records) == per_doc_scores(task_samples(suite_result, TASK))
    (tmp_path / "broken.jsonl").write_text('{"doc_id": 0}\n{"doc_id"\n')
    with pytest.raises(WorkbenchError, match="broken.jsonl: row 2: not valid JSON"):
        read_samples(tmp_path / "broken.jsonl")
