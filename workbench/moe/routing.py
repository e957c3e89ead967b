"""Watch DeepSeek-V3 routers: which experts each real token goes to, cheaply enough to leave on.

    from workbench.moe.routing import RoutingRecorder, load_stats
    recorder = RoutingRecorder(model)          # hooks on the decoder stack and every DeepseekV3TopkRouter
    model(**batch)
    loads = recorder.take("train").loads      # (moe_layers, n_experts) token counts since the last take

Only real tokens count. A forward pre-hook on the decoder stack (`DeepseekV3Model`, found by structure
inside any PEFT / DeepSpeed wrapper) keeps that forward's `attention_mask`; each router hook weights its
tokens by it, so padding adds nothing to loads, gate sums, entropy, the sequence-wise loss or eval drift.
No mask (padding-free / packed batches) means every position is real. Prompt tokens are real tokens:
they are routed and they load the experts like any other, so every statistic here counts them (ESFT
included; see `workbench.moe.control`).

Training forwards (`module.training` with grad enabled) go to the `train` bucket, which drives the
balancing bias; eval-mode forwards go to the `eval` bucket (eval-split routing, ESFT profiling, generation);
no-grad passes in training mode (DPO's reference model) and checkpoint recomputes count nowhere.
"""

import math
import warnings

import torch

from workbench.moe.sparsity import GATE_FIGURES, gate_figures, sparsity_penalty


def find_routers(model) -> list[tuple[int, torch.nn.Module]]:
    """(layer index, router) for each MoE layer, found by structure so any wrapper (PEFT, DeepSpeed) works."""
    routers = []
    for name, module in model.named_modules():
        if hasattr(module, "e_score_correction_bias") and hasattr(module, "top_k") and hasattr(module, "weight"):
            layer = next(int(p) for p in reversed(name.split(".")) if p.isdigit())
            routers.append((layer, module))
        elif is_autoep_router(module):
            layer = next(int(p) for p in reversed(name.split(".")) if p.isdigit())
            routers.append((layer, module))
    return sorted(routers, key=lambda item: item[0])


def is_autoep_router(module) -> bool:
    """DeepSpeed AutoEP's router (expert parallelism): a `gate` linear plus the copied correction bias."""
    return (type(module).__name__ == "TokenChoiceTopKRouter" and hasattr(module, "gate")
            and getattr(module, "e_score_correction_bias", None) is not None)


def find_decoders(model) -> list[torch.nn.Module]:
    """The decoder stacks (`DeepseekV3Model`: embeddings + layers), by their own children, not by attribute
    lookup (PEFT forwards unknown attributes to the wrapped model, which would match the wrappers too)."""
    return [module for _, module in model.named_modules()
            if "embed_tokens" in module._modules and "layers" in module._modules]


def real_token_mask(attention_mask, batch: int, seq_len: int) -> torch.Tensor | None:
    """(batch, seq_len) bool, True at real tokens; None when every position is real or the mask is unreadable.

    2D masks are (batch, past + seq_len) in generation with a cache: the last seq_len columns are this
    forward's tokens. A 4D mask (bool, or additive float with 0 where attention is allowed) marks token i
    real when it may attend to itself: causal masks always allow the diagonal except at padding.
    """
    if not isinstance(attention_mask, torch.Tensor):
        return None
    if attention_mask.dim() == 2:
        real = attention_mask[:, -seq_len:] != 0
    elif attention_mask.dim() == 4:  # (batch, heads or 1, seq_len, past + seq_len)
        diagonal = attention_mask[:, 0, :, -seq_len:].diagonal(dim1=-2, dim2=-1)
        real = diagonal if diagonal.dtype == torch.bool else diagonal >= 0
    else:
        return None
    return real if tuple(real.shape) == (batch, seq_len) else None


