"""Expert patches: only the experts an ESFT run trained, applied onto the base model later.

    workbench apply-patch runs/legal-esft/<run>/final --out merged/   # base model + patch -> full model

A patch is `expert_patch.safetensors` (tensors `model.layers.L.mlp.experts.<param>.<expert>`) plus
`expert_patch.json` (the base model it applies to and the selected experts per layer).
"""

import json
from pathlib import Path

PATCH_WEIGHTS = "expert_patch.safetensors"
PATCH_INFO = "expert_patch.json"


def save_expert_patch(model, selection: dict[int, list[int]], target: Path, base_model: dict) -> Path:
    from safetensors.torch import save_file

    from workbench.moe.control import expert_patch

    if hasattr(model, "merge_and_unload"):  # ESFT with LoRA: the patch holds the merged expert weights
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    save_file(expert_patch(model, selection), str(target / PATCH_WEIGHTS))
    info = {"base_model": base_model, "selection": {str(k): v for k, v in selection.items()}}
    (target / PATCH_INFO).write_text(json.dumps(info, indent=2))
    return target / PATCH_WEIGHTS


def apply_patch(patch_dir: Path):
    """(model, tokenizer): the patch's base model with the trained experts copied in."""
    from safetensors.torch import load_file

    from workbench.config import ModelConfig
    from workbench.model import load_model
    from workbench.moe.control import apply_expert_patch

    info = json.loads((patch_dir / PATCH_INFO).read_text())
    model, tokenizer = load_model(ModelConfig(**info["base_model"]))
    apply_expert_patch(model, load_file(str(patch_dir / PATCH_WEIGHTS)))
    return model, tokenizer


ROUTER_BIAS = "router_bias.safetensors"


def save_router_bias(model, target: Path) -> Path | None:
    """The routers' e_score_correction_bias (fp32). A LoRA adapter does not hold buffers, so an aux-free
    balanced LoRA run would otherwise lose its balancing when the adapter is reloaded."""
    from safetensors.torch import save_file

    from workbench.moe.routing import find_routers

    routers = find_routers(model)
    if not routers:
        return None
    tensors = {f"model.layers.{layer}.mlp.gate.e_score_correction_bias": r.e_score_correction_bias.detach().float().cpu()
               for layer, r in routers}
    save_file(tensors, str(target / ROUTER_BIAS))
    return target / ROUTER_BIAS


def load_router_bias(model, source: Path) -> bool:
    from safetensors.torch import load_file

    from workbench.moe.routing import find_routers

    if not (source / ROUTER_BIAS).is_file():
        return False
    tensors = load_file(str(source / ROUTER_BIAS))
    for layer, router in find_routers(model):
        router.e_score_correction_bias.data = tensors[f"model.layers.{layer}.mlp.gate.e_score_correction_bias"].to(
            router.e_score_correction_bias.device)
    return True
