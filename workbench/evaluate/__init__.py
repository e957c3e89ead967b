"""Evaluation: suites and their lm-eval tasks (tasks.py, harness.py), your own question files (questions.py),
contamination (contamination.py), the retention gate (retention.py), paired sign tests (significance.py), a run's
before/after evals (recipe_evals.py), verifiable rewards (rewards.py) and the held-out reward report
(reward_report.py).

The code sandbox: sandbox.py (the API and the verdict rule: the program in one sandbox, the tests in another),
sandbox_launch.py (starting one sandboxed process), sandbox_supervise.py (watching and relaying plain data),
sandbox_isolation.py (what a probe verifies inside); sandboxed/ holds what runs inside (never imported).
The sandbox modules use the standard library only.

May import: scale, model, recipe, moe, data, track and the base modules.
"""
