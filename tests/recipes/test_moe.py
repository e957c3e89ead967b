"""MoE features end to end on the tiny model: balancing, telemetry, ESFT, expert patches and export."""

import copy

import numpy as np
import pytest
import torch
from support import FAST, history

from workbench.export.merge import export, sample_logits
from workbench.model.load import load_final, load_model
from workbench.moe.routing import find_decoders, find_routers

STEPS = ["train.max_steps=16", "train.eval_steps=16", "moe.telemetry_every=4", "data.max_rows=96"]


def _late_imbalance(run, last=8) -> float:
    loads = np.load(run.output_dir / "moe" / "expert_load.npz")["loads"][-last:].sum(0)  # (layers, E)
    return float((loads.max(-1) / loads.mean(-1)).mean())


def test_aux_free_balances_better_than_none_and_keeps_its_bias(train):
    none, client = train("legal", STEPS + ["moe.balance=none"], out="none")
    aux, _ = train("legal", STEPS + ["moe.balance=aux_free", "moe.bias_update_speed=0.02"], out="aux")
    assert _late_imbalance(aux) < _late_imbalance(none)
    for run in (none, aux):  # both figures are in MLflow
        assert history(client, run.tracker.run_id, "moe/mean/max_over_mean")
        assert history(client, run.tracker.run_id, "moe/layer1/router_entropy")
        assert history(client, run.tracker.run_id, "moe/mean/eval_drift_js")
    trained = torch.stack([r.e_score_correction_bias for _, r in find_routers(aux.trainer.model)])
    assert trained.abs().sum() > 0 and trained.dtype == torch.float32
    reloaded, _ = load_final(aux.output_dir / "final")  # LoRA run: the bias travels beside the adapter
    again = torch.stack([r.e_score_correction_bias for _, r in find_routers(reloaded)])
    assert torch.equal(trained.cpu(), again.cpu())
    untouched = torch.stack([r.e_score_correction_bias for _, r in find_routers(none.trainer.model)])
    assert untouched.abs().sum() == 0


def test_seq_aux_is_logged_and_changes_routing(train):
    none, client = train("legal", ["train.max_steps=6", "moe.balance=none", "peft.type=none"], out="n")
    seq, _ = train("legal", ["train.max_steps=6", "moe.balance=seq_aux", "moe.seq_aux_alpha=0.5", "peft.type=none"],
                   out="s")
    assert history(client, seq.tracker.run_id, "moe/seq_aux_loss")
    assert not history(client, none.tracker.run_id, "moe/seq_aux_loss")
    load = lambda run: np.load(run.output_dir / "moe" / "expert_load.npz")["loads"]  # noqa: E731
    assert not np.array_equal(load(none)[1:], load(seq)[1:])  # step 1 routes identically; then it diverges


def test_frozen_router_and_experts_stay_put(train):
    run, _ = train("legal", ["train.max_steps=2", "peft.type=none", "moe.train_router=false",
                             "moe.train_routed_experts=false", "train.lr=1e-2"])
    base, _ = load_model(run.recipe.model)
    tuned = run.trainer.model
    for (_, a), (_, b) in zip(find_routers(base), find_routers(tuned)):
        assert torch.equal(a.weight, b.weight)
    assert torch.equal(base.model.layers[1].mlp.experts.down_proj, tuned.model.layers[1].mlp.experts.down_proj)
    assert not torch.equal(base.model.layers[1].mlp.shared_experts.up_proj.weight,
                           tuned.model.layers[1].mlp.shared_experts.up_proj.weight)


def test_esft_trains_only_the_selected_experts_and_its_patch_reproduces_them(train, tmp_path):
    run, client = train("legal", ["train.max_steps=3", "peft.type=none", "moe.esft=token", "moe.esft_top_p=0.3",
                                  "moe.esft_profile_rows=32", "train.lr=1e-2", "train.weight_decay=0"])
    params = client.get_run(run.tracker.run_id).data.params
    assert int(params["esft.trainable_params"]) < 0.3 * int(params["esft.total_params"])
    selection = run.esft_selection
    base, tokenizer = load_model(run.recipe.model)
    tuned = run.trainer.model
    changed = set()
    for (name, a), (_, b) in zip(base.named_parameters(), tuned.named_parameters()):
        if ".experts." in name:
            layer = int(name.split(".")[2])
            for expert in range(a.shape[0]):
                if not torch.equal(a[expert], b[expert]):
                    changed.add((layer, expert))
        else:
            assert torch.equal(a, b), name
    assert changed == {(layer, e) for layer, experts in selection.items() for e in experts}
    result = export(str(run.output_dir / "final"), out=str(tmp_path / "patched"))
    assert result.kind == "expert-patch" and result.max_abs_diff <= 1e-5


