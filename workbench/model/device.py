"""Device-aware defaults: which dtype, expert kernel and precision flags a run gets on this machine.

    from workbench.model.device import uses_gpu, torch_dtype, precision_flags
    torch_dtype("auto")            # bf16 on a GPU that has it, else fp32
    precision_flags("auto")        # {"bf16": ..., "fp16": ...} for a TRL config (fp32 on CPU)
"""

import torch


def uses_gpu() -> bool:
    return torch.cuda.is_available()


def torch_dtype(dtype: str):
    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


def experts_implementation(choice: str) -> str | None:
    """`auto`: transformers' default on GPU; `eager` on CPU, where grouped_mm decodes ~5x slower."""
    if choice != "auto":
        return choice
    return None if torch.cuda.is_available() else "eager"


def precision_flags(precision: str) -> dict:
    if precision == "auto":
        precision = "bf16" if uses_gpu() and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}
