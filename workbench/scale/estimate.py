"""Will it fit? Memory per GPU and per host for a recipe, its ZeRO stage and offload, before renting GPUs.

    workbench estimate deepseek-v3-legal --gpus 8 --nodes 4 --gpu-memory 80

The model is built from its config on PyTorch's meta device (no weights, no memory), at full depth,
with the recipe's LoRA applied, so the counts are the real ones: total, active per token (shared +
top-k routed experts), trainable, and the largest single layer ZeRO-3 must gather.

Model states follow DeepSpeed's own estimators (`estimate_zero2/3_model_states_mem_needs`): 16-bit
weights (2 bytes/param), 16-bit gradients, and 16 bytes of fp32 master weights, gradients and Adam
moments per *trainable* parameter; DeepSpeed's formulas assume every parameter trains, ours put the
trainable count where gradients and optimizer state are meant, so for a full fine-tune both agree
exactly (tested) and for LoRA ours is the smaller, realistic figure. Activations are a rough upper
bound: per layer s*b*h*(34 + 5*a*s/h) bytes (Korthikanti et al., 2022) for the layer being computed,
2*s*b*h bytes per layer kept at checkpoints, and the logits (s*b*vocab in fp32, twice).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.model.load import is_fp8

ARCH_DIR = Path(__file__).parent / "architectures"
KNOWN = {
    "deepseek-ai/DeepSeek-V2-Lite": "deepseek-v2-lite-chat.json",
    "deepseek-ai/DeepSeek-V2-Lite-Chat": "deepseek-v2-lite-chat.json",
    "moonshotai/Moonlight-16B-A3B": "moonlight-16b-a3b.json",
    "moonshotai/Moonlight-16B-A3B-Instruct": "moonlight-16b-a3b.json",
    "deepseek-ai/DeepSeek-V3": "deepseek-v3.json",
    "deepseek-ai/DeepSeek-V3-Base": "deepseek-v3.json",
    "deepseek-ai/DeepSeek-V3-0324": "deepseek-v3.json",
}
GIB = 1024**3
BUFFER = 1.5  # DeepSpeed's additional_buffer_factor for host memory


def architecture(model_cfg):
    """The model's config without weights: local dir, preset, a known published model, else the hub."""
    from transformers import AutoConfig

    from workbench.model.presets import PRESETS
    from workbench.model.load import resolve_source

    name = model_cfg.architecture or model_cfg.name
    if name in KNOWN:
        raw = json.loads((ARCH_DIR / KNOWN[name]).read_text())
        config = AutoConfig.for_model(**_without_quantization(raw))
        config.published_quantization = raw.get("quantization_config")  # e.g. DeepSeek-V3's FP8
        return config
    if name in PRESETS or Path(name).expanduser().is_dir():
        return AutoConfig.from_pretrained(resolve_source(name, model_cfg.seed))
    try:
        return AutoConfig.from_pretrained(name, revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code)
    except OSError as exc:
        raise WorkbenchError(f"model.architecture: cannot read the config of '{name}' ({str(exc).splitlines()[0]}); "
                             f"set model.architecture to a local model dir or one of: {', '.join(KNOWN)}") from None


def _without_quantization(raw: dict) -> dict:
    return {k: v for k, v in raw.items() if k != "quantization_config"}


