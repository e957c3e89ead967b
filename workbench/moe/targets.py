"""LoRA targets that mean what they say on DeepSeek-V3, and a count of what really got adapters.

    from workbench.moe.targets import resolve_targets, classify_adapters
    spec = resolve_targets(model, ["attention", "routed_experts"])   # -> regex + target_parameters
    counts = classify_adapters(peft_model)                           # {"attention": 20, "routed_experts": 6}

Presets: attention (the MLA projections), dense_mlp (MLP of the first dense layers), shared_experts,
routed_experts (per-expert LoRA on the 3D expert parameters), router (the gate weight), all.
Leaf names (q_a_proj, o_proj, ...) work as well. Names from guides for other models are mapped with a
notice: q_proj -> q_b_proj (or q_proj where q_lora_rank is unset), k_proj/v_proj -> kv_b_proj,
gate_proj/up_proj/down_proj -> dense_mlp + shared_experts. Anything else fails naming the target.
"""

import re
from dataclasses import dataclass, field

from workbench.errors import WorkbenchError

ATTENTION = ("q_proj", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
PRESETS = ("attention", "dense_mlp", "shared_experts", "routed_experts", "router")
ALIASES = {"k_proj": "kv_b_proj", "v_proj": "kv_b_proj", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp",
           "all-linear": "all"}


def known_targets() -> tuple[str, ...]:
    """Every name `peft.target_modules` accepts: presets, `all`, MLA projection names and mapped aliases."""
    return PRESETS + ("all",) + ATTENTION + tuple(ALIASES)


@dataclass
class TargetSpec:
    presets: set[str] = field(default_factory=set)  # whole groups
    leaves: set[str] = field(default_factory=set)  # single attention projections
    notices: list[str] = field(default_factory=list)

    def module_regex(self, model) -> str | None:
        parts = []
        leaves = set(self.leaves)
        if "attention" in self.presets:
            leaves |= _present(model, ATTENTION)
        if leaves:
            parts.append(rf".*\.self_attn\.({'|'.join(sorted(leaves))})")
        if "dense_mlp" in self.presets:
            parts.append(rf".*\.layers\.\d+\.mlp\.({'|'.join(MLP)})")
        if "shared_experts" in self.presets:
            parts.append(rf".*\.mlp\.shared_experts\.({'|'.join(MLP)})")
        return "|".join(parts) or None

    def target_parameters(self) -> list[str]:
        params = []
        if "routed_experts" in self.presets:
            params += ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
        if "router" in self.presets:
            params += ["mlp.gate.weight"]
        return params


def _present(model, names) -> set[str]:
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return {n for n in names if n in leaves}


def resolve_targets(model, requested: list[str]) -> TargetSpec:
    spec = TargetSpec()
    has_q_proj = bool(_present(model, ("q_proj",)))
    for target in requested:
        if target == "all":
            spec.presets |= set(PRESETS)
        elif target in PRESETS:
            spec.presets.add(target)
        elif target in ATTENTION and _present(model, (target,)):
            spec.leaves.add(target)
        elif target == "q_proj":
            spec.leaves.add("q_b_proj")
            spec.notices.append("q_proj -> q_b_proj (DeepSeek-V3 projects queries through a low-rank q_a_proj/q_b_proj pair)")
        elif ALIASES.get(target) == "mlp":
            spec.presets |= {"dense_mlp", "shared_experts"}
            spec.notices.append(f"{target} -> dense_mlp + shared_experts (add routed_experts for the routed experts)")
        elif target in ALIASES and ALIASES[target] != "all":
            spec.leaves.add(ALIASES[target])
            spec.notices.append(f"{target} -> {ALIASES[target]} (keys and values come from one low-rank kv projection)")
        elif target in ALIASES:
            spec.presets |= set(PRESETS) - {"router"}
            spec.notices.append("all-linear -> attention + dense_mlp + shared_experts + routed_experts")
        else:
            known = ", ".join(PRESETS + ("all",) + ATTENTION[1:] if not has_q_proj else PRESETS + ("all",) + ATTENTION)
            raise WorkbenchError(f"peft.target_modules: '{target}' is not a DeepSeek-V3 target (known: {known})")
    return spec


def expected_counts(model, spec: TargetSpec, n_mtp: int = 0) -> dict[str, int]:
    """How many adapters each requested group should get, from the model's own structure (`n_mtp` attached MTP
    layers count as MoE layers with attention)."""
    config = model.config
    n_layers, n_dense = config.num_hidden_layers + n_mtp, config.first_k_dense_replace
    n_moe = n_layers - n_dense
    counts = {}
    if "attention" in spec.presets or spec.leaves:
        per_layer = len(_present(model, ATTENTION)) if "attention" in spec.presets else len(spec.leaves)
        counts["attention"] = n_layers * per_layer
    counts.update({"dense_mlp": n_dense * 3, "shared_experts": n_moe * 3, "routed_experts": n_moe * 2, "router": n_moe})
    return {k: v for k, v in counts.items() if k == "attention" or k in spec.presets}


def classify_adapters(model) -> dict[str, int]:
    """Count LoRA adapters by what they adapt, from the wrapped model itself (not from the config)."""
    counts: dict[str, int] = {}
    for name, module in model.named_modules():
        if not (hasattr(module, "lora_A") and len(module.lora_A) > 0):
            continue
        parameter = getattr(module, "parameter_name", None)
        if parameter is not None:  # PEFT ParamWrapper around a raw parameter
            group = "router" if name.endswith(".gate") else "routed_experts"
        elif ".shared_experts." in name:
            group = "shared_experts"
        elif ".self_attn." in name:
            group = "attention"
        elif re.search(r"\.mlp\.(gate_proj|up_proj|down_proj)$", name):
            group = "dense_mlp"
        else:
            group = "other"
        counts[group] = counts.get(group, 0) + 1
    return counts
