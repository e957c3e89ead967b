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
    from workbench.files import read_text
    from workbench.model import load_model
    from workbench.moe.control import apply_expert_patch

    info = json.loads(read_text(patch_dir / PATCH_INFO))
    model, tokenizer = load_model(ModelConfig(**info["base_model"]))
    apply_expert_patch(model, load_file(str(patch_dir / PATCH_WEIGHTS)))
    return model, tokenizer