def meta_model(config, layers: int | None = None):
    """The architecture on the meta device (optionally cut to `layers` decoder layers)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(config)
    if getattr(config, "quantization_config", None) is not None:
        del config.quantization_config
    if layers is not None:
        config.num_hidden_layers = layers
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


@dataclass
class Counts:
    total: int
    active: int  # per token: everything but the routed experts a token does not visit
    trainable: int
    largest_layer: int  # the most parameters one module holds directly (ZeRO-3 gathers it whole)
    lora: dict[str, int]
    routed: int = 0  # routed-expert weights (what expert parallelism splits)


def count(model, recipe) -> Counts:
    config = model.config
    routed = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    n_experts = getattr(config, "n_routed_experts", None) or 1
    top_k = getattr(config, "num_experts_per_tok", None) or n_experts
    total = sum(p.numel() for p in model.parameters())
    active = total - routed + routed * top_k // n_experts
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    lora = {}
    if recipe.peft.type == "lora":
        from workbench.model.lora import wrap

        model, lora = wrap(model, recipe.peft)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    else:
        trainable = total
    return Counts(total=total, active=active, trainable=trainable, largest_layer=largest, lora=lora, routed=routed)


@dataclass
class Estimate:
    per_gpu: dict[str, float]  # bytes
    per_host: dict[str, float]
    deepspeed_gpu: float  # DeepSpeed's estimator, all parameters trainable
    deepspeed_host: float


def model_states(n: int, t: int, largest: int, stage: int, offload_opt: bool, offload_param: bool,
                 gpus_per_node: int, nodes: int) -> tuple[dict, dict]:
    """(per GPU, per host) bytes for weights, gradients and optimizer state; DeepSpeed's formulas with the
    trainable count `t` where gradients and optimizer state belong (t == n reproduces them exactly)."""
    gpus = gpus_per_node * nodes
    gpu: dict[str, float] = {}
    host: dict[str, float] = {}
    if stage <= 1:  # no partitioning of weights or gradients (stage 1 also partitions optimizer state)
        gpu["weights (16-bit)"] = 2 * n
        gpu["gradients (16-bit)"] = 2 * t
        gpu["optimizer + fp32 master/grads"] = 16 * t / (gpus if stage == 1 else 1)
        host["loading"] = 4 * n * gpus_per_node * BUFFER
    elif stage == 2:
        gpu["weights (16-bit)"] = 2 * n
        if offload_opt:
            host["optimizer + fp32 master/grads"] = max(4 * gpus * n, 16 * t) * BUFFER
        else:
            gpu["gradients + optimizer state, partition"] = 18 * t / gpus
            host["loading"] = 4 * n * gpus_per_node * BUFFER
    else:
        gpu["largest layer, gathered"] = 4 * largest
        if offload_param:
            host["weights (16-bit)"] = 2 * n / nodes * BUFFER
        else:
            gpu["weights (16-bit), partition"] = 2 * n / gpus
        if offload_opt:
            host["optimizer + fp32 master/grads"] = 16 * t / nodes * BUFFER
        else:
            gpu["optimizer + fp32 master/grads, partition"] = 16 * t / gpus
            if not offload_param:
                host["loading"] = 4 * largest * gpus_per_node * BUFFER
    return gpu, host


def expert_parallel_states(counts: Counts, ep: int, n_experts: int, gpus_per_node: int, nodes: int,
                           load_bytes: int = 2, whole: str | None = None) -> tuple[dict, dict]:
    """(per GPU, per host) bytes under ZeRO-2 with the routed experts split over `ep` GPUs (DeepSpeed AutoEP).

    Dense and shared weights are whole on every GPU; each holds ep-th of the routed experts. ZeRO-2 partitions
    the non-expert gradients and optimizer state over all GPUs, and each expert slice's over the gpus/ep GPUs
    that hold the same slice, which is the same 18 bytes per trainable parameter / GPUs either way.
    """
    gpus = gpus_per_node * nodes
    dense = counts.total - counts.routed
    gpu = {"weights (16-bit), dense + shared": 2 * dense,
           f"routed expert weights (16-bit), {n_experts // ep} of {n_experts} per layer": 2 * counts.routed / ep,
           "gradients + optimizer state, partition": 18 * counts.trainable / gpus}
    # `whole` (why, from workbench.scale.expert_parallel.loads_whole): every process reads the whole checkpoint before
    # AutoEP keeps 1/ep of the experts; else each reads the dense weights and its share (workbench.model.shards)
    if whole:
        host = {f"loading (each process reads the whole model: {whole})": load_bytes * counts.total * gpus_per_node}
    else:
        host = {f"loading (each process reads the dense weights and 1/{ep} of the routed experts)":
                load_bytes * (dense + counts.routed / ep) * gpus_per_node}
    return gpu, host


def all_to_all_bytes(config, batch: int, seq: int) -> float:
    """One MoE layer's dispatch and combine buffers on a GPU: tokens x top-k rows of the hidden size, 16-bit,
    sent and received each way (the expert outputs come back the same size). With balanced routing; a GPU whose
    experts are picked more often receives more, up to N times as much."""
    top_k = getattr(config, "num_experts_per_tok", 1) or 1
    return 4 * batch * seq * top_k * config.hidden_size * 2


def deepspeed_estimate(n: int, largest: int, stage: int, offload_opt: bool, offload_param: bool,
                       gpus_per_node: int, nodes: int) -> tuple[float, float]:
    """DeepSpeed's own estimator (every parameter trainable, zero.Init on): (per GPU, per host) bytes."""
    if stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        host, gpu, _ = estimate_zero3_model_states_mem_needs(n, largest, gpus_per_node, nodes, cpu_offload=offload_opt,
                                                             cpu_offload_params=offload_param, zero_init=True)
    else:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        host, gpu = estimate_zero2_model_states_mem_needs(n, gpus_per_node, nodes, cpu_offload=offload_opt)
    return float(gpu), float(host)


def activations(config, batch: int, seq: int, checkpointing: bool) -> float:
    h, layers = config.hidden_size, config.num_hidden_layers
    heads, vocab = config.num_attention_heads, config.vocab_size
    per_layer = seq * batch * h * (34 + 5 * heads * seq / h)
    kept = layers * 2 * seq * batch * h if checkpointing else layers * per_layer
    working = per_layer if checkpointing else 0
    logits = 2 * seq * batch * vocab * 4
    return kept + working + logits


