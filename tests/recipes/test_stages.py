"""Staged training (train.stages): in each phase exactly the parameters it names change, and the boundaries
land on the configured steps, also when a run is killed in the middle of a phase and resumed."""

import mlflow
import pytest
import torch
from support import FAST
from transformers import TrainerCallback

from workbench.recipe.load import load_recipe
from workbench.train.build import build
from workbench.train.stages import group_of, starts

STEPS = 8  # legal-staged's shares 0.25 / 0.5 / 0.25: steps 1-2, 3-6, 7-8
EXPECTED = {1: {"routed_experts", "shared_experts", "embeddings", "lm_head"}, 2: "all", 3: {"router"}}
ALL = {"attention", "router", "shared_experts", "routed_experts", "dense_mlp", "embeddings", "lm_head", "norms"}


class Changes(TrainerCallback):
    """After every optimizer step: which parameter groups changed at all, and whether the router bias moved."""

    def __init__(self, model):
        self.model, self.changed, self.bias_moved = model, {}, {}
        self.before = self._snapshot()

    def _snapshot(self):
        weights = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        biases = [b.detach().clone() for n, b in self.model.named_buffers() if n.endswith("e_score_correction_bias")]
        return weights, biases

    def on_step_end(self, args, state, control, **kwargs):
        after = self._snapshot()
        self.changed[state.global_step] = {group_of(n) for n, w in after[0].items() if not torch.equal(w, self.before[0][n])}
        self.bias_moved[state.global_step] = any(not torch.equal(a, b) for a, b in zip(after[1], self.before[1]))
        self.before = after


class Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 5:  # after the step-4 checkpoint, in the middle of the second phase
            raise KeyboardInterrupt


def _recipe(isolated, out):
    return load_recipe("legal-staged", isolated["overrides"][:1] + FAST + [
        f"train.max_steps={STEPS}", "train.eval_steps=100", "train.save_steps=4", f"train.output_dir={isolated['tmp'] / out}"])


def _expected(step: int) -> set:
    stage = 1 if step <= 2 else 2 if step <= 6 else 3
    return ALL if EXPECTED[stage] == "all" else EXPECTED[stage]


def test_each_stage_changes_exactly_its_groups_on_the_configured_steps_also_across_a_resume(isolated):
    recipe = _recipe(isolated, "whole")
    assert starts(recipe.train.stages, STEPS) == [0, 2, 6]
    run = build(recipe)
    changes = Changes(run.trainer.model)
    run.trainer.add_callback(changes)
    run.train()
    run.close()
    assert {step: changes.changed[step] for step in range(1, STEPS + 1)} == {s: _expected(s) for s in range(1, STEPS + 1)}
    # balance: none in phases 1 and 3 (routing fixed, then held), aux_free from the recipe in phase 2
    assert changes.bias_moved == {1: False, 2: False, 3: True, 4: True, 5: True, 6: True, 7: False, 8: False}
    client = mlflow.MlflowClient(isolated["uri"])
    stage_points = sorted((m.step, m.value) for m in client.get_metric_history(run.tracker.run_id, "train/stage"))
    assert stage_points == [(0, 0.0), (2, 1.0), (6, 2.0)]
    assert client.get_run(run.tracker.run_id).data.tags["train.stages"] == (
        "expert_warmup: steps 1-2, joint: steps 3-6, sparsify: steps 7-8")
    # phase 3 trains at 8x the linear schedule's learning rate, the recipe's lr_scale (logged: the rate step k trained at)
    lrs = {m.step: m.value for m in client.get_metric_history(run.tracker.run_id, "train/learning_rate")}
    linear = {k: recipe.train.lr * (STEPS - k + 1) / STEPS for k in lrs}
    assert recipe.train.stages[2].lr_scale == 8
    assert lrs == pytest.approx({k: v * (8.0 if k > 6 else 1.0) for k, v in linear.items()}, rel=1e-6)

    # the same recipe killed at step 5 (after the step-4 checkpoint, in the middle of phase 2), then resumed
    resumed = _recipe(isolated, "resumed")
    first = build(resumed)
    first.trainer.add_callback(Crash())
    with pytest.raises(KeyboardInterrupt):
        first.train()
    first.close()
    second = build(resumed, resume=True)
    assert second.resume_from.endswith("checkpoint-4")
    changes = Changes(second.trainer.model)
    second.trainer.add_callback(changes)
    second.train()
    second.close()
    assert changes.changed == {s: _expected(s) for s in range(5, STEPS + 1)}
    # the frozen groups kept their values across the restart, the optimizer state came back: the same end point
    for (name, a), (_, b) in zip(run.trainer.model.named_parameters(), second.trainer.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
