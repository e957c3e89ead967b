"""Routing replay (workbench.moe.replay): evidence that fails when the layout, the agreement or the replay is wrong.

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q tests/unit/moe/test_routing_replay.py

On the tiny model: generation from left-padded prompts is recorded and laid out like TRL's training batch.
- Without replay, the UNCHANGED model's training forward must route every real (token, layer) to exactly the
  recorded experts (agreement 1.0): nothing forces it, so a layout off by one position fails here.
- The agreement is the router's own choice, checked against the router module's own forward on the hidden states
  it saw (read by the test's own hooks), never the experts replay forced.
- With replay on a moved router, the experts the expert modules receive (read at their input by the test) are the
  recording, and their gate weights are the CURRENT router's (recomputed here from its input and weight), so a
  gradient reaches the router.
- A layout that does not fit its forward or its rows is an error naming moe.routing_replay.
"""

import copy

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.moe.replay import RolloutRouting, RoutingLayoutError, router_top_k
from workbench.moe.routing import find_routers

PAD = 2
NEW_TOKENS = 6  # generated per row; the last is never fed back, so NEW_TOKENS - 1 completion tokens are recorded


@pytest.fixture(scope="module")
def model(tiny):
    return copy.deepcopy(tiny[0]).eval()


@pytest.fixture(scope="module")
def rollout(model):
    """(prompts, completions, layout) of one recorded greedy generation from the unchanged model."""
    recorder = RolloutRouting(model, replay=False)
    try:
        prompts, completions = _rollout(model, recorder)
        return prompts, completions, recorder.layout(prompts, completions)
    finally:
        recorder.remove()


@pytest.fixture(scope="module")
def moved(model):
    """The policy after an update: its routers moved, so their own choice disagrees with the rollout's often."""
    moved = copy.deepcopy(model)
    torch.manual_seed(1)
    for _, router in find_routers(moved):
        router.weight.data += 0.5 * router.weight.data.std() * torch.randn_like(router.weight)
    return moved


def _rollout(model, routing):
    """Greedy generation from three left-padded prompts: (prompt_ids, completion_ids) lists, recorded."""
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(10, 8000, (n,), generator=generator).tolist() for n in (9, 5, 3)]
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with routing.recording(), torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, do_sample=False,
                             pad_token_id=PAD, eos_token_id=None)
    return prompts, out[:, width:].tolist()


def _batch(prompts, completions):
    """TRL's training layout: prompts left-padded, completions right-padded, concatenated."""
    width, length = max(map(len, prompts)), max(map(len, completions))
    ids = torch.tensor([[PAD] * (width - len(p)) + p + c + [PAD] * (length - len(c)) for p, c in zip(prompts, completions)])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * (len(p) + len(c)) + [0] * (length - len(c))
                         for p, c in zip(prompts, completions)])
    return ids, mask


class Observed:
    """Each MoE block's router input and what its expert module received, read by the test's own pre-hooks
    (registered after the replay's, on the expert module itself: the experts this forward really used)."""

    def __init__(self, model):
        self.hidden, self.used, self.weights, self.handles = {}, {}, {}, []
        for name, block in model.named_modules():
            if "gate" in block._modules and "experts" in block._modules:
                layer = int(name.split(".")[-2])  # model.layers.<L>.mlp
                self.handles.append(block.gate.register_forward_pre_hook(
                    lambda module, args, layer=layer: self.hidden.__setitem__(layer, args[0].detach())))
                self.handles.append(block.experts.register_forward_pre_hook(
                    lambda module, args, layer=layer: self._experts(layer, *args[1:])))

    def _experts(self, layer, top_k_index, top_k_weights):
        self.used[layer], self.weights[layer] = top_k_index.detach(), top_k_weights.detach()

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _train_forward(model, routing, layout, ids, mask, count_in_backward=False):
    """The update's forward as the trainer runs it (counting on around the forward), then backward."""
    model.train()
    routing.counting = True
    with routing.active(layout):
        out = model(input_ids=ids, attention_mask=mask)
        if not count_in_backward:
            routing.counting = False
        out.logits[mask.bool()].logsumexp(-1).mean().backward()
    routing.counting = False
    pairs = routing.counts[2].sum().item()
    return routing.take_agreement(), pairs


