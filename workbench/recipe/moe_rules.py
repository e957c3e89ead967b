"""Cross-field rules of the `moe:` keys for top-p routing and the sparsity penalty (workbench.moe.top_p,
workbench.moe.sparsity), one of schema.py's CROSS_FIELD_RULES; kept here so that schema.py stays small.

What needs the model (the MoE blocks can be patched, `max_experts` within the group limit) is checked by the plan
(workbench.train.checks.check_architecture).
"""


def moe_routing_problem(r) -> str | None:
    """One line naming the key, or None: top-p routing and the sparsity penalty against the rest of the recipe."""
    moe, stages = r.moe, r.train.stages
    sparse = moe.sparsity > 0 or any(stage.sparsity for stage in stages)
    if "sparsity_target" in moe.model_fields_set and not sparse:
        return "moe.sparsity_target: only read when moe.sparsity or a stage's sparsity is > 0"
    if sparse and r.train.expert_parallel > 1:
        return "moe.sparsity: DeepSpeed AutoEP's routers (train.expert_parallel) are not wired to the penalty"
    if moe.routing == "top_k":
        given = [key for key in ("top_p", "min_experts", "max_experts") if key in moe.model_fields_set]
        return f"moe.{given[0]}: only read with moe.routing: top_p (moe.routing is top_k)" if given else None
    if moe.max_experts is not None and moe.min_experts > moe.max_experts:
        return f"moe.min_experts: must be <= moe.max_experts, got {moe.min_experts} > {moe.max_experts}"
    if r.train.expert_parallel > 1:
        return (f"moe.routing: top_p patches the MoE blocks that DeepSpeed AutoEP replaces (train.expert_parallel: "
                f"{r.train.expert_parallel}); use top_k or train.expert_parallel: 1")
    if moe.routing_replay != "none":
        return "moe.routing: top_p picks a varying number of experts per token, which routing replay cannot record: set moe.routing: top_k or moe.routing_replay: none"
    if "seq_aux" in (moe.balance, *(stage.balance for stage in stages)):
        return "moe.balance: seq_aux's f_i assumes top_k experts per token; with moe.routing: top_p use aux_free or none"
    if moe.esft != "none":
        return "moe.esft: scores experts by top-k selection shares; with moe.routing: top_p set moe.esft: none"