def _check_expert_parallel(ep: int, n_experts: int | None, gpus: int) -> None:
    if ep < 1:
        raise WorkbenchError(f"estimate: --expert-parallel must be >= 1, got {ep}")
    if ep > 1 and not n_experts:
        raise WorkbenchError("estimate: --expert-parallel: this model has no routed experts to split")
    if ep > 1 and n_experts % ep:
        raise WorkbenchError(f"estimate: --expert-parallel {ep} does not divide the {n_experts} routed experts per layer")
    if ep > 1 and gpus % ep:
        raise WorkbenchError(f"estimate: --expert-parallel {ep} does not divide the job's {gpus} GPUs")


HOST_MEMORY_GIB = 1024.0  # CPU memory per node assumed unless --host-memory says otherwise (a DGX H100 has 2048)


def estimate(recipe, gpus_per_node: int = 1, nodes: int = 1, gpu_memory_gib: float = 80.0,
             expert_parallel: int | None = None, host_memory_gib: float = HOST_MEMORY_GIB) -> dict:
    """`expert_parallel`: None takes the recipe's train.expert_parallel; N > 1 estimates ZeRO-2 with the routed experts
    split over N GPUs (AutoEP), whatever ZeRO stage the recipe names (what ZeRO-3 would gather is kept beside it)."""
    from workbench.scale import deepspeed as distributed
    from workbench.model.device import uses_gpu

    config = architecture(recipe.model)
    counts = count(meta_model(config), recipe)
    ep = recipe.train.expert_parallel if expert_parallel is None else expert_parallel
    n_experts = getattr(config, "n_routed_experts", None)
    _check_expert_parallel(ep, n_experts, gpus_per_node * nodes)
    stage, offload_opt, offload_param = 0, False, False
    if recipe.train.deepspeed:
        ds = distributed.load_config(recipe.train.deepspeed)
        stage, (offload_opt, offload_param) = distributed.zero_stage(ds), distributed.offloads(ds)
    recipe_stage = stage
    if ep > 1:
        stage, offload_opt, offload_param = 2, False, False
        load_bytes = 4 if recipe.model.dtype == "float32" else 2  # "auto": the checkpoint's own, 16-bit for these models
        from workbench.scale.expert_parallel import loads_whole

        gpu, host = expert_parallel_states(counts, ep, n_experts, gpus_per_node, nodes, load_bytes, loads_whole(recipe))
    else:
        gpu, host = model_states(counts.total, counts.trainable, counts.largest_layer, stage, offload_opt, offload_param,
                                 gpus_per_node, nodes)
    checkpointing = recipe.train.gradient_checkpointing if recipe.train.gradient_checkpointing is not None else True
    gpu["activations (rough)"] = activations(config, recipe.train.batch_size, recipe.train.max_length, checkpointing)
    if ep > 1:
        gpu["all-to-all buffers, one MoE layer (balanced routing)"] = all_to_all_bytes(config, recipe.train.batch_size,
                                                                            recipe.train.max_length)
    ds_gpu = ds_host = None
    if stage >= 2 and ep == 1:  # DeepSpeed's estimators cover ZeRO-2 and ZeRO-3, without expert parallelism
        ds_gpu, ds_host = deepspeed_estimate(counts.total, counts.largest_layer, stage, offload_opt, offload_param,
                                             gpus_per_node, nodes)
    needed, host_needed = sum(gpu.values()), sum(host.values())
    fits_gpu, fits_host = needed <= gpu_memory_gib * GIB, host_needed <= host_memory_gib * GIB
    return {
        "model": recipe.model.architecture or recipe.model.name,
        "fp8_checkpoint": is_fp8(config),
        "gpus_per_node": gpus_per_node, "nodes": nodes, "zero_stage": stage, "recipe_zero_stage": recipe_stage,
        "expert_parallel": ep, "routed_experts": n_experts, "params_routed": counts.routed,
        "zero3_gathers": 4 * counts.largest_layer,  # DeepSpeed's 4 bytes per parameter of the largest layer
        # a run that saves whole weights gets its experts back whole on the first GPU at the end (a LoRA run's stay split)
        "final_gather": 2 * counts.routed if ep > 1 and recipe.peft.type == "none" else 0,
        "offload_optimizer": offload_opt, "offload_params": offload_param,
        "params_total": counts.total, "params_active": counts.active, "params_trainable": counts.trainable,
        "largest_layer_params": counts.largest_layer, "lora_adapters": counts.lora,
        "per_gpu": gpu, "per_host": host,
        "per_gpu_total": needed, "per_host_total": host_needed,
        "model_states_per_gpu": needed - gpu["activations (rough)"],
        "deepspeed_per_gpu": ds_gpu, "deepspeed_per_host": ds_host,
        "gpu_memory": gpu_memory_gib * GIB, "host_memory": host_memory_gib * GIB,
        "fits_gpu": fits_gpu, "fits_host": fits_host, "fits": fits_gpu and fits_host,
        "why_not": _why_not(gpu, host, needed, host_needed, gpu_memory_gib, host_memory_gib),
        "on_gpu_here": uses_gpu(),
    }