def test_export_merges_lora_on_every_target_within_tolerance(train, tmp_path):
    from transformers import AutoModelForCausalLM

    run, client = train("legal", ["train.max_steps=3", "peft.target_modules=[all]", "train.lr=2e-2",
                                  "moe.balance=aux_free", "moe.bias_update_speed=0.05"])
    result = export(str(run.output_dir / "final"), out=str(tmp_path / "merged"))
    assert result.kind == "lora-merge" and result.max_abs_diff <= 1e-4
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")  # nothing from the workbench
    base, tokenizer = load_model(run.recipe.model)
    assert (sample_logits(plain, tokenizer) - sample_logits(base, tokenizer)).abs().max() > 1e-3  # it did train
    assert find_routers(plain)[0][1].e_score_correction_bias.abs().sum() > 0  # balancing carried over


def test_esft_with_lora_adapts_only_the_selected_experts(train, tmp_path):
    run, client = train("legal", ["train.max_steps=3", "moe.esft=gate", "moe.esft_top_p=0.3", "train.lr=2e-2",
                                  "moe.esft_profile_rows=32", "peft.target_modules=[routed_experts]",
                                  "peft.modules_to_save=[]"])
    params = client.get_run(run.tracker.run_id).data.params
    assert 0 < int(params["esft.trainable_params"]) < 0.05 * int(params["esft.total_params"])
    merged = copy.deepcopy(run.trainer.model).merge_and_unload()
    base, _ = load_model(run.recipe.model)
    selected = {(layer, e) for layer, experts in run.esft_selection.items() for e in experts}
    changed = set()
    for (name, a), (_, b) in zip(base.named_parameters(), merged.named_parameters()):
        if ".experts." in name:
            layer = int(name.split(".")[2])
            changed |= {(layer, e) for e in range(a.shape[0]) if not torch.equal(a[e], b[e])}
        else:
            assert torch.equal(a, b), name
    assert changed == selected
    result = export(str(run.output_dir / "final"), out=str(tmp_path / "patched"))
    assert result.kind == "expert-patch" and result.max_abs_diff <= 1e-4


def test_aux_free_under_gradient_accumulation_updates_once_per_optimizer_step(train):
    run, _ = train("legal", ["train.max_steps=3", "train.grad_accum=2", "train.batch_size=2", "moe.balance=aux_free",
                             "moe.bias_update_speed=0.01", "train.eval_steps=100"])
    data = np.load(run.output_dir / "moe" / "expert_load.npz")
    assert data["steps"].tolist() == [1, 2, 3]  # one bias update per optimizer step, not per micro-batch
    top_k = run.trainer.model.config.num_experts_per_tok
    per_step = data["loads"].sum(-1) / top_k  # tokens routed per layer per step: both micro-batches counted
    assert (per_step > 0).all() and np.allclose(per_step, per_step[:, :1])
    bias = data["bias"]
    assert np.all(np.isclose(np.abs(bias), 0.01 * np.round(np.abs(bias) / 0.01)))  # whole multiples of gamma
    assert np.abs(bias).max() <= 0.03 + 1e-6  # at most 3 steps of gamma


def test_aux_free_with_dpo_counts_only_the_policy(isolated):
    from workbench.recipe.load import load_recipe
    from workbench.train.build import build

    recipe = load_recipe("legal-dpo", isolated["overrides"] + FAST + [
        "model.from_run=null", "train.max_steps=2", "train.eval_steps=100", "moe.balance=aux_free",
        "moe.bias_update_speed=0.01"])
    run = build(recipe)
    policy_tokens, policy_positions = [], []  # of forwards that train (grad on); the reference pass runs without
    decoder = find_decoders(run.trainer.model)[0]

    def count(module, args, kwargs):
        if torch.is_grad_enabled():
            policy_tokens.append(int(kwargs["attention_mask"].sum()))  # chosen + rejected rows, right-padded
            policy_positions.append(kwargs["attention_mask"].numel())

    decoder.register_forward_pre_hook(count, with_kwargs=True)
    try:
        run.train()
    finally:
        run.close()
    data = np.load(run.output_dir / "moe" / "expert_load.npz")
    assert data["steps"].tolist() == [1, 2] and np.abs(data["bias"]).max() > 0
    routed = data["loads"].sum(-1)[:, 0] / run.trainer.model.config.num_experts_per_tok  # tokens per step, layer 1
    assert routed.sum() == sum(policy_tokens) > 0  # every real policy token once; no reference-pass tokens
    assert sum(policy_tokens) < sum(policy_positions)  # the batches were padded, and the padding went uncounted
