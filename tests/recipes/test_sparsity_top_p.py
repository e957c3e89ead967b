"""End to end: legal-staged's sparsity phase adds the gate-entropy penalty in its own steps only, and a top-p run
trains, saves, reloads and exports routed top-p.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/recipes/test_sparsity_top_p.py
"""

import json

import pytest

from workbench.moe.top_p import routing_of

STEPS = 8  # legal-staged's shares 0.25 / 0.5 / 0.25: steps 1-2, 3-6, 7-8 (the sparsity phase)


def _history(client, run_id, key):
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def test_the_sparsity_phase_adds_its_weight_times_the_logged_gate_entropy_in_its_steps_only(train):
    run, client = train("legal-staged", [f"train.max_steps={STEPS}", "train.eval_steps=100", "moe.telemetry_every=1"])
    run_id = run.tracker.run_id
    weight = run.recipe.train.stages[2].sparsity
    assert weight > 0 and run.recipe.moe.sparsity == 0  # the recipe switches it on in its third phase only
    penalty = _history(client, run_id, "moe/sparsity_loss")
    assert sorted(penalty) == [7, 8]
    layers = sorted(run.moe.recorder.layers)
    for step, value in penalty.items():  # the term added to the loss is the weight x the entropy the telemetry logged
        logged = sum(_history(client, run_id, f"moe/layer{layer}/topk_entropy")[step] for layer in layers)
        assert value == pytest.approx(weight * logged, rel=1e-4)
    for layer in layers:
        effective = _history(client, run_id, f"moe/layer{layer}/effective_experts")
        assert sorted(effective) == list(range(1, STEPS + 1)) and all(1 <= v <= 2 for v in effective.values())


def test_a_top_p_run_routes_top_p_when_trained_reloaded_and_exported(train, capsys):
    from workbench.export.merge import export
    from workbench.model.load import load_final

    spec = {"mode": "top_p", "top_p": 0.7, "min_experts": 1, "max_experts": 3}
    run, client = train("legal", ["moe.routing=top_p", "moe.top_p=0.7", "moe.max_experts=3", "train.max_steps=3",
                                  "moe.telemetry_every=1"])
    per_token = _history(client, run.tracker.run_id, "moe/mean/experts_per_token")
    assert len(per_token) == 3 and all(2.5 < v <= 3 for v in per_token.values()), per_token  # top-2 would be 2.0
    final = run.output_dir / "final"
    assert json.loads((final / "workbench_model.json").read_text())["routing"] == spec
    model, _ = load_final(final, with_mtp=False)
    assert routing_of(model) == spec
    capsys.readouterr()
    result = export(str(final), out=str(run.output_dir / "export"))
    assert result.max_abs_diff <= 1e-4 and result.facts["routing_agreement"] == 1.0
    assert "warning: export: the run routes top-p 0.7 (1 to 3 experts per token)" in capsys.readouterr().out


@pytest.mark.parametrize("recipe,overrides", [
    ("legal-staged", [f"train.max_steps={STEPS}"]),  # its sparsity phase: steps 7-8
    ("legal", ["moe.balance=seq_aux", "train.max_steps=3"]),
], ids=["sparsity", "seq_aux"])
def test_loss_terms_added_from_the_routers_train_under_gradient_checkpointing(train, recipe, overrides):
    """The sparsity penalty and V3's sequence-wise loss are computed from the routers' outputs after the forward:
    inside a checkpointed layer they saved tensors its recompute did not, and the backward stopped with torch's
    CheckpointError (found by the GPU proof's dry run, which trains with checkpointing on). With checkpointing on,
    every step's loss equals the run without it."""
    common = [*overrides, "train.logging_steps=1", "train.eval_steps=100"]
    losses = []
    for checkpointing in ("true", "false"):
        run, client = train(recipe, [*common, f"train.gradient_checkpointing={checkpointing}"], out=f"gc-{checkpointing}")
        losses.append(_history(client, run.tracker.run_id, "train/loss"))
        extra = "moe/sparsity_loss" if recipe == "legal-staged" else "moe/seq_aux_loss"
        assert _history(client, run.tracker.run_id, extra), extra  # the term was added
    assert sorted(losses[0]) == sorted(losses[1]) and len(losses[0]) >= 3
    for step in losses[0]:
        assert losses[0][step] == pytest.approx(losses[1][step], rel=1e-5), step
