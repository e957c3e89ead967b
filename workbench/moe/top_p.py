"""Top-p routing for DeepSeek-V3 MoE blocks (Huang et al. 2024, "Harder Tasks Need More Experts: Dynamic Routing").

    from workbench.moe.top_p import apply_routing, routing_spec
    spec = routing_spec(recipe.moe)        # None for top_k; {"mode": "top_p", "top_p": 0.5, ...} otherwise
    apply_routing(model, spec)             # every DeepseekV3MoE's router now picks a variable number of experts

Each token takes the fewest experts whose normalised scores reach `top_p`, at least `min_experts` and at most
`max_experts`. The scores are DeepSeek-V3's choice scores (sigmoid affinity + `e_score_correction_bias`, so
aux-free balancing still steers), restricted to the token's `topk_group` best groups as V3 restricts top-k,
clipped at 0 and normalised over those allowed experts: with a zero bias that is Huang et al.'s rule on V3's
affinities. The gate weights are V3's: the raw sigmoid affinities of the chosen experts, normalised
(`norm_topk_prob`) and scaled by `routed_scaling_factor`.

The router returns `max_experts` slots per token; the slots a token does not use hold the expert index
`n_experts` (a sentinel) with weight 0. transformers' eager experts skip that index; its grouped_mm and
batched_mm kernels skip it (no compute, output masked) when the experts module's `_is_expert_parallel` flag is
set, which is what that flag switches on, so it is set here. Everything that reads router outputs in the
workbench (telemetry, the sparsity penalty, the export check) leaves sentinel slots out.

Applied in one place for every way a model is used: `workbench.train.build` for a run's training (the recipe's
`moe.routing`), `workbench.model.load.load_resolved` for a run's model loaded for eval, generate, chat, export
or as a base (`routing` in the run's `workbench_model.json`). A plain `from_pretrained` outside the workbench
routes top-k: an export says so in one line. Nothing falls back: a model whose MoE blocks are not transformers'
DeepseekV3MoE around a DeepseekV3TopkRouter is a one-line error.
"""

import types

import torch

from workbench.errors import WorkbenchError

SPEC_KEYS = ("top_p", "min_experts", "max_experts")


def routing_spec(moe_cfg) -> dict | None:
    """The routing a recipe's `moe:` section asks for: None for V3's own top-k, else a JSON-able dict."""
    if moe_cfg.routing == "top_k":
        return None
    return {"mode": "top_p", **{key: getattr(moe_cfg, key) for key in SPEC_KEYS}}


def describe(spec: dict | None) -> str:
    if not spec:
        return "top-k"
    if spec["max_experts"] is None:
        return (f"top-p {spec['top_p']:g} (at least {spec['min_experts']} expert(s) per token, at most what the group "
                "limit allows)")
    return f"top-p {spec['top_p']:g} ({spec['min_experts']} to {spec['max_experts']} experts per token)"


