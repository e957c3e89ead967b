"""DeepSeek-V3's multi-token-prediction (MTP) module, kept trained during fine-tuning.

V3 (technical report, section 2.2) adds one MTP module after the main model: at position i it combines the
main model's final hidden state h_i with the embedding of token i+1,

    x_i = eh_proj([enorm(embed(t_{i+1})); hnorm(h_i)]),   x = Block(x),   logits = head(shared_head.norm(x))

and predicts token i+2, with the embedding and output head shared with the main model. transformers 5.23
runs it for speculative decoding (`generate(use_mtp=True)`, `transformers.modeling_layers.MtpModel`) but
builds it only at inference, so no fine-tune touches it.

Here the module is one more decoder layer appended to `model.model.layers` (index num_hidden_layers, which
the main forward never visits: it runs `layers[:num_hidden_layers]`), with DeepSeek's own parameter names:
`model.layers.{L}.{enorm,hnorm,eh_proj,self_attn,mlp,input_layernorm,post_attention_layernorm,shared_head.norm}`.
So it trains with the model (LoRA reaches it through the same target names, its router through the
telemetry and aux-free balancing), and `save_pretrained` writes it in DeepSeek's checkpoint layout, which is
what `MtpModel.from_pretrained` reads back. `mtp_loss` is the training side; `speculative_stats` measures
the acceptance rate of `generate(use_mtp=True)`.
"""

import contextlib
import json
import re
from pathlib import Path

import torch
from torch import nn

from workbench.errors import WorkbenchError


def _layer_class():
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
        DeepseekV3DecoderLayer,
        DeepseekV3RMSNorm,
    )

    class DeepseekV3MtpLayer(DeepseekV3DecoderLayer):
        """A V3 decoder block (its forward) plus the MTP projections, with the checkpoint's key names."""

        def __init__(self, config, layer_idx: int):
            super().__init__(config, layer_idx)
            self.enorm = DeepseekV3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.hnorm = DeepseekV3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
            self.eh_proj = nn.Linear(2 * config.hidden_size, config.hidden_size, bias=False)
            self.shared_head = nn.Module()
            self.shared_head.norm = DeepseekV3RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    return DeepseekV3MtpLayer


def causal_lm(model):
    """The `DeepseekV3ForCausalLM` under any PEFT / DeepSpeed wrapper."""
    # by type, not by attribute: PEFT forwards unknown attributes (lm_head too) to the wrapped model
    for _ in range(4):
        if "module" in getattr(model, "_modules", {}) and not hasattr(type(model), "lm_head"):
            model = model.module  # DDP / DeepSpeed engine
        if hasattr(model, "get_base_model") and "lm_head" not in model._modules:
            model = model.get_base_model()
    return model


def is_deepseek_v3(model) -> bool:
    """transformers' own DeepseekV3ForCausalLM (remote modelling code may run every entry of `layers`)."""
    from transformers import DeepseekV3ForCausalLM

    return isinstance(causal_lm(model), DeepseekV3ForCausalLM)


def mtp_layers(model) -> list[nn.Module]:
    """The MTP layers attached to `model` (empty when it has none)."""
    lm = causal_lm(model)
    decoder = getattr(lm, "model", None)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        return []
    return list(layers[lm.config.get_text_config().num_hidden_layers:])


def holds_weights(source: str | None) -> bool:
    """Whether a folder holds safetensors weights (a hub snapshot may hold only the config and tokenizer yet)."""
    folder = Path(source) if source else None
    return bool(folder and folder.is_dir() and ((folder / "model.safetensors.index.json").is_file()
                                                 or any(folder.glob("*.safetensors"))))


