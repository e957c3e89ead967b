"""Top-p routing (moe.routing: top_p): the experts each token takes, what the experts receive, and no silent top-k.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/unit/moe/test_top_p.py

The router is transformers' own DeepseekV3TopkRouter with an identity weight, so its logits are the hidden
states the test writes; the expected expert sets are worked out in plain Python below, not with the code under
test.
"""

import copy
import json
import math

import pytest
import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from workbench.errors import WorkbenchError
from workbench.moe.top_p import apply_routing, routing_of

E, GROUPS, TOPK_GROUP = 8, 4, 2
SPEC = {"mode": "top_p", "top_p": 0.8, "min_experts": 1, "max_experts": None}
LOGITS = [
    [4.0, 0.0, -4.0, -4.0, 1.0, -4.0, -4.0, -4.0],  # groups {0,1} and {4,5} win; shares .440 .328 .224: 3 experts
    [6.0, -6.0, -6.0, -6.0, -5.0, -6.0, -6.0, -6.0],  # expert 0 alone holds .988 of its allowed mass: 1 expert
    [0.5, 0.4, -3.0, -3.0, 0.45, 0.3, -3.0, -3.0],  # near-even shares .259 .254 .249 .239: all 4 allowed
]


def _config(first_k_dense_replace=1):
    return DeepseekV3Config(vocab_size=64, hidden_size=E, intermediate_size=16, moe_intermediate_size=4,
                            num_hidden_layers=2, first_k_dense_replace=first_k_dense_replace, num_attention_heads=2, num_key_value_heads=2,
                            q_lora_rank=None, kv_lora_rank=4, qk_rope_head_dim=2, qk_nope_head_dim=2, v_head_dim=2,
                            n_shared_experts=1, n_routed_experts=E, num_experts_per_tok=2, n_group=GROUPS,
                            topk_group=TOPK_GROUP, routed_scaling_factor=2.5, norm_topk_prob=True, num_mtp_layers=0)


def _model(implementation="eager"):
    torch.manual_seed(0)
    model = DeepseekV3ForCausalLM._from_config(_config(), experts_implementation=implementation)
    block = model.model.layers[1].mlp
    with torch.no_grad():
        block.gate.weight.copy_(torch.eye(E))  # logits = hidden states
    return model.eval(), block


