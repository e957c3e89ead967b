"""train.optimizer: muon (workbench.train.optim): which tensor goes to which optimizer, Muon per routed expert, and
Moonlight's learning-rate matching, each checked against an answer computed here (torch.optim.Muon on plain 2-D
matrices, the model's own config)."""

import copy
import math

import pytest
import torch
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from workbench.recipe.schema import PeftConfig
from workbench.train.optim import (
    ExpertMuon,
    Layout,
    MuonWithAdamW,
    deepspeed_groups,
    split_parameters,
)

LR, DECAY = 0.02, 0.1


def _config(**extra):
    return DeepseekV3Config(vocab_size=128, hidden_size=32, intermediate_size=48, moe_intermediate_size=24,
                            num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=2, num_key_value_heads=2,
                            q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8,
                            n_shared_experts=1, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
                            num_mtp_layers=0, tie_word_embeddings=False, **extra)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return DeepseekV3ForCausalLM(_config())


def _expected_counts(config) -> tuple[int, int]:
    """(Muon tensors, AdamW tensors) from the config alone: what a DeepSeek-V3 layer holds."""
    layers, dense = config.num_hidden_layers, config.first_k_dense_replace
    attention = 5  # q_a_proj, q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj (q_lora_rank is set)
    muon = layers * attention + dense * 3 + (layers - dense) * (2 + 1 + 3)  # experts x2 (3-D), router, shared MLP
    adamw = 2 + layers * 4 + 1  # embeddings, LM head; q_a/kv_a/input/post-attention norms per layer; the final norm
    return muon, adamw


def _groups(optimizer) -> dict[str, list]:
    return {kind: [p for g in optimizer.param_groups if g["muon"] is (kind == "muon") for p in g["params"]]
            for kind in ("muon", "adamw")}


def test_every_trainable_parameter_is_in_exactly_one_group_experts_under_muon_no_buffer_anywhere(model):
    optimizer = MuonWithAdamW(split_parameters(model), lr=LR, weight_decay=DECAY)
    groups = _groups(optimizer)
    placed = [id(p) for ps in groups.values() for p in ps]
    assert len(placed) == len(set(placed))  # no tensor twice
    assert set(placed) == {id(p) for p in model.parameters()}  # every trainable tensor
    assert (len(groups["muon"]), len(groups["adamw"])) == _expected_counts(model.config)

    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for p in groups["muon"]}
    adamw_names = {names[id(p)] for p in groups["adamw"]}
    experts = {n for n in names.values() if n.endswith(("experts.gate_up_proj", "experts.down_proj"))}
    assert len(experts) == 2 * (model.config.num_hidden_layers - model.config.first_k_dense_replace)
    assert experts <= muon_names and not experts & adamw_names
    assert {n for n in names.values() if n.endswith("mlp.gate.weight")} <= muon_names  # the router: Muon (docstring)
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight"} <= adamw_names
    assert all(p.ndim == 1 for n, p in model.named_parameters() if n in adamw_names and "embed" not in n
               and "lm_head" not in n)
    buffers = {id(b) for _, b in model.named_buffers()}
    assert any(n.endswith("e_score_correction_bias") for n, _ in model.named_buffers())
    assert not buffers & set(placed)


def test_frozen_parameters_stay_out_and_lora_matrices_go_to_muon_expert_lora_per_expert(model):
    from workbench.model.lora import wrap

    model.model.layers[1].mlp.gate.weight.requires_grad_(False)  # a frozen router (moe.train_router: false)
    peft = PeftConfig(type="lora", r=2, target_modules=["attention", "routed_experts"],
                      modules_to_save=["embed_tokens", "lm_head"])
    wrapped, _ = wrap(model, peft, quiet=True)
    split = split_parameters(wrapped)
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    muon, adamw = {n for n, _ in split.muon}, {n for n, _ in split.adamw}
    assert muon | adamw == trainable and not muon & adamw
    assert muon == {n for n in trainable if ".lora_A." in n or ".lora_B." in n}
    assert adamw == {n for n in trainable if "modules_to_save" in n} and len(adamw) == 2
    experts = model.config.n_routed_experts
    kinds = {n: split.layouts[p] for n, p in split.muon if ".mlp.experts." in n}
    assert len(kinds) == 4 * 2  # 2 MoE layers x (gate_up_proj, down_proj) x (A, B)
    assert all(layout == Layout("lora_A" if ".lora_A." in n else "lora_B", experts) for n, layout in kinds.items())


def _torch_muon_steps(matrices, grads_per_step, **hyper):
    """Each 2-D matrix as its own parameter under torch.optim.Muon: the reference update."""
    params = [torch.nn.Parameter(m.clone()) for m in matrices]
    optimizer = torch.optim.Muon(params, **hyper)
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        optimizer.step()
    return [p.detach() for p in params]


HYPER = dict(lr=LR, weight_decay=DECAY, momentum=0.95, adjust_lr_fn="match_rms_adamw")


def test_a_3d_expert_tensor_moves_as_each_expert_would_alone_under_torch_muon():
    torch.manual_seed(1)
    stack = torch.randn(4, 12, 40)  # (experts, rows, cols): each slice's shape sets its own step size
    grads = [torch.randn(4, 12, 40) * (1 + e) for e in range(2)]  # two steps: the momentum is per expert too
    param = torch.nn.Parameter(stack.clone())
    optimizer = ExpertMuon([param], {param: Layout("stack")}, **HYPER)
    for g in grads:
        param.grad = g.clone()
        optimizer.step()
    expected = _torch_muon_steps(list(stack), [list(g) for g in grads], **HYPER)
    for e in range(4):
        torch.testing.assert_close(param.detach()[e], expected[e], rtol=0, atol=1e-6)
    assert optimizer.state[param]["momentum_buffer"].shape == stack.shape


