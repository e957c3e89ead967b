"""The sparsity penalty (moe.sparsity) and the gate figures the telemetry logs (topk_entropy, effective_experts,
top1_share, experts_per_token).

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/unit/moe/test_sparsity.py

Every expected figure is computed here from the router's own outputs, captured by a hook of the test's, with
plain tensor arithmetic: not with workbench.moe.sparsity.
"""

import copy
from types import SimpleNamespace

import pytest
import torch
from transformers import DeepseekV3Config
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

from workbench.moe.plugin import MoeCallback
from workbench.moe.routing import RoutingRecorder, find_routers
from workbench.moe.sparsity import sparsity_penalty
from workbench.moe.top_p import apply_routing

PAD = 2


def _router(seed=0):
    config = DeepseekV3Config(hidden_size=16, n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2,
                              routed_scaling_factor=2.5, norm_topk_prob=True)
    torch.manual_seed(seed)
    router = DeepseekV3TopkRouter(config)
    torch.nn.init.normal_(router.weight, std=0.3)
    return router, torch.randn(64, 16)


def _entropy_by_hand(weights):
    shares = weights / weights.sum(-1, keepdim=True)
    return -(shares * shares.log()).sum(-1).mean().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_optimizer_step_on_the_penalty_lowers_the_entropy_of_the_top_k_weights(seed):
    router, hidden = _router(seed)
    _, weights, indices = router(hidden)
    before = _entropy_by_hand(weights.detach())
    optimizer = torch.optim.AdamW(router.parameters(), lr=0.05)  # what training uses
    sparsity_penalty(weights, indices, 8).backward()
    optimizer.step()
    _, after_weights, _ = router(hidden)
    after = _entropy_by_hand(after_weights.detach())
    assert after < before - 1e-3, (before, after)


def test_tokens_at_or_below_the_target_are_not_pushed():
    router, hidden = _router()
    _, weights, indices = router(hidden)
    penalty = sparsity_penalty(weights, indices, 8, target=0.6932)  # ln 2 = 0.6931...: the most two shares have
    penalty.backward()
    assert penalty.item() == 0 and router.weight.grad.abs().sum() == 0
    real = torch.zeros(64, dtype=torch.bool)
    real[:10] = True  # padding is no token: only the first 10 count
    shares = weights.detach() / weights.detach().sum(-1, keepdim=True)
    by_hand = -(shares * shares.log()).sum(-1)[:10].mean().item()
    assert sparsity_penalty(weights.detach(), indices, 8, real=real).item() == pytest.approx(by_hand, rel=1e-5)


class Metrics:
    def __init__(self):
        self.logged = {}

    def log_metrics(self, metrics, step, raw=False):
        self.logged.update(metrics)


def _batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 8000, (3, 12), generator=generator)
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 8:], mask[2, 5:] = 0, 0  # right padding
    return ids.masked_fill(mask == 0, PAD), mask


@pytest.mark.parametrize("routing", ["top_k", "top_p"])
def test_the_logged_gate_figures_equal_counts_made_from_the_router_outputs(tiny, tmp_path, routing):
    model = copy.deepcopy(tiny[0])
    with torch.no_grad():  # sigmoid top-2 shares sit near 1/2; a biased expert with widely spread scores is chosen
        for _, router in find_routers(model):  # with a small share for some tokens and a large one for others
            router.e_score_correction_bias[7] = 1.0
            router.weight[7] *= 20
    if routing == "top_p":
        apply_routing(model, {"mode": "top_p", "top_p": 0.6, "min_experts": 1, "max_experts": 4})
    captured = {}
    hooks = [router.register_forward_hook(lambda m, a, out, layer=layer: captured.__setitem__(layer, out[1:]))
             for layer, router in find_routers(model)]
    recorder = RoutingRecorder(model, gate_threshold=0.2)
    cfg = SimpleNamespace(balance="none", bias_update_speed=0.0, telemetry=True, telemetry_every=1)
    tracker = Metrics()
    callback = MoeCallback(recorder, cfg, tracker, tmp_path)
    ids, mask = _batch()
    model.train()
    model(input_ids=ids, attention_mask=mask)
    callback.on_step_end(None, SimpleNamespace(global_step=1, is_world_process_zero=True), None)
    recorder.remove()
    for hook in hooks:
        hook.remove()
    real = mask.reshape(-1).bool()
    counts = []
    for layer, (weights, indices) in captured.items():
        weights = weights.detach()[real].where(indices[real] < 8, 0.0)  # (real tokens, slots)
        shares = weights / weights.sum(-1, keepdim=True)
        effective = (shares > 0.2).sum(-1).double().mean().item()
        counts.append(effective)
        assert tracker.logged[f"moe/layer{layer}/effective_experts"] == pytest.approx(effective, rel=1e-9)
        assert tracker.logged[f"moe/layer{layer}/top1_share"] == pytest.approx(shares.max(-1).values.mean().item(),
                                                                              rel=1e-6)
        entropy = -(shares * shares.clamp_min(1e-12).log()).sum(-1).mean().item()
        assert tracker.logged[f"moe/layer{layer}/topk_entropy"] == pytest.approx(entropy, rel=1e-6)
        assert tracker.logged[f"moe/layer{layer}/experts_per_token"] == pytest.approx(
            (indices[real] < 8).sum(-1).double().mean().item())
    assert any(1.0 < c < 2.0 for c in counts), counts  # a figure that could have been wrong


def test_the_training_loss_is_the_models_plus_the_weight_times_the_hand_computed_entropy(tiny, tmp_path):
    """What the trainer minimises in a sparsity phase: the wrapped compute_loss against the model's own loss plus
    weight x (the mean gate-share entropy of real tokens, summed over MoE layers) from the router outputs."""
    from workbench.moe.plugin import _with_sparsity

    model = copy.deepcopy(tiny[0])
    captured = {}
    hooks = [router.register_forward_hook(lambda m, a, out, layer=layer: captured.__setitem__(layer, out[1:]))
             for layer, router in find_routers(model)]
    recorder = RoutingRecorder(model)
    cfg = SimpleNamespace(balance="none", bias_update_speed=0.0, telemetry=True, telemetry_every=1, sparsity=0.0)
    callback = MoeCallback(recorder, cfg, Metrics(), tmp_path)
    ids, mask = _batch()
    inputs = {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}
    model.train()
    plain = model(**inputs).loss.item()
    callback.sparsity = 3.0  # what a stage's `sparsity` sets
    loss = _with_sparsity(lambda m, x, return_outputs=False, **kw: m(**x).loss, recorder, callback)(model, inputs)
    recorder.remove()
    for hook in hooks:
        hook.remove()
    real = mask.reshape(-1).bool()
    by_hand = 0.0
    for weights, _ in captured.values():
        weights = weights.detach()[real]
        shares = weights / weights.sum(-1, keepdim=True)
        by_hand += -(shares * shares.log()).sum(-1).mean().item()
    assert by_hand > 0.1
    assert loss.item() == pytest.approx(plain + 3.0 * by_hand, rel=1e-5)
    loss.backward()
    assert all(router.weight.grad.abs().sum() > 0 for _, router in find_routers(model))