def _real_pairs(prompts, completions, layers):
    """(real token, MoE layer) pairs with a recording: prompts and every fed-back completion token, no padding."""
    return layers * sum(len(p) + min(len(c), NEW_TOKENS - 1) for p, c in zip(prompts, completions))


def _shifted(layout):
    """The recording one position late: what a layout bug of one token does."""
    return torch.cat([layout[:, :1].clone().fill_(-1), layout[:, :-1]], dim=1)


def test_layout_matches_the_training_batch(model):
    routing = RolloutRouting(model, replay=True)
    try:
        prompts, completions = _rollout(model, routing)
        completions[2] = completions[2][:3]  # an early end (EOS): the row is shorter than the others
        layout = routing.layout(prompts, completions)
    finally:
        routing.remove()
    ids, mask = _batch(prompts, completions)
    assert layout.shape == (3, ids.shape[1], len(find_routers(model)), model.config.num_experts_per_tok)
    known = (layout >= 0).all(dim=-1).all(dim=-1)
    # padding has no recording; every real token has one except the last sampled token of a full-length
    # row, which generation never fed back through the model
    assert not known[mask == 0].any()
    width = max(map(len, prompts))
    for r, (p, c) in enumerate(zip(prompts, completions)):
        real = known[r, width - len(p): width + len(c)]
        fed = len(p) + min(len(c), NEW_TOKENS - 1)
        assert real[:fed].all() and not real[fed:].any()


def test_without_replay_the_unchanged_model_routes_exactly_as_recorded(model, rollout):
    """Nothing forces the experts here: agreement 1.0 is only reached when every recorded token sits at the
    position of the token it was recorded for. A layout one position off must read far below 1."""
    prompts, completions, layout = rollout
    ids, mask = _batch(prompts, completions)
    routing = RolloutRouting(model, replay=False)
    try:
        agreement, pairs = _train_forward(model, routing, layout, ids, mask)
        shifted, _ = _train_forward(model, routing, _shifted(layout), ids, mask)
    finally:
        routing.remove()
        model.zero_grad(set_to_none=True)
        model.eval()
    assert pairs == _real_pairs(prompts, completions, len(routing.layers))  # padding and the last token never count
    assert agreement["moe/router_agreement"] == 1.0
    assert all(agreement[f"moe/layer{layer}/router_agreement"] == 1.0 for layer in routing.layers)
    assert agreement["moe/replay_skipped"] == 0 and "moe/replay_applied" not in agreement  # nothing replayed
    assert shifted["moe/router_agreement"] < 0.9


def test_a_checkpoint_recompute_is_counted_once(model, rollout):
    """Gradient checkpointing runs the forward again inside backward; counting left on through it adds nothing."""
    prompts, completions, layout = rollout
    ids, mask = _batch(prompts, completions)
    routing = RolloutRouting(model, replay=True)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        agreement, pairs = _train_forward(model, routing, layout, ids, mask, count_in_backward=True)
    finally:
        model.gradient_checkpointing_disable()
        routing.remove()
        model.zero_grad(set_to_none=True)
        model.eval()
    assert pairs == _real_pairs(prompts, completions, len(routing.layers))
    assert agreement["moe/router_agreement"] == 1.0 and agreement["moe/replay_applied"] == 1.0


def test_router_top_k_is_the_routers_own_choice(moved):
    """The agreement's independent top-k equals what DeepseekV3TopkRouter itself returns (group-limited, with a
    correction bias), on hidden states and biases the router has not seen."""
    torch.manual_seed(2)
    for _, router in find_routers(moved):
        router = copy.deepcopy(router)
        router.e_score_correction_bias.normal_(0, 0.05)
        logits, _, chosen = router(torch.randn(1, 512, router.hidden_dim))
        ours = router_top_k(router, logits)
        assert torch.equal(ours.sort(dim=-1).values, chosen.sort(dim=-1).values)


