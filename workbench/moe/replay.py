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
scores the token after it). A token with -1 keeps the router's own choice.

Agreement (`moe/rollout_agreement`): in the update's own forwards (`counting`, set by the trainer around them and
cleared before backward, so a checkpoint recompute is not counted twice, reentrant or not), the share of (real token,
MoE layer) pairs whose expert SET equals the rollout's; tokens without a recording (padding) never count.
`moe/router_agreement` is the same for the experts the current router would pick itself: with replay off
the two are equal; with replay on the first is 1.0 and the second shows how far the router has moved.
"""

import contextlib

import torch

from workbench.moe.routing import find_routers


class RolloutRouting:
    def __init__(self, model, replay: bool):
        depth = getattr(model.config, "num_hidden_layers", None)  # an MTP layer's router never runs in these forwards
        self.routers = [(layer, r) for layer, r in find_routers(model) if depth is None or layer < depth]
        if not self.routers:
            from workbench.errors import WorkbenchError

            raise WorkbenchError("moe.routing_replay: needs DeepSeek-V3 routers (sigmoid scores with a correction "
                                 f"bias); this {model.config.model_type} model has none: set moe.routing_replay: none")
        self.layers = [layer for layer, _ in self.routers]
        self.top_k = self.routers[0][1].top_k
        self.replay = replay
        self._record: list[list[torch.Tensor]] | None = None
        self._active: torch.Tensor | None = None
        self.counting = False  # set around the update's own forward: the agreement counts it once
        self.counts = torch.zeros(3, len(self.routers), dtype=torch.float64)  # used agrees, router agrees, pairs
        self.skipped = 0  # generation batches whose forwards were not laid out as prefill + one token each
        self.handles = [router.register_forward_hook(self._hook(i), prepend=True)
                        for i, (_, router) in enumerate(self.routers)]

    def also(self, model) -> None:
        """Replay in another copy of the same architecture too (a full fine-tune's frozen reference)."""
        depth = getattr(model.config, "num_hidden_layers", None)
        routers = [r for layer, r in find_routers(model) if depth is None or layer < depth]
        if len(routers) != len(self.routers):
            raise ValueError(f"routing replay: the reference has {len(routers)} MoE layers, the policy {len(self.routers)}")
        self.handles += [router.register_forward_hook(self._hook(i), prepend=True) for i, router in enumerate(routers)]

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

    def layout(self, prompt_ids: list, completion_ids: list, pad_to_multiple_of: int | None = None) -> torch.Tensor | None:
        """The last recording, per row: (B, P + C, layers, k) int16 in the training batch's layout, -1 = none."""
        from trl.trainer.utils import pad

        calls = getattr(self, "_recorded", None)
        self._recorded = None
        rows = len(prompt_ids)
        if not calls or not calls[0] or any(len(c) != len(calls[0]) for c in calls):
            self.skipped += 1
            return None
        prefill = torch.stack([c[0] for c in calls], dim=2)  # (B, P, layers, k)
        steps = [torch.stack([c[s] for c in calls], dim=2) for s in range(1, len(calls[0]))]
        if prefill.shape[0] != rows or any(step.shape[:2] != (rows, 1) for step in steps):
            self.skipped += 1  # e.g. chunked prefill or a prompt cache: not the layout read here
            return None
        decoded = torch.cat(steps, dim=1) if steps else prefill[:, :0]
        empty = torch.full((0, len(self.routers), self.top_k), -1, dtype=torch.int16)
        prompts, completions = [], []
        for r in range(rows):
            n_prompt, n_completion = len(prompt_ids[r]), len(completion_ids[r])
            if n_prompt > prefill.shape[1]:
                self.skipped += 1
                return None
            prompts.append(prefill[r, prefill.shape[1] - n_prompt:])
            fed = decoded[r, :n_completion]
            missing = n_completion - fed.shape[0]  # the last sampled token was never fed back
            completions.append(torch.cat([fed, empty.new_full((missing, *empty.shape[1:]), -1)]) if missing else fed)
        prompt_part = pad(prompts, padding_value=-1, padding_side="left", pad_to_multiple_of=pad_to_multiple_of)
        completion_part = pad(completions, padding_value=-1, padding_side="right", pad_to_multiple_of=pad_to_multiple_of)
        return torch.cat([prompt_part, completion_part], dim=1)

    def take_agreement(self) -> dict[str, float]:
        """Agreement metrics since the last take (empty when no training forward had a recording)."""
        counts, self.counts = self.counts, torch.zeros_like(self.counts)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            counts = counts.to(_device()).contiguous()
            torch.distributed.all_reduce(counts)
            counts = counts.cpu()
        pairs = counts[2].sum()
        if pairs == 0:
            return {}
        metrics = {"moe/rollout_agreement": (counts[0].sum() / pairs).item(),
                   "moe/router_agreement": (counts[1].sum() / pairs).item()}
        for i, layer in enumerate(self.layers):
            if counts[2, i] > 0:
                metrics[f"moe/layer{layer}/rollout_agreement"] = (counts[0, i] / counts[2, i]).item()
        return metrics

    def _hook(self, index: int):
        def hook(module, args, output):
            hidden = args[0] if args else None
            if hidden is None or hidden.dim() != 3:
                return None
            batch, tokens = hidden.shape[:2]
            router_logits, weights, chosen = output
            if self._record is not None:
                self._record[index].append(chosen.detach().view(batch, tokens, -1).to(torch.int16).cpu())
                return None
            layout = self._active
            if layout is None:
                return None
            if tuple(layout.shape[:2]) != (batch, tokens):
                raise RuntimeError(f"routing replay: recorded layout {tuple(layout.shape[:2])} does not match this "
                                   f"forward's tokens {(batch, tokens)}")
            recorded = layout[:, :, index].reshape(batch * tokens, -1).to(device=chosen.device, dtype=torch.long)
            known = (recorded >= 0).all(dim=-1)
            used = torch.where(known.unsqueeze(-1), recorded, chosen) if self.replay else chosen
            if self.counting and module.training:  # the update's forward, not a checkpoint recompute in backward
                self._count(index, known, recorded, chosen, used)
            if not self.replay:
                return None
            # the gate weights of the recorded experts under the current router (DeepseekV3TopkRouter's formula)
            gate = router_logits.sigmoid().gather(1, used)
            if module.norm_topk_prob:
                gate = gate / (gate.sum(dim=-1, keepdim=True) + 1e-20)
            return router_logits, (gate * module.routed_scaling_factor).to(weights.dtype), used

        return hook

    def _count(self, index, known, recorded, chosen, used):
        with torch.no_grad():
            if not known.any():
                return
            want = recorded[known].sort(dim=-1).values
            self.counts[0, index] += (used[known].sort(dim=-1).values == want).all(dim=-1).sum().item()
            self.counts[1, index] += (chosen[known].sort(dim=-1).values == want).all(dim=-1).sum().item()
            self.counts[2, index] += known.sum().item()


def _device():
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
