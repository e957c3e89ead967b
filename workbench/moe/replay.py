"""Routing replay for MoE reinforcement learning (R3, arXiv 2510.11370), and the routing agreement it fixes.

    from workbench.moe.replay import RolloutRouting
    routing = RolloutRouting(model, replay=True)
    with routing.recording():
        ids = model.generate(...)                       # every router's experts, per forward
    layout = routing.layout(prompt_ids, completion_ids, pad_to_multiple_of)   # (B, P + C, layers, k)
    with routing.active(layout):
        logps = model(input_ids=cat(prompt, completion))  # routed to the rollout's experts

In an MoE policy the experts chosen while a completion is sampled need not be those chosen when the same
tokens are scored for the update: the weights moved (several updates per rollout), the bias moved (aux-free
balancing), or numerics differ (batch shape, KV cache, an inference engine). The importance ratio then
compares two different networks. Replay records each MoE layer's selected experts during generation and,
in every later forward over those tokens (old log-probs, reference, the training forward of each iteration
and micro-batch), routes each token to the recorded experts, while the gate weights come from the CURRENT
router: `sigmoid(x . W)` gathered at the recorded experts, normalised and scaled exactly as
`DeepseekV3TopkRouter` does. So the router still learns through the gate weights, and only the discrete
choice is pinned.

Layout. Generation sees left-padded prompts, then one token per forward. The recording is laid out per row
the way TRL lays out the training batch (prompt left-padded, completion right-padded, each to a multiple of
`pad_to_multiple_of`), with -1 where nothing was recorded: padding, and the last sampled token, which
generation never fed back through the model (its routing never reaches the loss: a position's output only
scores the token after it). A token with -1 keeps the router's own choice. A recording that cannot be laid
out raises `RoutingLayoutError` (the trainer stops or counts it: `moe/replay_skipped`); a layout whose shape
is not the forward's stops that forward with a WorkbenchError. Nothing falls back silently.

Metrics, counted in the update's own forwards (`counting`, set by the trainer around them; a gradient-checkpoint
recompute inside backward never counts), over (real token, MoE layer) pairs with a recording (padding never counts):
- `moe/router_agreement` (and per layer): the router's OWN top-k on the current weights, recomputed here from its
  logits and correction bias the way `DeepseekV3TopkRouter` selects (`router_top_k`), never the experts replay
  forced, has the rollout's expert set. An unchanged model gives 1.0 with or without replay when the layout is
  right; a layout off by one position gives far less. With replay it shows how far the router has moved.
- `moe/replay_applied` (replay only): the experts the expert module actually received (read at its input, after
  every router hook) are the rollout's: the evidence that replay ran, not that the layout is right.
- `moe/replay_skipped`: rollout batches whose recording could not be laid out on the batch (counted by the
  trainer when only measuring; with replay on the run stops instead).
"""

import contextlib

import torch

from workbench.errors import WorkbenchError
from workbench.moe.routing import find_routers

MEASURED = ("router agrees", "used agrees", "pairs")  # the rows of RolloutRouting.counts


class RoutingLayoutError(ValueError):
    """The recorded experts cannot be laid out on the training batch (the message says why, in one line)."""


def router_top_k(router, router_logits: torch.Tensor) -> torch.Tensor:
    """The experts a `DeepseekV3TopkRouter` picks from its logits (tokens, E): sigmoid scores plus the correction
    bias, group-limited to its best `topk_group` groups (each scored by its two best experts), then top-k.
    -> (tokens, k). Recomputed here so the agreement never reads the indices a replay hook may have replaced."""
    choice = router_logits.float().sigmoid() + router.e_score_correction_bias.float()  # (tokens, E)
    groups, experts = router.num_group, choice.shape[-1]
    if 1 < groups and router.topk_group < groups:
        per_group = experts // groups
        group_scores = choice.view(-1, groups, per_group).topk(min(2, per_group), dim=-1).values.sum(dim=-1)
        kept = group_scores.topk(router.topk_group, dim=-1).indices  # (tokens, topk_group)
        allowed = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept, True)
        choice = choice.masked_fill(~allowed.repeat_interleave(per_group, dim=1), float("-inf"))
    return choice.topk(router.top_k, dim=-1).indices


