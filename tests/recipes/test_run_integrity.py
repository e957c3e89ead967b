"""Numbers a run reports that must hold up: a seed repeats exactly, the retention gate never passes on nothing,
and an export is checked against the model that was trained (not the files it was saved to).

    .venv/bin/python -m pytest -q tests/recipes/test_run_integrity.py
"""

import json

import mlflow
import pytest
from support import FAST, history

from workbench.recipe.load import load_recipe
from workbench.train.build import build

SHORT = FAST + ["train.max_steps=6", "train.eval_steps=100", "train.save_steps=100"]


def test_two_runs_with_one_seed_have_identical_loss_histories_and_another_seed_does_not(train):
    first, client = train("legal", SHORT, out="a")
    again, _ = train("legal", SHORT, out="b")
    other, _ = train("legal", SHORT + ["train.seed=43"], out="c")
    losses = [history(client, run.tracker.run_id, "train/loss") for run in (first, again, other)]
    assert len(losses[0]) == 6
    assert losses[0] == losses[1]  # bit for bit: same adapter init, batch order and arithmetic
    assert losses[0] != losses[2]


def _crash_after_step_2():
    """A callback that kills the run after the step-2 checkpoint, like a killed job."""
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    return Crash()


def _killed_then_resumed(isolated, first_overrides, resume_overrides):
    base = isolated["overrides"] + FAST + ["train.max_steps=4", "train.save_steps=2", "train.eval_steps=100"]
    first = build(load_recipe("legal", base + first_overrides))
    first.trainer.add_callback(_crash_after_step_2())
    with pytest.raises(KeyboardInterrupt):
        first.train()
    first.close()
    second = build(load_recipe("legal", base + resume_overrides), resume=True)
    second.train()
    second.close()
    assert second.tracker.run_id == first.tracker.run_id
    return first, mlflow.MlflowClient(isolated["uri"]).get_run(first.tracker.run_id)


GATE = ["eval.retention_suite=legal", "eval.limit=8"]


def test_a_resumed_run_is_gated_on_the_scores_from_before_it_was_killed(isolated, capsys):
    first, record = _killed_then_resumed(isolated, GATE, GATE)
    stored = json.loads((first.output_dir / "base_scores.json").read_text())["scores"]
    assert stored["legal_mc/acc_none"] == record.data.metrics["base/legal_mc/acc_none"]  # computed once, before training
    tuned = record.data.metrics["eval/legal_mc/acc_none"]
    expected = "pass" if stored["legal_mc/acc_none"] - tuned <= 0.02 else "fail"
    assert record.data.tags["retention"] == expected
    out = capsys.readouterr().out
    assert "Scores before training: " in out and "reused from the run's first evaluation" in out
    assert f"legal_mc/acc_none: {stored['legal_mc/acc_none']:.4f} -> {tuned:.4f}" in out


def test_without_scores_from_before_training_the_gate_says_unknown(isolated, capsys):
    _, record = _killed_then_resumed(isolated, ["eval.suite=null"], GATE)  # the gate was added on resume
    assert record.data.tags["retention"] == "unknown"
    assert "base/legal_mc/acc_none" not in record.data.metrics and "eval/legal_mc/acc_none" in record.data.metrics
    out = capsys.readouterr().out
    assert "Retention gate: unknown - there are no scores of suite 'legal' from before training" in out


def test_before_and_after_scores_come_with_a_paired_sign_test(train):
    run, client = train("legal", SHORT + ["eval.suite=legal", "eval.limit=12"])
    metrics = client.get_run(run.tracker.run_id).data.metrics
    improved, worsened = (metrics[f"compare/legal_mc/acc_none/{k}"] for k in ("improved", "worsened"))
    before, after = metrics["base/legal_mc/acc_none"], metrics["eval/legal_mc/acc_none"]
    assert round((after - before) * 12) == improved - worsened  # the counts explain the change in accuracy
    assert 0 < metrics["compare/legal_mc/acc_none/p_value"] <= 1


def test_export_is_compared_with_the_trained_model_on_inputs_reaching_every_expert(train):
    from workbench.export.merge import export

    run, client = train("legal-lora-experts", SHORT)
    result = export(str(run.output_dir / "final"))
    facts = result.facts
    assert result.against == "trained" and result.max_abs_diff < 1e-4
    assert facts["experts_covered"] == facts["experts"] == 3 * 8  # 3 MoE layers x 8 routed experts
    assert facts["fewest_tokens_per_expert"] >= 1 and facts["routing_agreement"] == 1.0
    logged = client.get_run(run.tracker.run_id).data.metrics
    assert logged["export_reference/experts_covered"] == 24


def test_a_weight_that_was_saved_wrong_fails_the_export(train):
    from safetensors.torch import load_file, save_file

    from workbench.errors import WorkbenchError
    from workbench.export.merge import export

    run, _ = train("legal", SHORT)
    adapter = run.output_dir / "final" / "adapter_model.safetensors"
    tensors = load_file(str(adapter))
    name = next(n for n in tensors if "lora_B" in n)
    tensors[name] = tensors[name] + 0.01  # what a faulty save or merge would do; the saved files agree with themselves
    save_file(tensors, str(adapter))
    with pytest.raises(WorkbenchError, match="the exported model differs from the trained one by"):
        export(str(run.output_dir / "final"))


def test_zero3_leaf_flag_is_set_on_every_moe_block_and_nothing_else(tiny):
    from deepspeed.utils import z3_leaf_module

    from workbench.scale.deepspeed import register_moe_leaves

    model, _ = tiny
    assert register_moe_leaves(model) == ["DeepseekV3MoE"]
    flagged = [name for name, module in model.named_modules() if z3_leaf_module(module)]
    assert flagged == [f"model.layers.{i}.mlp" for i in (1, 2, 3)]  # layer 0 is dense
    for _, module in model.named_modules():
        module._z3_leaf = False  # the session's shared tiny model goes back as it was
    assert not any(z3_leaf_module(m) for m in model.modules())


def test_zero3_from_a_lora_run_asks_for_an_export_first(train, isolated, capsys):
    from workbench.cli import main

    sft, _ = train("legal", ["train.max_steps=1", "train.eval_steps=100"], out="sft")
    code = main(["finetune", "legal", f"model.from_run={sft.tracker.run_id}", "train.deepspeed=zero3",
                 f"track.tracking_uri={isolated['uri']}", f"train.output_dir={isolated['tmp'] / 'z3'}"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "saved a LoRA adapter, which must be merged" in err and "workbench export" in err


def test_the_plan_reads_the_base_runs_own_config_for_from_run(train):
    from workbench.train.plan import make_plan

    sft, _ = train("legal", ["train.max_steps=1", "train.eval_steps=100"], out="sft")
    plan = make_plan(load_recipe("legal", [f"model.from_run={sft.tracker.run_id}", f"track.tracking_uri={sft.tracker.uri}",
                                           f"train.output_dir={sft.output_dir.parent / 'next'}"]))
    assert plan.model.config.hidden_size == 256 and plan.model.is_adapter
    assert plan.model.cfg.from_run == sft.tracker.run_id and plan.model.adapters == (str(sft.output_dir / "final"),)