def checkpoint_mtp_keys(source: str, num_hidden_layers: int) -> list[str]:
    """The checkpoint's MTP tensor names (`model.layers.{L}.*`, L >= num_hidden_layers) in a local directory."""
    directory = Path(source) if source else None
    if directory is None or not directory.is_dir():
        return []
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        names = list(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    else:
        from safetensors import safe_open

        names = []
        for file in sorted(directory.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                names += list(handle.keys())
    pattern = re.compile(r"^model\.layers\.(\d+)\.")
    return [n for n in names if (m := pattern.match(n)) and int(m.group(1)) >= num_hidden_layers]


def attach(model, source: str | None, init: str = "auto", key: str = "mtp.init") -> str:
    """Append one MTP layer to `model` (a `DeepseekV3ForCausalLM`), initialised from the checkpoint's MTP weights
    in `source` ("checkpoint"), or as a copy of the last decoder layer ("last_layer"); "auto" takes the checkpoint's
    when it has them ("random": drawn fresh, for a preset). Returns where the weights came from. The config then declares `num_mtp_layers: 1`."""
    lm = causal_lm(model)
    config = lm.config
    n_layers = config.num_hidden_layers
    if mtp_layers(lm):
        return "attached"
    if not is_deepseek_v3(lm):
        raise WorkbenchError(f"{key}: multi-token prediction needs transformers' DeepSeek-V3 model; this is "
                             f"{type(lm).__name__}")
    found = checkpoint_mtp_keys(source, n_layers) if source else []
    if init == "checkpoint" and not found:
        raise WorkbenchError(f"{key}: checkpoint, but {source} holds no MTP weights (model.layers.{n_layers}.*); "
                             "set mtp.init: last_layer to start the MTP module from the last decoder layer")
    config.num_mtp_layers = 1
    mtp_config = config.get_mtp_config()
    layer = _layer_class()(mtp_config, n_layers)
    reference = next(lm.parameters())
    layer.to(device=reference.device, dtype=reference.dtype)
    if found and init != "last_layer":
        layer.load_state_dict(_checkpoint_state(lm, source), strict=True)
        origin = "checkpoint"
    elif init == "random":  # a preset's fresh MTP layer, drawn like the rest of the model
        for module in layer.modules():
            lm._init_weights(module)
        origin = "random"
    else:
        _init_from_last_layer(layer, lm)
        origin = "last_layer"
    # A layer appended in place: config.num_hidden_layers keeps the main forward from running it
    lm.model.layers.append(layer)
    if hasattr(lm.model.config, "num_mtp_layers"):
        lm.model.config.num_mtp_layers = 1
    return origin


def _init_from_last_layer(layer, lm) -> None:
    """The block from the main model's last decoder layer; the norms at one; eh_proj averages the two normed
    inputs (the block's own input norm rescales them); the head norm from the main model's final norm."""
    last = lm.model.layers[lm.config.num_hidden_layers - 1]
    block = {k: v for k, v in last.state_dict().items()}
    missing = layer.load_state_dict(block, strict=False)
    if missing.unexpected_keys:
        raise WorkbenchError(f"mtp.init: last_layer: the last decoder layer does not match an MTP block "
                             f"(unexpected {missing.unexpected_keys[:3]})")
    with torch.no_grad():
        hidden = lm.config.hidden_size
        eye = torch.eye(hidden, dtype=layer.eh_proj.weight.dtype, device=layer.eh_proj.weight.device)
        layer.eh_proj.weight.copy_(torch.cat([eye, eye], dim=1) / 2)
        layer.enorm.weight.fill_(1.0)
        layer.hnorm.weight.fill_(1.0)
        layer.shared_head.norm.weight.copy_(lm.model.norm.weight)


def _checkpoint_state(lm, source: str) -> dict[str, torch.Tensor]:
    """The checkpoint's MTP weights as this layer's state dict, read by transformers' own MTP loader
    (`MtpModel.from_pretrained`, which fuses the per-expert tensors as the main model's loader does)."""
    from transformers.modeling_layers import MtpModel

    with _mtp_key_pattern(lm), quiet_transformers(), detached(lm):
        saved = lm.config.name_or_path, lm.config.dtype
        # save_pretrained leaves config.dtype as text, which MtpModel cannot build with
        lm.config.name_or_path, lm.config.dtype = str(source), next(lm.parameters()).dtype
        try:
            mtp = MtpModel.from_pretrained(lm, device_map={"": next(lm.parameters()).device})
        finally:
            lm.config.name_or_path, lm.config.dtype = saved
    state = {}
    for name, tensor in mtp.layers[0].state_dict().items():
        if name.startswith("mtp_block."):
            state[name[len("mtp_block."):]] = tensor
        elif name.startswith("post_norm."):
            state["shared_head.norm." + name[len("post_norm."):]] = tensor
        else:
            state[name] = tensor
    return state


@contextlib.contextmanager
def _mtp_key_pattern(lm):
    """transformers' DeepseekV3ForCausalLM declares its MTP keys as `model.layers.61.*` (DeepSeek-V3's depth), so
    `MtpModel.from_pretrained` finds none in a checkpoint of any other depth; name this model's own layer."""
    had = "_keys_to_ignore_on_load_unexpected" in lm.__dict__
    before = lm.__dict__.get("_keys_to_ignore_on_load_unexpected")
    lm._keys_to_ignore_on_load_unexpected = _own_mtp_keys(lm)
    try:
        yield
    finally:
        if had:
            lm._keys_to_ignore_on_load_unexpected = before
        else:
            del lm._keys_to_ignore_on_load_unexpected


@contextlib.contextmanager
def detached(model):
    """Take the attached MTP layers off `model` for a while: transformers' `MtpModel` builds its layers after the
    type of the model's last layer, which must then be a main decoder layer."""
    lm = causal_lm(model)
    extra = mtp_layers(lm)
    n_layers = lm.config.num_hidden_layers
    for _ in extra:
        del lm.model.layers[n_layers]
    try:
        yield lm
    finally:
        for layer in extra:
            lm.model.layers.append(layer)


def _own_mtp_keys(lm) -> list[str]:
    return [rf"model\.layers\.{lm.config.num_hidden_layers}\..*"]


def use_mtp_generation(model) -> None:
    """Let plain `generate(use_mtp=True)` find this model's MTP weights whatever its depth (see `_mtp_key_pattern`):
    the one line a user needs on a checkpoint that is not 61 layers deep."""
    lm = causal_lm(model)
    lm._keys_to_ignore_on_load_unexpected = _own_mtp_keys(lm)


@contextlib.contextmanager
def expected_mtp_keys(num_hidden_layers: int | None):
    """While a DeepSeek-V3 checkpoint of this depth loads, its MTP layers' keys (`model.layers.{L}.*`, L from
    num_hidden_layers on) count as known to transformers, as DeepSeek-V3's own `model.layers.61.*` do; any
    other unexpected key is still reported."""
    from transformers import DeepseekV3ForCausalLM

    if not isinstance(num_hidden_layers, int):
        yield
        return
    before = DeepseekV3ForCausalLM.__dict__.get("_keys_to_ignore_on_load_unexpected")
    depths = "|".join(str(num_hidden_layers + k) for k in range(4))
    DeepseekV3ForCausalLM._keys_to_ignore_on_load_unexpected = list(before or []) + [rf"model\.layers\.({depths})\..*"]
    try:
        yield
    finally:
        DeepseekV3ForCausalLM._keys_to_ignore_on_load_unexpected = before


@contextlib.contextmanager
def quiet_transformers():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def as_mtp_model_state(layer) -> dict[str, torch.Tensor]:
    """An attached MTP layer's weights under transformers' `MtpModel` names (`layers.0.mtp_block.*` ...)."""
    state = {}
    for name, tensor in layer.state_dict().items():
        if "lora_" in name or "modules_to_save" in name:
            continue  # a PEFT-wrapped layer, adapters merged into base_layer by the caller
        name = name.replace(".base_layer", "")
        if name.split(".")[0] in ("enorm", "hnorm", "eh_proj"):
            state[f"layers.0.{name}"] = tensor
        elif name.startswith("shared_head.norm."):
            state["layers.0.post_norm." + name[len("shared_head.norm."):]] = tensor
        else:
            state[f"layers.0.mtp_block.{name}"] = tensor
    return state


def carry(source: str | None, final_dir: Path, num_hidden_layers: int) -> int:
    """Copy a checkpoint's MTP tensors, unchanged, into a saved model that was trained without them (a full
    fine-tune with `mtp.enabled: false`), so the module is not dropped. Returns how many tensors it copied."""
    from safetensors import safe_open

    keys = set(checkpoint_mtp_keys(source, num_hidden_layers))
    if not keys:
        return 0
    tensors = {}
    for file in sorted(Path(source).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            tensors.update({k: handle.get_tensor(k) for k in handle.keys() if k in keys})
    add_shard(final_dir, tensors)
    return len(tensors)


def add_shard(folder: Path, tensors: dict[str, torch.Tensor], name: str = "mtp") -> None:
    """Write `tensors` as one more safetensors shard of a saved model and list them in its index (a lone
    model.safetensors becomes the first shard: transformers reads it before any index)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    index_path, single = folder / "model.safetensors.index.json", folder / "model.safetensors"
    if single.is_file():  # just written (an index beside it would be an earlier save's)
        with safe_open(str(single), framework="pt") as handle:
            index = {"metadata": {}, "weight_map": {k: "model-main.safetensors" for k in handle.keys()}}
        single.replace(folder / "model-main.safetensors")
    else:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    shard = f"model-{name}.safetensors"
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(folder / shard),
              metadata={"format": "pt"})
    index["weight_map"].update({k: shard for k in tensors})
    files = set(index["weight_map"].values())
    index["metadata"]["total_size"] = sum((folder / f).stat().st_size for f in files)
    index_path.write_text(json.dumps(index, indent=2))


def write_shared_copies(model, folder: Path) -> int:
    """DeepSeek's checkpoints also hold the MTP layer's copies of the shared embedding and output head
    (`model.layers.{L}.embed_tokens.weight`, `model.layers.{L}.shared_head.head.weight`), which serving engines read
    (transformers ignores them). Writes them beside an export that has an MTP layer; returns how many."""
    lm = causal_lm(model)
    if not mtp_layers(lm):
        return 0
    layer = lm.config.num_hidden_layers
    add_shard(folder, {f"model.layers.{layer}.embed_tokens.weight": lm.get_input_embeddings().weight,
                       f"model.layers.{layer}.shared_head.head.weight": lm.lm_head.weight}, name="mtp-shared")
    return 2