class ForwardTokens:
    """What the current decoder forward says about its tokens, read lazily by the router hooks.

    The pre-hook only keeps references (it runs outside the timed router hooks); the first router hook of
    the forward turns them into a flat real-token mask that the other layers reuse.
    """

    def __init__(self):
        self.inputs = None  # (attention_mask, position_ids, (batch, seq_len)) of the running forward
        self.cache: dict = {}

    def capture(self, module, args, kwargs):  # forward pre-hook, with_kwargs=True
        shaped = kwargs.get("input_ids")
        if shaped is None:
            shaped = kwargs.get("inputs_embeds")
        if shaped is None and args:
            shaped = args[0]
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        self.inputs = (mask, kwargs.get("position_ids"), tuple(shaped.shape[:2]) if shaped is not None else None)
        self.cache = {}

    def release(self, module, args, kwargs, output=None):  # forward hook, always called
        self.inputs, self.cache = None, {}

    def real(self, tokens: int) -> torch.Tensor | None:
        """(tokens,) bool for the router's flattened (batch * seq_len) tokens, or None: all real."""
        if "real" not in self.cache:
            self.cache["real"] = self._real_2d(tokens)
        real = self.cache["real"]
        return None if real is None else real.reshape(-1)

    def _real_2d(self, tokens: int) -> torch.Tensor | None:
        if self.inputs is None or self.inputs[2] is None:
            return None  # a router called outside a decoder forward: nothing says what is padding
        mask, _, (batch, seq_len) = self.inputs
        if mask is None:
            return None
        if batch * seq_len != tokens:
            warnings.warn(f"routing telemetry: {tokens} routed tokens for a ({batch}, {seq_len}) batch; "
                          "counting every position", stacklevel=2)
            return None
        real = real_token_mask(mask, batch, seq_len)
        if real is None:
            warnings.warn(f"routing telemetry: unreadable attention mask {tuple(mask.shape)}; counting every position",
                          stacklevel=2)
        return real

    def sequence_ids(self, tokens: int, fallback_batch: int, device) -> torch.Tensor:
        """(tokens,) sequence index of each token, padding mapped to `tokens` (a spare slot)."""
        if "sequence_ids" not in self.cache:
            self.cache["sequence_ids"] = self._sequence_ids(tokens, fallback_batch, device)
        return self.cache["sequence_ids"]

    def _sequence_ids(self, tokens: int, fallback_batch: int, device) -> torch.Tensor:
        real = self.real(tokens)
        shape = self.inputs[2] if self.inputs is not None else None
        known = shape is not None and shape[0] * shape[1] == tokens
        batch, seq_len = shape if known else (fallback_batch, tokens // fallback_batch)
        rows = torch.arange(batch, device=device)[:, None].expand(batch, seq_len)
        within = torch.zeros_like(rows)
        position_ids = self.inputs[1] if known else None
        if real is None and position_ids is not None and position_ids.dim() == 2:
            # padding-free rows pack several sequences: positions restart where a new one begins,
            # the same reading transformers' masking makes of them
            from transformers.masking_utils import find_packed_sequence_indices

            packed = find_packed_sequence_indices(position_ids.expand(batch, seq_len))
            within = packed.to(device) if packed is not None else within
        ids = (rows * seq_len + within).reshape(-1)  # unique per sequence, < tokens
        return ids if real is None else torch.where(real, ids, tokens)


class Bucket:
    """Real-token counts, summed gate weights, summed router entropy and the summed gate figures of
    `workbench.moe.sparsity` (GATE_FIGURES x layers) per MoE layer since the last `take()`."""

    def __init__(self, n_layers: int, n_experts: int, device):
        self.loads = torch.zeros(n_layers, n_experts, dtype=torch.float64, device=device)
        self.gate_sums = torch.zeros(n_layers, n_experts, dtype=torch.float64, device=device)
        self.entropy_sum = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self.figure_sums = torch.zeros(len(GATE_FIGURES), n_layers, dtype=torch.float64, device=device)
        self.tokens = torch.zeros(n_layers, dtype=torch.float64, device=device)

    def to(self, device) -> None:
        for name in ("loads", "gate_sums", "entropy_sum", "figure_sums", "tokens"):
            setattr(self, name, getattr(self, name).to(device))

    def add(self, index, router_logits, topk_weights, topk_indices, entropy: bool, real=None, threshold: float = 0.1):
        """Count a router call; `real` (tokens,) bool leaves out padding. Weights, not selection, so no host sync.
        Slots holding the index n_experts (top-p routing's unused slots) count nowhere."""
        n_experts = self.loads.shape[1]
        valid = topk_indices < n_experts  # (tokens, K)
        chosen = valid if real is None else valid & real[:, None]
        flat = torch.where(valid, topk_indices, 0).reshape(-1)  # (tokens * K,)
        self.loads[index].index_add_(0, flat, chosen.reshape(-1).double())
        gates = torch.where(chosen, topk_weights, 0.0)
        self.gate_sums[index].index_add_(0, flat, gates.reshape(-1).double())
        self.tokens[index] += topk_indices.shape[0] if real is None else real.sum()
        if entropy:
            per_token = affinity_entropy(router_logits)  # (tokens,)
            self.entropy_sum[index] += (per_token if real is None else torch.where(real, per_token, 0.0)).sum().double()
            figures = gate_figures(topk_weights, topk_indices, n_experts, threshold)  # (figures, tokens)
            self.figure_sums[:, index] += (figures if real is None else torch.where(real, figures, 0.0)).sum(-1).double()

    @property
    def entropy(self) -> torch.Tensor:
        """Mean router entropy per real token, per layer."""
        return self.entropy_sum / self.tokens.clamp_min(1)


class RoutingRecorder:
    def __init__(self, model, seq_aux_alpha: float = 0.0, entropy: bool = True, gate_threshold: float = 0.1):
        self.routers = find_routers(model)
        if not self.routers:
            raise ValueError("no DeepSeek-V3 router found in the model")
        self.layers = [layer for layer, _ in self.routers]
        self.n_experts = self.routers[0][1].e_score_correction_bias.numel()
        self.seq_aux_alpha = seq_aux_alpha
        self.entropy = entropy
        self.train = self._new_bucket()  # training forwards: drives balancing and train telemetry
        self.eval = self._new_bucket()  # eval-mode forwards: eval-split routing, ESFT profiling
        self.seq_aux_terms: list[torch.Tensor] = []  # with grad, consumed by the loss
        self.gate_threshold = gate_threshold  # effective experts: gate shares above it (workbench.moe.sparsity)
        self.sparsity_weight, self.sparsity_target = 0.0, 0.0  # set by the MoE callback (a stage may change it)
        self.sparsity_terms: list[torch.Tensor] = []  # per MoE layer, with grad, consumed by the loss
        self.forward_tokens = ForwardTokens()
        self.handles = []
        # an MTP layer (workbench.model.mtp) runs after the decoder stack's forward, on its own (shifted) batch
        mtp_layers = [m for _, m in model.named_modules() if "eh_proj" in m._modules and "enorm" in m._modules]
        for decoder in find_decoders(model) + mtp_layers:
            self.handles.append(decoder.register_forward_pre_hook(self.forward_tokens.capture, with_kwargs=True))
            self.handles.append(decoder.register_forward_hook(self.forward_tokens.release, with_kwargs=True,
                                                              always_call=True))
        self.router_handles = []
        self._hook_routers()

    def _hook_routers(self) -> None:
        for handle in self.router_handles:
            handle.remove()
        self.router_handles = []
        for i, (_, router) in enumerate(self.routers):
            if is_autoep_router(router):  # its outputs are (weights, experts, counts); the logits come from its gate
                stash = {}
                self.router_handles.append(router.gate.register_forward_hook(
                    lambda module, args, output, stash=stash: stash.update(logits=output.detach())))
                self.router_handles.append(router.register_forward_hook(self._hook(i, stash)))
            else:
                self.router_handles.append(router.register_forward_hook(self._hook(i)))

    def rebind(self, model) -> int:
        """Follow routers that replaced the hooked ones (DeepSpeed AutoEP swaps the MoE blocks at initialize);
        returns how many changed. The buckets keep counting across the swap: the layers are the same."""
        routers = find_routers(model)
        if [layer for layer, _ in routers] != self.layers:
            raise ValueError(f"routers of layers {[layer for layer, _ in routers]} replaced those of {self.layers}")
        changed = sum(new is not old for (_, new), (_, old) in zip(routers, self.routers))
        if changed:
            for _, router in routers:  # the bias stays fp32 whatever the engine's dtype
                router.e_score_correction_bias.data = router.e_score_correction_bias.data.float()
            self.routers = routers
            self._hook_routers()
            device = routers[0][1].e_score_correction_bias.device  # the engine may have moved the model to a GPU
            for bucket in (self.train, self.eval):
                bucket.to(device)
        return changed

    def _new_bucket(self) -> Bucket:
        return Bucket(len(self.routers), self.n_experts, self.routers[0][1].e_score_correction_bias.device)

    def _hook(self, index: int, stash: dict | None = None):
        def hook(module, args, output):
            logits = stash.pop("logits", None) if stash is not None else None  # taken even when not counted
            if torch._C._current_graph_task_id() != -1:
                return  # a gradient-checkpointing recompute inside backward: already counted
            if stash is None:
                router_logits, topk_weights, topk_indices = output  # (tokens, E), (tokens, K), (tokens, K)
            else:  # AutoEP: (weights, experts, counts), the gate's logits kept by its own hook
                (topk_weights, topk_indices, _), router_logits = output, logits
            training = module.training and torch.is_grad_enabled()
            if module.training and not training:
                return  # a no-grad pass in training mode, such as DPO's reference model
            tokens = router_logits.shape[0]
            real = self.forward_tokens.real(tokens)  # (tokens,) bool, or None: all real
            with torch.no_grad():
                (self.train if training else self.eval).add(index, router_logits, topk_weights, topk_indices,
                                                            self.entropy, real, self.gate_threshold)
            # the loss terms keep their inputs only and are computed after the forward (sparsity_losses,
            # seq_aux_losses): computed here, inside a gradient-checkpointed layer, they would save tensors that the
            # layer's recompute (which returns above) does not, and torch's checkpoint refuses the backward
            if training and self.sparsity_weight > 0:
                self.sparsity_terms.append((topk_weights, topk_indices, self.sparsity_target, real))
            if training and self.seq_aux_alpha > 0:
                batch = args[0].shape[0] if args[0].dim() == 3 else 1  # the MoE block's (batch, seq, hidden)
                ids = self.forward_tokens.sequence_ids(tokens, batch, router_logits.device)  # (tokens,)
                self.seq_aux_terms.append((router_logits, topk_indices, ids, module.top_k))
        return hook

    def sparsity_losses(self) -> list[torch.Tensor]:
        """The gate-entropy penalty of each MoE layer of the forwards since the last call (with grad)."""
        terms = list(self.sparsity_terms)
        self.sparsity_terms.clear()  # in place: the loss wrapper holds this list
        return [sparsity_penalty(w, i, self.n_experts, target, real) for w, i, target, real in terms]

    def seq_aux_losses(self) -> list[torch.Tensor]:
        """V3's sequence-wise balance loss of each MoE layer of the forwards since the last call (with grad)."""
        terms = list(self.seq_aux_terms)
        self.seq_aux_terms.clear()  # in place: the loss wrapper holds this list
        return [sequence_balance_loss(logits, indices, ids, k) for logits, indices, ids, k in terms]

    def take(self, which: str = "train") -> Bucket:
        """The bucket's figures so far; the recorder starts a fresh one."""
        bucket = getattr(self, which)
        setattr(self, which, self._new_bucket())
        return bucket

    def remove(self):
        for handle in self.handles + self.router_handles:
            handle.remove()


def affinity_entropy(router_logits: torch.Tensor) -> torch.Tensor:
    """(tokens,) entropy (nats) of each token's normalised sigmoid affinities s_i / sum_j s_j."""
    scores = router_logits.float().sigmoid()  # (tokens, E)
    probs = scores / scores.sum(-1, keepdim=True)
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def sequence_balance_loss(router_logits: torch.Tensor, topk_indices: torch.Tensor, sequence_ids: torch.Tensor,
                          top_k: int) -> torch.Tensor:
    """DeepSeek-V3's complementary sequence-wise balance loss (tech report eq. 17-20), before alpha.

    Per sequence of T real tokens: f_i = E / (K T) * #tokens choosing expert i, P_i = (1/T) sum_t s'_{i,t}
    with s' the normalised sigmoid affinities; loss = sum_i f_i P_i, averaged over the sequences.
    `sequence_ids` (tokens,) names each token's sequence (any ids below `tokens`); padding carries the id
    `tokens` and lands in a spare slot that is dropped.
    """
    tokens, n_experts = router_logits.shape
    scores = router_logits.float().sigmoid()
    affinity = scores / scores.sum(-1, keepdim=True)  # (tokens, E): s'_{i,t}
    chosen = torch.zeros(tokens, n_experts, device=router_logits.device)
    chosen.scatter_(1, topk_indices, 1.0)
    slots = tokens + 1
    counts = chosen.new_zeros(slots, n_experts).index_add_(0, sequence_ids, chosen)[:-1]  # no grad
    affinity_sums = affinity.new_zeros(slots, n_experts).index_add_(0, sequence_ids, affinity)[:-1]
    lengths = chosen.new_zeros(slots).index_add_(0, sequence_ids, chosen.new_ones(tokens))[:-1, None]  # T
    f = counts * (n_experts / top_k) / lengths.clamp_min(1)
    p = affinity_sums / lengths.clamp_min(1)
    present = (lengths[:, 0] > 0).float()  # slots that hold a sequence
    return ((f * p).sum(-1) * present).sum() / present.sum().clamp_min(1)


def load_stats(loads: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-layer balance figures from token counts (layers, E); see README 'MoE metrics'."""
    loads = loads.double()
    mean = loads.mean(-1).clamp_min(1e-12)
    return {
        "max_over_mean": loads.max(-1).values / mean,
        "cv": loads.std(-1, unbiased=False) / mean,
        "starved_share": (loads < 0.1 * mean[:, None]).double().mean(-1),
    }


def js_divergence(p_counts: torch.Tensor, q_counts: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence (nats, 0..ln 2) between two load distributions, per layer."""
    p = p_counts.double() / p_counts.sum(-1, keepdim=True).clamp_min(1e-12)
    q = q_counts.double() / q_counts.sum(-1, keepdim=True).clamp_min(1e-12)
    m = (p + q) / 2

    def kl(a, b):
        return (a * (a.clamp_min(1e-12) / b.clamp_min(1e-12)).log()).sum(-1)

    return (kl(p, m) + kl(q, m)) / 2


MAX_JS = math.log(2)
