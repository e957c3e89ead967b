"""Expert patches: only the experts an ESFT run trained, saved beside its final weights.

    save_expert_patch(model, selection, final_dir, base_model)   # at the end of an ESFT run

A patch is `expert_patch.safetensors` (tensors `model.layers.L.mlp.experts.<param>.<expert>`) plus
`expert_patch.json` (the base model it applies to and the selected experts per layer);
`workbench apply-patch` (workbench.export.patch) applies it onto the base model.
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
