"""Shared by the end-to-end tests: fast overrides for the tiny model and MLflow metric histories."""

FAST = ["train.batch_size=4", "train.max_length=256", "train.logging_steps=1", "train.save_steps=100",
        "data.max_rows=48", "data.eval_fraction=0.1",
        "eval.suite=null"]  # the legal recipe's before/after evals: tests/recipes/test_legal_recipe.py


def history(client, run_id, key):
    return [m.value for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def killed_after(recipe, step: int):
    """Build `recipe` and train it until a KeyboardInterrupt at the end of `step` (like a killed job); the closed run."""
    import pytest
    from transformers import TrainerCallback

    from workbench.train.build import build

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    run = build(recipe)
    run.trainer.add_callback(Kill())
    with pytest.raises(KeyboardInterrupt):
        run.train()
    run.close()
    return run
