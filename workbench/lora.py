"""LoRA through PEFT, and a check of which modules really got adapters.

    from workbench.lora import lora_config, adapter_report, check_adapters
    peft_config = lora_config(recipe.peft)          # None when peft.type is none
    check_adapters(trainer.model, recipe.peft)      # fails when a requested target got no adapter

PEFT can silently skip a requested target on DeepSeek-V3 (it rewrites gate_proj/up_proj/down_proj
into expert parameters), so the workbench counts adapters after wrapping instead of trusting the config.
"""

from collections import Counter

from workbench.errors import WorkbenchError


def lora_config(cfg):
    if cfg.type == "none":
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        modules_to_save=list(cfg.modules_to_save) or None,
        task_type="CAUSAL_LM",
    )


def adapter_report(model) -> Counter:
    """Adapted modules per leaf name, e.g. {'q_a_proj': 3, 'o_proj': 4}."""
    counts = Counter()
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and len(getattr(module, "lora_A", {})) > 0:
            counts[name.rsplit(".", 1)[-1]] += 1
    return counts


def check_adapters(model, cfg) -> Counter:
    if cfg.type == "none":
        return Counter()
    report = adapter_report(model)
    missing = [target for target in cfg.target_modules if report.get(target, 0) == 0]
    if missing:
        raise WorkbenchError(
            f"peft.target_modules: no adapter was attached to {', '.join(missing)} "
            f"(adapted: {dict(report) or 'nothing'})"
        )
    return report
