"""Watch DeepSeek-V3 routers: which experts each token goes to, cheaply enough to leave on.

    from workbench.moe.routing import RoutingRecorder, load_stats
    recorder = RoutingRecorder(model)          # forward hooks on every DeepseekV3TopkRouter
    model(**batch)
    loads = recorder.take("train").loads      # (moe_layers, n_experts) token counts since the last take

Training forwards (`module.training` with grad enabled) go to the `train` bucket, which drives the
balancing bias; eval-mode forwards go to the `eval` bucket (eval-split routing, ESFT profiling);
no-grad passes in training mode (DPO's reference model) and checkpoint recomputes count nowhere.
"""

import math

import torch


def find_routers(model) -> list[tuple[int, torch.nn.Module]]:
    """(layer index, router) for each MoE layer, found by structure so any wrapper (PEFT, DeepSpeed) works."""
    routers = []
    for name, module in model.named_modules():
        if hasattr(module, "e_score_correction_bias") and hasattr(module, "top_k") and hasattr(module, "weight"):
            layer = next(int(p) for p in reversed(name.split(".")) if p.isdigit())
            routers.append((layer, module))
    return sorted(routers, key=lambda item: item[0])


class Bucket:
    """Token counts, summed gate weights and router entropy per MoE layer since the last `take()`."""

    def __init__(self, n_layers: int, n_experts: int, device):
        self.loads = torch.zeros(n_layers, n_experts, dtype=torch.float64, device=device)
        self.gate_sums = torch.zeros(n_layers, n_experts, dtype=torch.float64, device=device)
        self.entropy_sum = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self.tokens = torch.zeros(n_layers, dtype=torch.float64, device=device)
        self.calls = torch.zeros(n_layers, dtype=torch.float64, device=device)

    def add(self, index, router_logits, topk_weights, topk_indices, entropy: bool):
        flat = topk_indices.reshape(-1)
        self.loads[index].index_add_(0, flat, torch.ones_like(flat, dtype=torch.float64))
        self.gate_sums[index].index_add_(0, flat, topk_weights.reshape(-1).double())
        self.tokens[index] += topk_indices.shape[0]
        self.calls[index] += 1
        if entropy:
            self.entropy_sum[index] += _mean_affinity_entropy(router_logits)

    @property
    def entropy(self) -> torch.Tensor:
        return self.entropy_sum / self.calls.clamp_min(1)


class RoutingRecorder:
    def __init__(self, model, seq_aux_alpha: float = 0.0, entropy: bool = True):
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
        self.handles = [router.register_forward_hook(self._hook(i)) for i, (_, router) in enumerate(self.routers)]

    def _new_bucket(self) -> Bucket:
        return Bucket(len(self.routers), self.n_experts, self.routers[0][1].e_score_correction_bias.device)

    def _hook(self, index: int):
        def hook(module, args, output):
            if torch._C._current_graph_task_id() != -1:
                return  # a gradient-checkpointing recompute inside backward: already counted
            router_logits, topk_weights, topk_indices = output  # (tokens, E), (tokens, K), (tokens, K)
            training = module.training and torch.is_grad_enabled()
            if module.training and not training:
                return  # a no-grad pass in training mode, such as DPO's reference model
            with torch.no_grad():
                (self.train if training else self.eval).add(index, router_logits, topk_weights, topk_indices,
                                                            self.entropy)
            if training and self.seq_aux_alpha > 0:
                batch = args[0].shape[0] if args[0].dim() == 3 else 1
                self.seq_aux_terms.append(sequence_balance_loss(router_logits, topk_indices, batch, module.top_k))
        return hook

    def take(self, which: str = "train") -> Bucket:
        """The bucket's figures so far; the recorder starts a fresh one."""
        bucket = getattr(self, which)
        setattr(self, which, self._new_bucket())
        return bucket

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _mean_affinity_entropy(router_logits: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of the entropy (nats) of the normalised sigmoid affinities s_i / sum_j s_j."""
    scores = router_logits.float().sigmoid()  # (tokens, E)
    probs = scores / scores.sum(-1, keepdim=True)
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean().double()


def sequence_balance_loss(router_logits: torch.Tensor, topk_indices: torch.Tensor, batch: int, top_k: int):
    """DeepSeek-V3's complementary sequence-wise balance loss (tech report eq. 17-20), before alpha.

    Per sequence: f_i = E / (K T) * #tokens choosing expert i, P_i = mean_t s'_{i,t} with s' the
    normalised sigmoid affinities; loss = sum_i f_i P_i, averaged over the sequences of the batch.
    """
    tokens, n_experts = router_logits.shape
    seq_len = tokens // batch
    scores = router_logits.float().sigmoid().view(batch, seq_len, n_experts)
    affinity = scores / scores.sum(-1, keepdim=True)  # s'_{i,t}
    chosen = torch.zeros(tokens, n_experts, device=router_logits.device)
    chosen.scatter_(1, topk_indices, 1.0)
    f = chosen.view(batch, seq_len, n_experts).sum(1) * (n_experts / (top_k * seq_len))  # (batch, E), no grad
    p = affinity.mean(1)  # (batch, E)
    return (f * p).sum(-1).mean()


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