def _expected(logits: list[float], p: float, bias=None) -> tuple[list[int], list[float]]:
    """By hand: sigmoid scores (+ bias), the 2 best groups by their two best choice scores, normalised shares over
    the allowed experts, taken in decreasing order until they reach p; weights: the raw scores, normalised, x 2.5."""
    bias = bias or [0.0] * E
    scores = [1 / (1 + math.exp(-x)) for x in logits]
    choice = [s + b for s, b in zip(scores, bias)]
    size = E // GROUPS
    group_score = [sum(sorted(choice[g * size:(g + 1) * size], reverse=True)[:2]) for g in range(GROUPS)]
    best = sorted(range(GROUPS), key=lambda g: -group_score[g])[:TOPK_GROUP]
    allowed = [e for e in range(E) if e // size in best]
    total = sum(max(choice[e], 0) for e in allowed)
    taken, reached = [], 0.0
    for e in sorted(allowed, key=lambda e: -choice[e]):
        if reached >= p - 1e-6:
            break
        taken.append(e)
        reached += max(choice[e], 0) / total
    raw = [scores[e] for e in taken]
    return taken, [2.5 * w / sum(raw) for w in raw]


def test_top_p_takes_the_fewest_experts_reaching_p_on_hand_built_scores():
    model, block = _model()
    assert apply_routing(model, SPEC) == 1
    hidden = torch.tensor(LOGITS)
    _, weights, indices = block.gate(hidden)
    assert indices.shape == (3, TOPK_GROUP * E // GROUPS)  # max_experts null: all 4 experts two groups hold
    expected = [_expected(row, 0.8) for row in LOGITS]
    assert [sorted(e) for e, _ in expected] == [[0, 1, 4], [0], [0, 1, 4, 5]]  # 3, 1 and 4 experts, never top-2
    for token, (experts, gates) in enumerate(expected):
        used = indices[token] < E
        assert indices[token][used].tolist() == experts  # in decreasing score order
        assert indices[token][~used].tolist() == [E] * (4 - len(experts))  # unused slots: the sentinel
        assert weights[token][used].tolist() == pytest.approx(gates, rel=1e-5)
        assert weights[token][~used].abs().sum() == 0


def test_bias_steers_the_order_and_bounds_clip_the_count():
    model, block = _model()
    bias = [0.0, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0]
    block.gate.e_score_correction_bias.copy_(torch.tensor(bias))
    apply_routing(model, {**SPEC, "top_p": 0.5, "min_experts": 2, "max_experts": 3})
    _, weights, indices = block.gate(torch.tensor(LOGITS))
    for token, row in enumerate(LOGITS):
        order, _ = _expected(row, 1.0, bias)  # every allowed expert, best choice score first
        count = min(max(len(_expected(row, 0.5, bias)[0]), 2), 3)
        assert indices[token][indices[token] < E].tolist() == order[:count]
    assert indices[0, 0].item() == 4  # the bias put expert 4 ahead of expert 0 (score .731 + .3 against .982)
    assert (indices < E).sum(-1).tolist() == [2, 2, 2]  # token 2 reached 0.5 with one expert: min_experts makes it 2
    assert indices.shape[1] == 3


@pytest.mark.parametrize("implementation", ["eager", "grouped_mm", "batched_mm"])
def test_the_experts_receive_the_top_p_choice_and_compute_its_mixture(implementation):
    """The MoE block's output is the hand-computed mixture of exactly the chosen experts; a block that went on
    routing top-2 (the patch not applied, or undone) gives another output and other expert indices."""
    model, block = _model(implementation)
    hidden = torch.tensor(LOGITS)[None]  # (1, 3, hidden)
    with torch.no_grad():
        top_k_out = block(hidden)
    apply_routing(model, SPEC)
    seen = []
    handle = block.experts.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    with torch.no_grad():
        out = block(hidden)[0]
    handle.remove()
    assert [sorted(i for i in row.tolist() if i < E) for row in seen[0]] == [[0, 1, 4], [0], [0, 1, 4, 5]]
    experts, shared = block.experts, block.shared_experts
    for token, row in enumerate(LOGITS):
        x = hidden[0, token]
        mixture = shared(x[None])[0].clone()
        for e, w in zip(*_expected(row, 0.8)):
            gate, up = (experts.gate_up_proj[e] @ x).chunk(2)
            mixture += w * (experts.down_proj[e] @ (torch.nn.functional.silu(gate) * up))
        assert torch.allclose(out[token], mixture.detach(), atol=1e-5), token
    assert not torch.allclose(out, top_k_out[0], atol=1e-4)  # top-2 computes something else here
    assert routing_of(model) == SPEC


def test_gradients_reach_the_router_and_every_chosen_expert_only():
    model, block = _model()
    apply_routing(model, SPEC)
    model.train()
    block(torch.tensor(LOGITS)[None]).sum().backward()
    touched = block.experts.down_proj.grad.abs().sum(dim=(1, 2)) > 0
    assert touched.nonzero().flatten().tolist() == [0, 1, 4, 5]  # the union of the three tokens' experts
    assert block.gate.weight.grad.abs().sum() > 0


def test_a_model_whose_moe_blocks_cannot_be_patched_is_a_one_line_error():
    model, block = _model()

    class OtherMoe(torch.nn.Module):  # a block transformers' DeepseekV3MoE is not (remote code, another model)
        def __init__(self, inner):
            super().__init__()
            self.gate, self.experts = inner.gate, inner.experts

    model.model.layers[1].mlp = OtherMoe(block)
    with pytest.raises(WorkbenchError, match=r"^moe.routing: top_p patches transformers' DeepseekV3MoE .* is OtherMoe"):
        apply_routing(model, SPEC)
    dense = DeepseekV3ForCausalLM._from_config(_config(first_k_dense_replace=2))
    with pytest.raises(WorkbenchError, match="has none; set moe.routing: top_k") as caught:
        apply_routing(dense, SPEC)
    assert "\n" not in str(caught.value)
    model, _ = _model()
    with pytest.raises(WorkbenchError, match="moe.max_experts: a token reaches at most 4 experts"):
        apply_routing(model, {**SPEC, "max_experts": 5})


def test_a_runs_final_model_loads_with_the_routing_it_was_trained_with(tiny, tmp_path):
    """eval, generate, chat and export load a run's model through load_resolved: its workbench_model.json's routing
    is applied there; a folder without it routes top-k."""
    from workbench.model.load import load_final, write_final_info

    model, tokenizer = tiny
    final = tmp_path / "final"
    model.save_pretrained(final)
    tokenizer.save_pretrained(final)
    spec = {"mode": "top_p", "top_p": 0.7, "min_experts": 1, "max_experts": 3}
    write_final_info(final, {"name": "deepseek-v3-tiny"}, adapter=False, routing=spec)
    assert json.loads((final / "workbench_model.json").read_text())["routing"] == spec
    loaded, _ = load_final(final, with_mtp=False)
    assert routing_of(loaded) == spec
    seen = []
    loaded.model.layers[1].mlp.experts.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
    with torch.no_grad():
        loaded(input_ids=torch.arange(3, 40)[None])
    assert seen[0].shape[1] == 3 and (seen[0] < 8).sum(-1).float().mean() > 2  # p 0.7 of near-even scores: 3
    write_final_info(final, {"name": "deepseek-v3-tiny"}, adapter=False)
    plain, _ = load_final(final, with_mtp=False)
    assert routing_of(plain) is None


def test_telemetry_leaves_the_unused_slots_out(tiny):
    from workbench.moe.routing import RoutingRecorder

    model = copy.deepcopy(tiny[0]).eval()
    apply_routing(model, {**SPEC, "top_p": 0.7})
    seen = []
    handles = [layer.mlp.experts.register_forward_pre_hook(lambda module, args: seen.append(args[1]))
               for layer in model.model.layers[1:]]
    recorder = RoutingRecorder(model)
    with torch.no_grad():
        model(input_ids=torch.arange(3, 40)[None])
    bucket = recorder.take("eval")
    recorder.remove()
    for handle in handles:
        handle.remove()
    used = torch.stack([(picks < 8).sum() for picks in seen]).double()  # per layer, counted from the experts' input
    assert bucket.loads.sum(-1).tolist() == used.tolist()
    assert (bucket.figure_sums[3] / bucket.tokens).tolist() == pytest.approx((used / 37).tolist())  # experts_per_token