class RolloutRouting:
    def __init__(self, model, replay: bool):
        self.routers = _replay_routers(model)
        self.layers = [layer for layer, _ in self.routers]
        self.top_k = self.routers[0][1].top_k
        self.replay = replay
        self._record: list[list[torch.Tensor | None]] | None = None
        self._recorded = None
        self._active: torch.Tensor | None = None
        self.counting = False  # set around the update's own forward: the agreement counts it once
        self.counts = torch.zeros(len(MEASURED), len(self.routers), dtype=torch.float64)
        self.skipped = 0  # rollout batches whose recording did not fit their batch (the trainer counts them)
        self.handles = []
        self._hook(model, self.routers)

    def also(self, model) -> None:
        """Replay in another copy of the same architecture too (a full fine-tune's frozen reference)."""
        routers = _replay_routers(model)
        if len(routers) != len(self.routers):
            raise ValueError(f"routing replay: the reference has {len(routers)} MoE layers, the policy {len(self.routers)}")
        self._hook(model, routers)

    def _hook(self, model, routers) -> None:
        experts = _experts_beside(model, [router for _, router in routers])
        for i, (_, router) in enumerate(routers):
            self.handles.append(router.register_forward_hook(self._router_hook(i), prepend=True))
            self.handles.append(experts[i].register_forward_pre_hook(self._experts_hook(i), with_kwargs=True))

    def remove(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []

    @contextlib.contextmanager
    def recording(self):
        self._record = [[] for _ in self.routers]
        try:
            yield
        finally:
            self._recorded, self._record = self._record, None

    @contextlib.contextmanager
    def active(self, layout: torch.Tensor | None):
        """Forwards inside see `layout` (B, T, layers, k) for their (B, T) tokens; None: the router's own choice."""
        previous, self._active = self._active, layout
        try:
            yield
        finally:
            self._active = previous

    def hold(self, layout: torch.Tensor | None) -> None:
        """Like `active`, until `release()`: a training forward's layout must outlive the forward, because
        gradient checkpointing recomputes the forward inside backward and must route the same way."""
        self._active = layout

    def release(self) -> None:
        self._active, self.counting = None, False

    def layout(self, prompt_ids: list, completion_ids: list, pad_to_multiple_of: int | None = None) -> torch.Tensor:
        """The last recording, per row: (B, P + C, layers, k) int16 in the training batch's layout, -1 = none.
        Raises RoutingLayoutError when the recording is not one prefill plus one token per step for these rows."""
        from trl.trainer.utils import pad

        calls, self._recorded = self._recorded, None
        rows = len(prompt_ids)
        if not calls or not calls[0]:
            raise RoutingLayoutError("nothing was recorded while the completions were generated")
        if any(len(c) != len(calls[0]) for c in calls) or any(x is None for c in calls for x in c):
            raise RoutingLayoutError("the MoE layers recorded different forwards")
        prefill = torch.stack([c[0] for c in calls], dim=2)  # (B, P, layers, k)
        steps = [torch.stack([c[s] for c in calls], dim=2) for s in range(1, len(calls[0]))]  # each (B, 1, layers, k)
        if prefill.shape[0] != rows or any(step.shape[:2] != (rows, 1) for step in steps):
            raise RoutingLayoutError(f"generation did not run as one prefill of {rows} rows plus one token per step "
                                     "(a prompt cache, beams or continuous batching change that)")
        decoded = torch.cat(steps, dim=1) if steps else prefill[:, :0]  # (B, steps, layers, k)
        prompts, completions = [], []
        for r in range(rows):
            n_prompt, n_completion = len(prompt_ids[r]), len(completion_ids[r])
            if n_prompt > prefill.shape[1] or n_completion > decoded.shape[1] + 1:
                raise RoutingLayoutError(f"row {r} has {n_prompt} prompt and {n_completion} completion tokens; "
                                         f"generation saw {prefill.shape[1]} and fed back {decoded.shape[1]}")
            prompts.append(prefill[r, prefill.shape[1] - n_prompt:])
            fed = decoded[r, :n_completion]
            missing = n_completion - fed.shape[0]  # the last sampled token was never fed back
            completions.append(torch.cat([fed, fed.new_full((missing, *fed.shape[1:]), -1)]))
        prompt_part = pad(prompts, padding_value=-1, padding_side="left", pad_to_multiple_of=pad_to_multiple_of)
        completion_part = pad(completions, padding_value=-1, padding_side="right", pad_to_multiple_of=pad_to_multiple_of)
        return torch.cat([prompt_part, completion_part], dim=1)

    def take_agreement(self) -> dict[str, float]:
        """The metrics since the last take, summed over ranks (every rank must call it: an all-reduce); empty when
        no training forward had a recording and no rollout was skipped (the agreement needs a recording)."""
        counts, skipped = self.counts, self.skipped
        self.counts, self.skipped = torch.zeros_like(counts), 0
        flat = torch.cat([counts.flatten(), torch.tensor([float(skipped)], dtype=torch.float64)])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flat = flat.to(_device()).contiguous()
            torch.distributed.all_reduce(flat)
            flat = flat.cpu()
        counts, skipped = flat[:-1].view_as(counts), flat[-1]
        router, used, pairs = counts
        if pairs.sum() == 0 and skipped == 0:
            return {}
        metrics = {"moe/replay_skipped": skipped.item()}
        if pairs.sum() == 0:
            return metrics
        metrics["moe/router_agreement"] = (router.sum() / pairs.sum()).item()
        if self.replay:
            metrics["moe/replay_applied"] = (used.sum() / pairs.sum()).item()
        for i, layer in enumerate(self.layers):
            if pairs[i] > 0:
                metrics[f"moe/layer{layer}/router_agreement"] = (router[i] / pairs[i]).item()
        return metrics

    def _router_hook(self, index: int):
        def hook(module, args, output):
            router_logits, weights, chosen = output  # (tokens, E), (tokens, k), (tokens, k)
            hidden = args[0] if args else None
            shape = tuple(hidden.shape[:2]) if hidden is not None and hidden.dim() == 3 else None
            if self._record is not None:
                record = None if shape is None else chosen.detach().view(*shape, -1).to(torch.int16).cpu()
                self._record[index].append(record)  # None: a flat input cannot be laid out (layout() says so)
                return None
            if self._active is None:
                return None
            recorded, known = self._recorded_at(index, chosen.shape[0], shape, chosen.device)
            if self._counting(module):  # no autograd here: a checkpoint recompute must save the same tensors
                with torch.no_grad():
                    self._count(0, index, known, recorded, router_top_k(module, router_logits.detach()))
                self.counts[2, index] += known.sum().item()
            if not self.replay:
                return None
            used = torch.where(known.unsqueeze(-1), recorded, chosen)
            # the gate weights of the recorded experts under the current router (DeepseekV3TopkRouter's formula)
            gate = router_logits.sigmoid().gather(1, used)
            if module.norm_topk_prob:
                gate = gate / (gate.sum(dim=-1, keepdim=True) + 1e-20)
            return router_logits, (gate * module.routed_scaling_factor).to(weights.dtype), used

        return hook

    def _experts_hook(self, index: int):
        """What the expert module receives, after every router hook: the experts this forward really used
        (only read with replay on; without it they are the router's own, which `router_top_k` measures)."""
        def hook(module, args, kwargs):
            if self.replay and self._active is not None and self._counting(module):
                used = args[1] if len(args) > 1 else kwargs["top_k_index"]  # (tokens, k)
                recorded, known = self._recorded_at(index, used.shape[0], None, used.device)
                self._count(1, index, known, recorded, used)

        return hook

    def _recorded_at(self, index: int, tokens: int, shape: tuple | None, device):
        """The active layout's experts for layer `index` as (tokens, k) long, and which tokens have a recording."""
        layout = self._active
        if layout.shape[0] * layout.shape[1] != tokens or shape not in (None, tuple(layout.shape[:2])):
            raise WorkbenchError(f"moe.routing_replay: the recorded layout covers {tuple(layout.shape[:2])} tokens, "
                                 f"this forward {shape or tokens}: the rollout's experts do not fit this batch")
        recorded = layout[:, :, index].reshape(tokens, -1).to(device=device, dtype=torch.long)
        return recorded, (recorded >= 0).all(dim=-1)

    def _counting(self, module) -> bool:
        """The update's forward: not an eval pass, not a checkpoint recompute inside backward (counted already)."""
        return self.counting and module.training and torch._C._current_graph_task_id() == -1

    def _count(self, row: int, index: int, known, recorded, experts) -> None:
        with torch.no_grad():
            if known.any():
                same = experts[known].sort(dim=-1).values == recorded[known].sort(dim=-1).values
                self.counts[row, index] += same.all(dim=-1).sum().item()


def _replay_routers(model) -> list:
    """(layer, router) of the decoder's DeepSeek-V3 routers (an MTP layer's router never runs in these forwards)."""
    depth = getattr(model.config, "num_hidden_layers", None)
    routers = [(layer, r) for layer, r in find_routers(model) if depth is None or layer < depth]
    if not routers or not all(hasattr(r, "num_group") and hasattr(r, "norm_topk_prob") for _, r in routers):
        raise WorkbenchError("moe.routing_replay: needs DeepSeek-V3 routers (sigmoid scores with a correction "
                             f"bias); this {model.config.model_type} model has none: set moe.routing_replay: none")
    return routers


def _experts_beside(model, routers: list) -> list:
    """The expert module that each router's MoE block feeds (its sibling `experts`, or what a wrapper put there)."""
    beside = {}
    for module in model.modules():
        gate, experts = module._modules.get("gate"), module._modules.get("experts")
        if gate is not None and experts is not None:
            beside[id(gate)] = experts
    missing = [i for i, router in enumerate(routers) if id(router) not in beside]
    if missing:
        raise WorkbenchError(f"moe.routing_replay: no `experts` module beside the router of MoE layer {missing[0]}; "
                             "the experts used cannot be observed: set moe.routing_replay: none")
    return [beside[id(router)] for router in routers]


def _device():
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
