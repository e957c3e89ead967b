"""Apply an ESFT expert patch (the experts a run trained) onto its base model.

    workbench apply-patch runs/legal-esft/<run>/final --out merged/   # base model + patch -> full model

The patch itself is written at the end of an ESFT run by `workbench.moe.patch.save_expert_patch`.
"""

import json
from pathlib import Path


def apply_patch(patch_dir: Path):
    """(model, tokenizer): the patch's base model with the trained experts copied in."""
    from safetensors.torch import load_file

    from workbench.files import read_text
    from workbench.model.load import load_model
    from workbench.moe.control import apply_expert_patch
    from workbench.moe.patch import PATCH_INFO, PATCH_WEIGHTS
    from workbench.recipe.schema import ModelConfig

    info = json.loads(read_text(patch_dir / PATCH_INFO))
    model, tokenizer = load_model(ModelConfig(**info["base_model"]))
    apply_expert_patch(model, load_file(str(patch_dir / PATCH_WEIGHTS)))
    return model, tokenizer
