"""The routers' correction bias (`e_score_correction_bias`), saved beside a run's final weights.

    from workbench.moe.bias import save_router_bias, load_router_bias
    save_router_bias(model, final_dir)     # router_bias.safetensors, fp32
    load_router_bias(model, final_dir)     # True when the file was there

A LoRA adapter does not hold buffers, so an aux-free balanced LoRA run would otherwise lose its balancing
when the adapter is reloaded onto the base model.
"""

from pathlib import Path

ROUTER_BIAS = "router_bias.safetensors"


def save_router_bias(model, target: Path) -> Path | None:
    """The routers' e_score_correction_bias (fp32), keyed by the layer it belongs to."""
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
        saved = tensors.get(f"model.layers.{layer}.mlp.gate.e_score_correction_bias")
        if saved is not None:  # an MTP layer carried from an earlier checkpoint keeps the bias it loaded with
            router.e_score_correction_bias.data = saved.to(router.e_score_correction_bias.device)
    return True