@pytest.mark.parametrize("replay", [False, True])
def test_agreement_is_the_routers_choice_and_replay_feeds_the_experts_the_recording(model, moved, rollout, replay):
    prompts, completions, layout = rollout
    ids, mask = _batch(prompts, completions)
    routing = RolloutRouting(moved, replay=replay)
    observed = Observed(moved)
    try:
        agreement, _ = _train_forward(moved, routing, layout, ids, mask)
    finally:
        routing.remove()
        observed.remove()
    routers = dict(find_routers(moved))
    agrees = pairs = 0
    for i, layer in enumerate(routing.layers):
        recorded = layout[:, :, i].reshape(-1, layout.shape[-1]).long()
        known = (recorded >= 0).all(dim=-1)
        want = recorded[known].sort(dim=-1).values
        with torch.no_grad():
            own = routers[layer](observed.hidden[layer])[2]  # the router module's own choice, no layout active
        agrees += (own[known].sort(dim=-1).values == want).all(dim=-1).sum().item()
        pairs += known.sum().item()
        used = observed.used[layer]  # what the expert module received
        if replay:
            assert torch.equal(used[known].sort(dim=-1).values, want)
            assert torch.equal(used[~known], own[~known])  # no recording (padding): the router's own choice
        else:
            assert torch.equal(used, own)
    assert agreement["moe/router_agreement"] == pytest.approx(agrees / pairs)  # never the experts replay forced
    assert 0.0 < agreement["moe/router_agreement"] < 0.95  # the moved router disagrees on many (token, layer)
    assert agreement.get("moe/replay_applied") == (1.0 if replay else None)
    for router in routers.values():
        assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0
    moved.zero_grad(set_to_none=True)


def test_replayed_gate_weights_are_the_current_routers(model, moved, rollout):
    """The expert modules weigh the recorded experts by the moved router's sigmoid scores (normalised, scaled),
    recomputed here from the router's input and weight, not by the scores the rollout's router gave them."""
    prompts, completions, layout = rollout
    ids, mask = _batch(prompts, completions)
    routing = RolloutRouting(moved, replay=True)
    observed = Observed(moved)
    try:
        moved.eval()
        with routing.active(layout), torch.no_grad():
            moved(input_ids=ids, attention_mask=mask)
    finally:
        routing.remove()
        observed.remove()
    before = dict(find_routers(model))
    for i, (layer, router) in enumerate(find_routers(moved)):
        recorded = layout[:, :, i].reshape(-1, layout.shape[-1]).long()
        known = (recorded >= 0).all(dim=-1)
        hidden = observed.hidden[layer].reshape(-1, router.hidden_dim).float()[known]
        for source, weights in (("current", router.weight), ("rollout", before[layer].weight)):
            scores = (hidden @ weights.float().T).sigmoid().gather(1, recorded[known])
            expected = scores / scores.sum(dim=-1, keepdim=True) * router.routed_scaling_factor
            close = torch.allclose(observed.weights[layer][known], expected, atol=1e-5)
            assert close if source == "current" else not close


def test_replaying_the_routers_own_choice_changes_nothing(model, moved):
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


@pytest.mark.parametrize("replay", [False, True])
def test_a_layout_that_does_not_fit_its_forward_stops_it(model, rollout, replay):
    prompts, completions, layout = rollout
    ids, mask = _batch(prompts, completions)
    routing = RolloutRouting(model, replay=replay)
    try:
        with pytest.raises(WorkbenchError) as err, routing.active(layout[:, 1:]), torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
    finally:
        routing.remove()
    message = str(err.value)
    assert message.startswith("moe.routing_replay: ") and "\n" not in message
    assert f"{tuple(layout[:, 1:].shape[:2])}" in message and f"{tuple(ids.shape)}" in message


def test_a_recording_that_is_not_one_prefill_plus_one_token_per_step_is_refused(model):
    routing = RolloutRouting(model, replay=True)
    prompts = [[5, 6, 7, 8], [9, 10, 13, 14]]
    try:
        with routing.recording(), torch.no_grad():
            model(input_ids=torch.tensor(prompts))
            model(input_ids=torch.tensor(prompts))  # a second full forward, not one token per row
        with pytest.raises(RoutingLayoutError, match="one prefill of 2 rows plus one token per step"):
            routing.layout(prompts, [[1], [1]])
        with routing.recording(), torch.no_grad():
            model(input_ids=torch.tensor(prompts))
        with pytest.raises(RoutingLayoutError, match="row 0 has 5 prompt and 1 completion tokens"):
            routing.layout([[4] + prompts[0], prompts[1]], [[1], [1]])  # a prompt longer than generation saw
        with pytest.raises(RoutingLayoutError, match="nothing was recorded"):
            routing.layout(prompts, [[1], [1]])  # the recording is consumed by the first layout
    finally:
        routing.remove()
