"""Evaluation: suites and their lm-eval tasks (tasks.py, harness.py), your own question files (questions.py),
contamination (contamination.py), the retention gate (retention.py), paired sign tests (significance.py), a run's
before/after evals (recipe_evals.py), the code sandbox (sandbox.py, sandboxed/), verifiable rewards (rewards.py)
and the held-out reward report (reward_report.py).

May import: scale, model, recipe, moe, data, track and the base modules.
"""