def top_p_select(scores: torch.Tensor, choice: torch.Tensor, allowed: torch.Tensor, top_p: float, min_experts: int,
                 max_experts: int, n_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices (tokens, max_experts) long with `n_experts` in unused slots, raw affinities there (0 in unused)).

    scores: (tokens, E) sigmoid affinities; choice: (tokens, E) scores + bias; allowed: (tokens, E) bool."""
    mass = torch.where(allowed, choice.clamp_min(0), 0.0)  # (tokens, E)
    mass = mass / mass.sum(-1, keepdim=True).clamp_min(1e-20)
    ranked = torch.where(allowed, choice, float("-inf"))  # the order a token takes experts in
    order = ranked.argsort(dim=-1, descending=True, stable=True)[:, :max_experts]  # (tokens, W)
    cumulative = mass.gather(1, order).cumsum(-1)  # (tokens, W)
    # the fewest experts reaching p: those before the first cumulative share >= p, plus that one (1e-6: rounding)
    count = ((cumulative < top_p - 1e-6).sum(-1) + 1).clamp(min=min_experts, max=max_experts)  # (tokens,)
    used = torch.arange(order.shape[1], device=order.device)[None, :] < count[:, None]  # (tokens, W)
    indices = torch.where(used, order, n_experts)
    weights = torch.where(used, scores.gather(1, order), 0.0)
    return indices, weights


def _top_p_forward(self, hidden_states):
    """DeepseekV3TopkRouter.forward with top-p selection; same outputs, `max_experts` wide."""
    spec = self.workbench_routing
    hidden_states = hidden_states.view(-1, self.hidden_dim)
    router_logits = torch.nn.functional.linear(hidden_states.type(torch.float32), self.weight.type(torch.float32))
    scores = router_logits.sigmoid()  # (tokens, E)
    choice = scores + self.e_score_correction_bias
    per_group = self.num_experts // self.num_group
    allowed = torch.ones_like(scores, dtype=torch.bool)
    if self.topk_group < self.num_group:  # V3's group limit: the topk_group groups with the best two choice scores
        group_scores = choice.view(-1, self.num_group, per_group).topk(min(2, per_group), dim=-1)[0].sum(dim=-1)
        kept = group_scores.topk(self.topk_group, dim=-1, sorted=False)[1]
        groups = torch.zeros_like(group_scores, dtype=torch.bool).scatter_(1, kept, True)
        allowed = groups.repeat_interleave(per_group, dim=1)
    width = reachable_experts(self) if spec["max_experts"] is None else spec["max_experts"]
    indices, weights = top_p_select(scores, choice, allowed, spec["top_p"], spec["min_experts"], width,
                                    self.num_experts)
    if self.norm_topk_prob:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return router_logits, weights * self.routed_scaling_factor, indices


def reachable_experts(router) -> int:
    """How many experts a token can reach through V3's group limit: topk_group groups of E / n_group."""
    return router.topk_group * (router.num_experts // router.num_group)


def moe_blocks(model) -> list[tuple[str, torch.nn.Module, torch.nn.Module]]:
    """(name, MoE block, its DeepseekV3TopkRouter) for every module holding a `gate` and `experts`; a router
    wrapped by PEFT is found under its `base_layer`."""
    blocks = []
    for name, module in model.named_modules():
        gate, experts = module._modules.get("gate"), module._modules.get("experts")
        if gate is None or experts is None:
            continue
        while type(gate).__name__ != "DeepseekV3TopkRouter" and "base_layer" in gate._modules:
            gate = gate._modules["base_layer"]
        blocks.append((name, module, gate))
    return blocks


def check_patchable(model, key: str = "moe.routing") -> list:
    """The MoE blocks top-p routing can patch; a one-line error naming the first one it cannot."""
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
        DeepseekV3MoE,
        DeepseekV3TopkRouter,
    )

    blocks = moe_blocks(model)
    model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    if not blocks:
        raise WorkbenchError(f"{key}: top_p patches DeepSeek-V3 MoE blocks and this {model_type} model has none; "
                             "set moe.routing: top_k")
    for name, block, router in blocks:
        if not isinstance(block, DeepseekV3MoE) or not isinstance(router, DeepseekV3TopkRouter) \
                or not hasattr(block.experts, "num_experts"):
            raise WorkbenchError(f"{key}: top_p patches transformers' DeepseekV3MoE around a DeepseekV3TopkRouter; "
                                 f"{name} is {type(block).__name__} with {type(router).__name__} (remote code, AutoEP "
                                 "or another architecture), so its routing cannot be changed: set moe.routing: top_k")
    return blocks


def apply_routing(model, spec: dict | None) -> int:
    """Route every MoE block of `model` as `spec` says (None: leave V3's top-k); returns the blocks patched.
    A spec that cannot be applied to every block raises a one-line WorkbenchError: never a silent top-k."""
    if not spec:
        return 0
    if spec.get("mode") != "top_p":
        raise WorkbenchError(f"moe.routing: unknown routing {spec.get('mode')!r} (known: top_k, top_p)")
    blocks = check_patchable(model)
    for _, block, router in blocks:
        most = reachable_experts(router)
        if spec["max_experts"] is not None and spec["max_experts"] > most or spec["min_experts"] > most:
            raise WorkbenchError(f"moe.max_experts: a token reaches at most {most} experts in this model "
                                 f"(topk_group {router.topk_group} of {router.num_group} groups of "
                                 f"{router.num_experts // router.num_group}); got min {spec['min_experts']}, "
                                 f"max {spec['max_experts']}")
        router.workbench_routing = dict(spec)
        router.forward = types.MethodType(_top_p_forward, router)
        block.experts._is_expert_parallel = True  # transformers' kernels then skip the sentinel slots (see above)
    return len(blocks)


def routing_of(model) -> dict | None:
    """The routing spec applied to `model`'s MoE blocks (None: V3's top-k)."""
    for _, _, router in moe_blocks(model):
        return getattr(router, "workbench_routing", None)
    return None
