"""LoRA through PEFT, with targets resolved for DeepSeek-V3 and verified after wrapping.

    from workbench.model.lora import wrap
    model, report = wrap(model, recipe.peft)     # report: adapters per group, e.g. {"attention": 20}

PEFT 0.21 rewrites gate_proj/up_proj/down_proj (and all-linear) on deepseek_v3 into the routed experts'
3D parameters, silently leaving the dense MLP and the shared experts without LoRA (a conversion meant
for adapters trained under transformers v4). The workbench names its targets in v5 terms, so it turns
that conversion off while wrapping and loading, then counts what each group really got and fails when
a requested group got nothing.
"""

import contextlib

from workbench.errors import WorkbenchError
from workbench.moe.targets import classify_adapters, expected_counts, resolve_targets


@contextlib.contextmanager
def v5_target_names(model):
    """Disable PEFT's v4->v5 MoE target rewrite for this model type while the block runs."""
    from peft.utils import transformers_weight_conversion as conversion

    model_type = getattr(getattr(model, "config", None), "model_type", None)
    saved = conversion._MODEL_TO_CONVERSION_PATTERN.pop(model_type, None)
    try:
        yield
    finally:
        if saved is not None:
            conversion._MODEL_TO_CONVERSION_PATTERN[model_type] = saved


def lora_config(cfg, model, quiet: bool = False):
    from peft import LoraConfig

    spec = resolve_targets(model, list(cfg.target_modules))
    for notice in spec.notices if not quiet else ():
        print(f"notice: peft.target_modules: {notice}")
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=spec.module_regex(model) or [],
        target_parameters=spec.target_parameters() or None,
        modules_to_save=list(cfg.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )
    return config, spec


def wrap(model, cfg, quiet: bool = False):
    """(PeftModel, adapters per group); raises when a requested group got no adapter."""
    if cfg.type == "none":
        return model, {}
    from peft import get_peft_model

    config, spec = lora_config(cfg, model, quiet)
    with v5_target_names(model):
        wrapped = get_peft_model(model, config)
    report = classify_adapters(wrapped)
    from workbench.model.mtp import mtp_layers

    dims = hasattr(model.config, "first_k_dense_replace")
    expected = expected_counts(model, spec, n_mtp=len(mtp_layers(model))) if dims else {}
    missing = [group for group, n in expected.items() if n > 0 and report.get(group, 0) == 0]
    if missing or not report:
        raise WorkbenchError(f"peft.target_modules: no adapter was attached to {', '.join(missing) or 'anything'} "
                             f"(adapted: {report or 'nothing'})")
    return wrapped, report


def load_adapter(model, path: str):
    """Load a saved adapter onto its base model under the same target naming it was trained with."""
    from peft import PeftModel

    with v5_target_names(model):
        return PeftModel.from_pretrained(model, path)
