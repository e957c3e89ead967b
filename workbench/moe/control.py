"""Which MoE parts train: router, shared experts, routed experts; and ESFT's expert selection.

    from workbench.moe.control import apply_trainable, esft_select, esft_restrict
    apply_trainable(model, recipe.moe)                      # freeze the groups the recipe turns off
    selection = esft_select(model, tokenizer, rows, recipe.moe)   # {layer: [experts]}
    esft_restrict(model, selection)                         # train only those experts, all else frozen

ESFT (Wang et al. 2024, "Let the Expert Stick to His Last"): profile the base model's routing on the
task data, score each expert per layer by its average gate weight (`gate`) or its share of token
selections (`token`), normalise within the layer, and keep the fewest experts whose cumulative score
reaches `top_p`. Routed experts are stored as 3D tensors, so "train only expert e" is a gradient mask
on the expert slices (with no weight decay, untouched slices stay bit-identical).

The profile counts every real token of each rendered row, prompt and chat template included, and no
padding. That is what the ESFT paper's own profiler does (deepseek-ai/ESFT `get_expert_scores.py` runs
one unpadded row at a time and logs every input position), and it is right for the training that
follows: prompt tokens pass through the experts they are routed to, and the loss on the answer reaches
those experts back through attention, so the experts the prompt uses are trained too. Padding is no part
of the task: counted, it made the scores depend on how the rows were batched.
"""

import torch

from workbench.moe.routing import RoutingRecorder, find_routers


def _moe_blocks(model):
    """(layer, moe_block) for each MoE layer: the module holding .experts, .gate and .shared_experts."""
    blocks = []
    for name, module in model.named_modules():
        if hasattr(module, "experts") and hasattr(module, "gate") and hasattr(module, "shared_experts"):
            layer = next(int(p) for p in reversed(name.split(".")) if p.isdigit())
            blocks.append((layer, module))
    return blocks


def apply_trainable(model, cfg) -> None:
    for _, block in _moe_blocks(model):
        block.gate.requires_grad_(cfg.train_router)
        block.shared_experts.requires_grad_(cfg.train_shared_experts)
        block.experts.requires_grad_(cfg.train_routed_experts)


def profile_routing(model, tokenizer, texts: list[str], max_length: int = 512, batch_size: int = 8):
    """(token counts, summed gate weights, tokens) per MoE layer over the real tokens of `texts`, in eval mode.

    Padding in a batch is left out by the recorder (it reads the attention mask), so the figures are
    the same for any batch_size or padding side as for the rows one at a time.
    """
    recorder = RoutingRecorder(model, entropy=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                                  truncation=True, max_length=max_length, add_special_tokens=False)
                batch = {k: v.to(model.device) for k, v in batch.items()}
                # positions count real tokens only, as generate() does, so left padding shifts nothing
                batch["position_ids"] = (batch["attention_mask"].cumsum(-1) - 1).clamp_min(0)
                model(**batch)
        bucket = recorder.take("eval")
    finally:
        recorder.remove()
        model.train(was_training)
    return bucket, recorder.layers


def select_experts(scores: torch.Tensor, top_p: float) -> list[list[int]]:
    """Per layer, the fewest experts whose normalised scores sum to at least top_p. scores: (layers, E)."""
    selection = []
    for layer_scores in scores.double():
        share = layer_scores / layer_scores.sum().clamp_min(1e-12)
        order = torch.argsort(share, descending=True)
        cumulative = torch.cumsum(share[order], 0)
        count = int(torch.searchsorted(cumulative, torch.tensor(top_p - 1e-6, dtype=cumulative.dtype)).item()) + 1
        selection.append(sorted(order[:count].tolist()))
    return selection


def esft_scores(bucket, top_k: int, scoring: str) -> torch.Tensor:
    """(layers, E) ESFT expert scores from a routing profile: `gate` or `token` (see the module docstring)."""
    if scoring == "gate":
        return bucket.gate_sums / bucket.tokens[:, None].clamp_min(1)  # average gate weight per real token
    return bucket.loads / (bucket.tokens[:, None] * top_k).clamp_min(1)  # token selection ratio


def esft_select(model, tokenizer, texts: list[str], cfg, batch_size: int = 8) -> dict[int, list[int]]:
    bucket, layers = profile_routing(model, tokenizer, texts, batch_size=batch_size)
    scores = esft_scores(bucket, find_routers(model)[0][1].top_k, cfg.esft)
    return dict(zip(layers, select_experts(scores, cfg.esft_top_p)))


def esft_restrict(model, selection: dict[int, list[int]]) -> int:
    """Freeze everything but the selected experts; returns the number of trainable expert weights."""
    model.requires_grad_(False)
    trainable = 0
    for layer, block in _moe_blocks(model):
        experts = selection.get(layer, [])
        if not experts:
            continue
        mask_index = torch.tensor(experts)
        for param in (block.experts.gate_up_proj, block.experts.down_proj):  # (E, out, in)
            param.requires_grad_(True)
            mask = torch.zeros(param.shape[0], 1, 1, dtype=param.dtype, device=param.device)
            mask[mask_index] = 1
            param.register_hook(lambda grad, mask=mask: grad * mask)
            trainable += param[0].numel() * len(experts)
    return trainable


def expert_patch(model, selection: dict[int, list[int]]) -> dict[str, torch.Tensor]:
    """Only the selected experts' weights, keyed `model.layers.L.mlp.experts.<param>.<expert>`."""
    tensors = {}
    blocks = dict(_moe_blocks(model))
    for layer, experts in selection.items():
        for param_name in ("gate_up_proj", "down_proj"):
            param = getattr(blocks[layer].experts, param_name)
            for expert in experts:
                tensors[f"model.layers.{layer}.mlp.experts.{param_name}.{expert}"] = param[expert].detach().cpu().contiguous()
    return tensors


def apply_expert_patch(model, tensors: dict[str, torch.Tensor]) -> int:
    blocks = dict(_moe_blocks(model))
    with torch.no_grad():
        for key, value in tensors.items():
            parts = key.split(".")
            layer, param_name, expert = int(parts[2]), parts[5], int(parts[6])
            getattr(blocks[layer].experts, param_name)[expert].copy_(value)
    return len(tensors)


def esft_restrict_lora(model, selection: dict[int, list[int]]) -> int:
    """ESFT with LoRA: only the selected experts' slices of the routed-expert adapters train.

    PEFT's per-expert LoRA on a 3D parameter stores A as (E*r, in), expert-major, and B as (out, r*E),
    with expert e in columns e, e+E, ...; masking those gradients keeps every other expert's delta at zero.
    """
    trainable = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer = next((int(p) for p in name.split(".") if p.isdigit()), None)
        experts = selection.get(layer, []) if ".mlp.experts." in name and ".lora_" in name else None
        if not experts:
            param.requires_grad_(False)
            continue
        n_experts = max(n_routed_experts(model, layer), 1)
        mask = torch.zeros_like(param)
        for expert in experts:
            if ".lora_A." in name:
                rank = param.shape[0] // n_experts
                mask[expert * rank:(expert + 1) * rank] = 1
            else:
                mask[:, expert::n_experts] = 1
        param.register_hook(lambda grad, mask=mask: grad * mask)
        trainable += int(mask.sum().item())
    return trainable


def n_routed_experts(model, layer) -> int:
    return dict(find_routers(model))[layer].e_score_correction_bias.numel()
