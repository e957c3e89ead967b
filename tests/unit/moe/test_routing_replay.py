"""Routing replay (workbench.moe.replay): what generation routed is what the update's forward uses.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/unit/moe/test_routing_replay.py

On the tiny model: generation from left-padded prompts is recorded and laid out like TRL's training batch;
the router is then perturbed (as an update would move it) so its own choice disagrees with the rollout's.
Without replay the agreement falls below 1; with replay every real (token, layer) uses the rollout's experts
(agreement 1.0) while the router weights still receive gradients through the gate weights.
"""

import copy

import pytest
import torch

from workbench.moe.replay import RolloutRouting
from workbench.moe.routing import find_routers

PAD = 2


@pytest.fixture(scope="module")
def model(tiny):
    return copy.deepcopy(tiny[0]).eval()


def _rollout(model, routing):
    """Greedy generation from three left-padded prompts: (prompt_ids, completion_ids) lists, recorded."""
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, 8000, (n,), generator=generator).tolist() for n in (9, 5, 3)]
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with routing.recording(), torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                             pad_token_id=PAD, eos_token_id=None)
    return prompts, out[:, width:].tolist()


def _batch(prompts, completions):
    """TRL's training layout: prompts left-padded, completions right-padded, concatenated."""
    width, length = max(map(len, prompts)), max(map(len, completions))
    ids = torch.tensor([[PAD] * (width - len(p)) + p + c + [PAD] * (length - len(c)) for p, c in zip(prompts, completions)])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * (len(p) + len(c)) + [0] * (length - len(c))
                         for p, c in zip(prompts, completions)])
    return ids, mask


def test_layout_matches_the_training_batch(model):
    routing = RolloutRouting(model, replay=True)
    try:
        prompts, completions = _rollout(model, routing)
        completions[2] = completions[2][:3]  # an early end (EOS): the row is shorter than the others
        layout = routing.layout(prompts, completions)
        ids, mask = _batch(prompts, completions)
        assert layout.shape == (3, ids.shape[1], len(find_routers(model)), model.config.num_experts_per_tok)
        known = (layout >= 0).all(dim=-1).all(dim=-1)
        # padding has no recording; every real token has one except the last sampled token of a full-length
        # row, which generation never fed back through the model
        assert not known[mask == 0].any()
        width = max(map(len, prompts))
        for r, (p, c) in enumerate(zip(prompts, completions)):
            real = known[r, width - len(p): width + len(c)]
            fed = len(p) + min(len(c), 5)  # 6 new tokens: 5 fed back
            assert real[:fed].all() and not real[fed:].any()
    finally:
        routing.remove()


def _perturbed(model):
    moved = copy.deepcopy(model)
    torch.manual_seed(1)
    for _, router in find_routers(moved):
        router.weight.data += 0.5 * router.weight.data.std() * torch.randn_like(router.weight)
    return moved


def _train_forward(model, routing, layout, ids, mask):
    model.train()
    routing.counting = True  # as the trainer sets it around the update's forward
    with routing.active(layout):
        out = model(input_ids=ids, attention_mask=mask)
    routing.counting = False
    loss = out.logits[mask.bool()].logsumexp(-1).mean()
    loss.backward()
    return routing.take_agreement()


@pytest.mark.parametrize("replay", [False, True])
def test_agreement_and_router_gradients(model, replay):
    recorder = RolloutRouting(model, replay=False)
    try:
        prompts, completions = _rollout(model, recorder)
        layout = recorder.layout(prompts, completions)
    finally:
        recorder.remove()
    ids, mask = _batch(prompts, completions)
    moved = _perturbed(model)  # the policy after an update: its router now prefers other experts
    routing = RolloutRouting(moved, replay=replay)
    try:
        agreement = _train_forward(moved, routing, layout, ids, mask)
    finally:
        routing.remove()
    assert 0.0 < agreement["moe/router_agreement"] < 0.95  # the moved router disagrees on many (token, layer)
    if replay:
        assert agreement["moe/rollout_agreement"] == 1.0
    else:
        assert agreement["moe/rollout_agreement"] == agreement["moe/router_agreement"]
    for _, router in find_routers(moved):
        assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0


def test_replaying_the_routers_own_choice_changes_nothing(model):
    """Record a full forward and replay it: identical logits (the gate weights follow the router's formula)."""
    prompts = [[5, 6, 7, 8, 11, 12], [9, 10, 13]]
    ids, mask = _batch(prompts, [[], []])  # left-padded, as a prefill
    routing = RolloutRouting(model, replay=True)
    try:
        with routing.recording(), torch.no_grad():
            plain = model(input_ids=ids, attention_mask=mask).logits
        layout = routing.layout(prompts, [[], []])
        with routing.active(layout), torch.no_grad():
            replayed = model(input_ids=ids, attention_mask=mask).logits
        moved = _perturbed(model)
        with torch.no_grad():
            moved_plain = moved(input_ids=ids, attention_mask=mask).logits
        routing_moved = RolloutRouting(moved, replay=True)
        try:
            with routing_moved.active(layout), torch.no_grad():
                moved_replayed = moved(input_ids=ids, attention_mask=mask).logits
        finally:
            routing_moved.remove()
    finally:
        routing.remove()
    real = mask.bool()
    assert torch.equal(plain[real], replayed[real])
    assert not torch.allclose(moved_plain[real], moved_replayed[real], atol=1e-4)  # replay really reroutes