def test_per_expert_lora_a_and_b_move_as_each_experts_pair_would_alone():
    torch.manual_seed(2)
    experts, rank, n_in, n_out = 3, 2, 10, 14
    a, b = torch.randn(experts * rank, n_in), torch.randn(n_out, rank * experts)
    grads_a, grads_b = [torch.randn_like(a) for _ in range(2)], [torch.randn_like(b) for _ in range(2)]
    pa, pb = torch.nn.Parameter(a.clone()), torch.nn.Parameter(b.clone())
    optimizer = ExpertMuon([pa, pb], {pa: Layout("lora_A", experts), pb: Layout("lora_B", experts)}, **HYPER)
    for ga, gb in zip(grads_a, grads_b):
        pa.grad, pb.grad = ga.clone(), gb.clone()
        optimizer.step()
    # PEFT's layout, indexed here directly: expert e's A is rows e*r..(e+1)*r, its B the columns e, e+E, e+2E, ...
    rows = [slice(e * rank, (e + 1) * rank) for e in range(experts)]
    expected_a = _torch_muon_steps([a[r] for r in rows], [[g[r] for r in rows] for g in grads_a], **HYPER)
    expected_b = _torch_muon_steps([b[:, e::experts] for e in range(experts)],
                                   [[g[:, e::experts] for e in range(experts)] for g in grads_b], **HYPER)
    for e in range(experts):
        torch.testing.assert_close(pa.detach()[rows[e]], expected_a[e], rtol=0, atol=1e-6)
        torch.testing.assert_close(pb.detach()[:, e::experts], expected_b[e], rtol=0, atol=1e-6)


def test_a_matrix_steps_as_torch_muon_with_moonlight_matching_an_update_rms_of_about_a_fifth_of_lr():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(96, 64, bias=True))
    weight = model[0].weight.detach().clone()
    grad_w, grad_b = torch.randn(64, 96), torch.randn(64)
    model[0].weight.grad, model[0].bias.grad = grad_w.clone(), grad_b.clone()
    optimizer = MuonWithAdamW(split_parameters(model), lr=LR, weight_decay=0.0)
    optimizer.step()
    expected = _torch_muon_steps([weight], [[grad_w]], lr=LR, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")[0]
    torch.testing.assert_close(model[0].weight.detach(), expected, rtol=0, atol=1e-6)
    rms = (model[0].weight.detach() - weight).pow(2).mean().sqrt().item()
    assert 0.15 * LR < rms < 0.3 * LR, rms / LR  # Moonlight: 0.2 x lr; Newton-Schulz's singular values vary ~0.7-1.2
    assert optimizer.param_groups[0]["lr"] == LR and not optimizer.param_groups[0]["muon"]  # the bias: AdamW, same lr


def test_deepspeed_groups_turn_deepspeeds_step_size_into_moonlights(model):
    from torch.optim._muon import _adjust_lr

    split = split_parameters(model)
    groups = deepspeed_groups(split, LR, DECAY, decay_names=[n for n, _ in split.adamw])
    placed = [id(p) for g in groups for p in g["params"]]
    assert sorted(placed) == sorted(id(p) for p in model.parameters())
    for group in groups:
        for p in group["params"]:
            if not group["name"].startswith("muon"):
                assert "lr" not in group  # AdamW's half takes train.lr from the config
                continue
            rows, cols = p.shape[-2:]
            deepspeed_step = group["lr"] * math.sqrt(max(1, rows / cols))  # DeepSpeed's own scale on each matrix
            assert deepspeed_step == pytest.approx(_adjust_lr(LR, "match_rms_adamw", (rows, cols)))
            assert group["lr"] * group["weight_decay"] == pytest.approx(LR * DECAY)


def test_a_saved_state_resumes_the_same_steps(model):
    torch.manual_seed(4)
    x = torch.randint(0, 128, (2, 16))

    def step(optimizer):
        model(input_ids=x, labels=x).loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    optimizer = MuonWithAdamW(split_parameters(model), lr=LR, weight_decay=DECAY)
    step(optimizer)
    saved_weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    saved = copy.deepcopy(optimizer.state_dict())  # state_dict() hands out the live tensors
    step(optimizer)
    after_two = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(saved_weights[n])
    resumed = MuonWithAdamW(split_parameters(model), lr=LR, weight_decay=DECAY)
    resumed.load_state_dict(saved)
    step(resumed)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), after_two[n], rtol=0, atol=1e-6)


def test_training_stops_when_deepspeed_tagged_a_parameter_otherwise(model):
    from workbench.errors import WorkbenchError
    from workbench.train.optim import SplitCheck

    split = split_parameters(model)
    for names, tag in ((split.muon, True), (split.adamw, False)):
        for _, p in names:
            p.use_muon = tag  # what DeepSpeed's set_optimizer_flags writes
    SplitCheck(split).on_train_begin(None, None, None)  # agrees: nothing happens
    router = next(p for n, p in split.muon if n.endswith("mlp.gate.weight"))
    router.use_muon = False
    with pytest.raises(WorkbenchError, match=r"train.optimizer: muon: DeepSpeed put model.layers.1.mlp.gate.weight under Adam"):
        SplitCheck(split).on_train_begin(None, None, None)
