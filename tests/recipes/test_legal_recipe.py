"""The legal recipe as shipped: the run carries the held-out legal score before and after training, and
after is higher (the acceptance test of `make finetune RECIPE=legal`).

    .venv/bin/python -m pytest -q tests/recipes/test_legal_recipe.py     (about 2.5 min on 2 CPU cores)

Only where the run writes is overridden (its MLflow store and output folder): the full 3 epochs, the
recipe's seed and its eval section run as a user gets them, so the scores are real measurements.
"""

import pytest

from workbench.config import load_recipe
from workbench.run import build

SCORE = "legal_cloze_chat/acc_mutual_info_none"  # domain-conditional PMI; see evals/tasks/legal/legal_cloze.yaml
CHANCE = 0.25  # four choices


@pytest.mark.slow
def test_legal_recipe_scores_the_held_out_questions_higher_after_training(isolated):
    import mlflow

    recipe = load_recipe("legal", isolated["overrides"])
    assert recipe.eval.suite == "legal_chat" and recipe.train.max_steps == -1 and recipe.data.max_rows is None
    run = build(recipe)
    try:
        run.train()
    finally:
        run.close()
    client = mlflow.MlflowClient(isolated["uri"])
    record = client.get_run(run.tracker.run_id)
    metrics = record.data.metrics
    assert record.info.status == "FINISHED"
    assert {name.split("/", 1)[0] for name in metrics if name.endswith("acc_none")} == {"base", "eval"}
    before, after = metrics[f"base/{SCORE}"], metrics[f"eval/{SCORE}"]
    assert abs(before - CHANCE) < 0.1  # the random-init base model guesses
    # Measured on 2 CPU cores: 0.255 -> 0.383-0.463 over seeds 1-4 and 42 (stderr ~0.04; seed 42, the recipe's,
    # repeats exactly: 0.396); the bound is under half the smallest rise.
    assert after > before + 0.05, (before, after)
    losses = [m.value for m in sorted(client.get_metric_history(run.tracker.run_id, "eval/loss"), key=lambda m: m.step)]
    assert losses[-1] < 0.5 * losses[0]  # the held-out conversations: 9.07 -> 3.89-3.93 over those seeds