def _why_not(gpu: dict, host: dict, needed: float, host_needed: float, gpu_gib: float, host_gib: float) -> str | None:
    """One line naming the biggest item of each budget that is exceeded; None when both fit."""
    reasons = []
    if needed > gpu_gib * GIB:
        item = max(gpu, key=gpu.get)
        reasons.append(f"per GPU {_b(needed)} of {_b(gpu_gib * GIB)} (the most: {item}, {_b(gpu[item])})")
    if host_needed > host_gib * GIB:
        item = max(host, key=host.get)
        reasons.append(f"per host {_b(host_needed)} of CPU memory of {_b(host_gib * GIB)} (the most: {item}, "
                       f"{_b(host[item])})")
    return "; ".join(reasons) or None


def _b(n: float) -> str:
    return f"{n / GIB:,.1f} GiB"


def _p(n: int) -> str:
    return f"{n / 1e9:,.2f}B" if n >= 1e8 else f"{n / 1e6:,.1f}M"


def render(result: dict, recipe) -> str:
    stage, ep = result["zero_stage"], result["expert_parallel"]
    setup = f"ZeRO-{stage}" if stage else "no DeepSpeed"
    if ep > 1:
        setup += f" + expert parallelism {ep} (AutoEP)"
    if result["offload_optimizer"] or result["offload_params"]:
        what = [w for w, on in (("optimizer", result["offload_optimizer"]), ("parameters", result["offload_params"])) if on]
        setup += f", {' and '.join(what)} offloaded to CPU"
    lines = [
        f"{recipe.name}: {result['model']} on {result['nodes']} node(s) x {result['gpus_per_node']} GPU(s), {setup}",
        f"  parameters  total {_p(result['params_total'])}, active per token {_p(result['params_active'])}, "
        f"trainable {_p(result['params_trainable'])} ({result['params_trainable'] / result['params_total']:.2%}), "
        f"largest layer {_p(result['largest_layer_params'])}",
    ]
    if result["lora_adapters"]:
        lines.append("  LoRA        " + ", ".join(f"{k} {v}" for k, v in result["lora_adapters"].items()))
    lines.append("  per GPU")
    lines += [f"    {k:<52} {_b(v):>12}" for k, v in result["per_gpu"].items()]
    lines.append(f"    {'total':<52} {_b(result['per_gpu_total']):>12}")
    lines.append("  per host (CPU memory)")
    lines += [f"    {k:<52} {_b(v):>12}" for k, v in result["per_host"].items()] or ["    (nothing beyond the process)"]
    lines.append(f"    {'total':<52} {_b(result['per_host_total']):>12}")
    if result["deepspeed_per_gpu"] is not None:
        lines.append(f"  DeepSpeed's estimator (all parameters trainable): {_b(result['deepspeed_per_gpu'])} per GPU, "
                     f"{_b(result['deepspeed_per_host'])} per host for model states")
    if ep > 1:
        lines.append(f"  expert parallelism: {ep} GPUs share each layer's {result['routed_experts']} routed experts "
                     f"({_p(result['params_routed'])} routed parameters in all); nothing is gathered, where ZeRO-3 would "
                     f"gather its largest layer ({_b(result['zero3_gathers'])} per GPU)")
        if result["final_gather"]:
            lines.append(f"  note: the run saves whole weights, so the final save gathers every expert on the first GPU "
                         f"({_b(result['final_gather'])} more there, once, after training)")
        if result["recipe_zero_stage"] == 3:
            lines.append("  note: the recipe names ZeRO-3; expert parallelism runs with ZeRO-2 (set train.deepspeed: zero2)")
    if result["fits"]:
        lines.append(f"  => fits: {_b(result['per_gpu_total'])} per GPU of {_b(result['gpu_memory'])} (activations are a "
                     f"rough upper bound), {_b(result['per_host_total'])} per host of {_b(result['host_memory'])}")
    else:
        lines.append(f"  => does NOT fit: {result['why_not']}")
    if result["fp8_checkpoint"]:
        lines.append("  note: the published checkpoint is FP8; train from a BF16 copy (README: DeepSeek-V3)")
    return "\n".join(lines)
