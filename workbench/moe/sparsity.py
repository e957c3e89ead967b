"""How concentrated each token's gate mass is, and the penalty that concentrates it (`moe.sparsity`).

    from workbench.moe.sparsity import gate_shares, gate_entropy, sparsity_penalty
    shares = gate_shares(topk_weights, topk_indices, n_experts)   # (tokens, K): each token's gate weights, summing to 1
    penalty = sparsity_penalty(topk_weights, topk_indices, n_experts, target=0.0)   # differentiable, scalar

A DeepSeek-V3 router hands each token K experts with gate weights (normalised, then scaled by
`routed_scaling_factor`). Normalised to sum 1 they are the token's *gate shares*. Their entropy is 0 when one
expert carries all of the token's routed output and ln K when the K share it evenly. The penalty is that entropy
above `target`, averaged over real tokens: its gradient reaches the router weight (and whatever produced the hidden
state) through the sigmoid affinities, and moves the token's gate mass onto fewer of its experts. Nothing new is
added to the model, so what is trained is exactly what is saved, exported and served.

Read per layer in the telemetry (real tokens only, as `workbench.moe.routing` counts them):
- `topk_entropy`: mean entropy (nats) of the gate shares;
- `effective_experts`: mean number of the token's experts whose gate share is above `moe.gate_threshold`;
- `top1_share`: mean gate share of the token's strongest expert;
- `experts_per_token`: mean number of experts a token was sent to (K for top-k; varies with top-p).
Slots holding the sentinel index `n_experts` (top-p routing's unused slots, `workbench.moe.top_p`) count nowhere.
"""

import torch


def gate_shares(topk_weights: torch.Tensor, topk_indices: torch.Tensor, n_experts: int) -> torch.Tensor:
    """(tokens, K) each token's gate weights over its real experts, summing to 1 (sentinel slots 0)."""
    weights = torch.where(topk_indices < n_experts, topk_weights.float(), 0.0)  # (tokens, K)
    return weights / weights.sum(-1, keepdim=True).clamp_min(1e-20)


def gate_entropy(shares: torch.Tensor) -> torch.Tensor:
    """(tokens,) entropy in nats of each token's gate shares."""
    return -(shares * shares.clamp_min(1e-12).log()).sum(-1)


def gate_figures(topk_weights, topk_indices, n_experts: int, threshold: float) -> torch.Tensor:
    """(4, tokens): per token its gate-share entropy, effective experts (share > threshold), top-1 share and the
    number of experts it was sent to."""
    shares = gate_shares(topk_weights, topk_indices, n_experts)
    return torch.stack([gate_entropy(shares), (shares > threshold).float().sum(-1), shares.max(-1).values,
                        (topk_indices < n_experts).float().sum(-1)])


GATE_FIGURES = ("topk_entropy", "effective_experts", "top1_share", "experts_per_token")  # the rows of gate_figures


def sparsity_penalty(topk_weights, topk_indices, n_experts: int, target: float = 0.0,
                     real: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over real tokens of max(0, gate-share entropy - target): differentiable in `topk_weights`."""
    excess = (gate_entropy(gate_shares(topk_weights, topk_indices, n_experts)) - target).clamp_min(0)  # (tokens,)
    if real is None:
        return excess.mean()
    return (excess * real).sum() / real.sum().clamp_min(1)
