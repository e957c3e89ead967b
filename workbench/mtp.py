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
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer, DeepseekV3RMSNorm

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

    with _mtp_key_pattern(lm), _quiet_transformers(), detached(lm):
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
def _quiet_transformers():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


class HiddenCapture:
    """Holds the decoder stack's last output (after the final norm: what `generate(use_mtp=True)` hands its MTP
    layers) from the most recent forward."""

    def __init__(self, model):
        lm = causal_lm(model)
        self.hidden = None
        self.handle = lm.model.register_forward_hook(self._hook)

    def _hook(self, module, args, output):
        self.hidden = output.last_hidden_state

    def take(self) -> torch.Tensor | None:
        hidden, self.hidden = self.hidden, None
        return hidden

    def remove(self) -> None:
        self.handle.remove()


def mtp_forward(model, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask=None, position_ids=None):
    """The MTP layer's output states over positions 0..T-2 (each predicts the token two ahead), from the main
    model's final hidden states `hidden` (batch, T, H) and the batch's tokens."""
    from transformers.masking_utils import create_causal_mask

    lm = causal_lm(model)
    layer = mtp_layers(lm)[0]
    embeds = lm.get_input_embeddings()(input_ids[:, 1:])
    if position_ids is None:
        position_ids = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
    positions = position_ids[:, 1:]
    x = layer.eh_proj(torch.cat([layer.enorm(embeds), layer.hnorm(hidden[:, :-1])], dim=-1))
    mask = create_causal_mask(config=layer.self_attn.config, inputs_embeds=x,
                              attention_mask=attention_mask[:, 1:] if attention_mask is not None else None,
                              past_key_values=None, position_ids=positions)
    x = layer(x, attention_mask=mask, position_ids=positions,
              position_embeddings=lm.model.rotary_emb(x, positions))
    return layer.shared_head.norm(x)


def mtp_loss(model, hidden, input_ids, labels, attention_mask=None, position_ids=None):
    """(summed cross-entropy, number of targets, correct top-1) of the MTP head on the tokens two ahead whose
    label is not -100 (assistant-only and padding masks carry over from the main loss's labels)."""
    states = mtp_forward(model, hidden, input_ids, attention_mask, position_ids)[:, :-1]  # predicts t_{i+2}
    targets = labels[:, 2:]
    mask = targets != -100
    logits = causal_lm(model).lm_head(states[mask]).float()
    chosen = targets[mask]
    total = nn.functional.cross_entropy(logits, chosen, reduction="sum") if chosen.numel() else states.sum() * 0
    with torch.no_grad():
        correct = (logits.argmax(-1) == chosen).sum() if chosen.numel() else torch.zeros((), device=states.device)
    return total, mask.sum(), correct


@torch.no_grad()
def next_next_accuracy(model, tokenizer, rows, max_length: int = 512, batch_size: int = 8) -> dict[str, float]:
    """Held-out MTP figures over the last assistant turns of chat `rows`: the MTP head's loss and top-1 accuracy
    on the token two ahead, per answer token."""
    from workbench.methods.distill import DataCollatorForChatML

    lm = causal_lm(model)
    collate = DataCollatorForChatML(tokenizer=tokenizer, max_length=max_length)
    was_training = lm.training
    lm.eval()
    capture = HiddenCapture(lm)
    totals = torch.zeros(3, dtype=torch.float64)
    rows = list(rows)
    try:
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(lm.device) for k, v in collate(rows[start:start + batch_size]).items()
                     if k in ("input_ids", "attention_mask", "labels")}
            lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            s, n, c = mtp_loss(lm, capture.take(), batch["input_ids"], batch["labels"], batch["attention_mask"])
            totals += torch.tensor([s.item(), n.item(), c.item()], dtype=torch.float64)
    finally:
        capture.remove()
        lm.train(was_training)
    count = max(totals[1].item(), 1.0)
    return {"loss": totals[0].item() / count, "accuracy": totals[2].item() / count, "tokens": int(totals[1].item())}


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


@contextlib.contextmanager
def _drafts_from(layer):
    """Make `generate(use_mtp=True)` draft with this in-memory layer instead of reading the MTP weights from the
    model's files (which may be an older save, or an adapter's base)."""
    from transformers.modeling_layers import MtpModel

    original = MtpModel.__dict__["from_pretrained"]

    def from_memory(cls, main_model, device_map=None, **kwargs):
        from transformers.modeling_utils import local_torch_dtype

        reference = next(layer.parameters())
        with local_torch_dtype(reference.dtype, cls.__name__):  # built in the layer's dtype (bf16 on GPU), not fp32
            model = cls(main_model, 1)
        missing, unexpected = model.load_state_dict(as_mtp_model_state(layer), strict=False)
        shared = ("embed_tokens.", "shared_head.")  # tied to the main model's
        if unexpected or any(not k.startswith(shared) for k in missing):
            raise WorkbenchError(f"mtp: the MTP layer does not match transformers' MtpModel ({(missing + unexpected)[:3]})")
        return model.to(device=reference.device, dtype=reference.dtype).eval()

    MtpModel.from_pretrained = classmethod(from_memory)
    try:
        yield
    finally:
        MtpModel.from_pretrained = original


@contextlib.contextmanager
def _count_drafts(stats: dict):
    """Count MTP drafts proposed and accepted in `generate(use_mtp=True)` (transformers' MTPCandidateGenerator)."""
    from transformers.generation.candidate_generator import MTPCandidateGenerator

    get, update = MTPCandidateGenerator.get_candidates, MTPCandidateGenerator.update_candidate_strategy

    def get_candidates(self, input_ids, *args, **kwargs):
        ids, logits = get(self, input_ids, *args, **kwargs)
        stats["forwards"] += 1
        stats["proposed"] += ids.shape[1] - input_ids.shape[1]
        return ids, logits

    def update_candidate_strategy(self, input_ids, scores, num_matches):
        stats["accepted"] += int(num_matches)
        return update(self, input_ids, scores, num_matches)

    MTPCandidateGenerator.get_candidates = get_candidates
    MTPCandidateGenerator.update_candidate_strategy = update_candidate_strategy
    try:
        yield
    finally:
        MTPCandidateGenerator.get_candidates, MTPCandidateGenerator.update_candidate_strategy = get, update


@torch.no_grad()
def speculative_stats(model, tokenizer, prompts: list, max_new_tokens: int = 48) -> dict[str, float]:
    """Greedy speculative decoding with the model's MTP layer (`generate(use_mtp=True)`) on chat prompts, against
    plain greedy decoding: acceptance rate (accepted drafts / proposed), new tokens per main-model forward, and
    whether every continuation equals plain greedy's (it must: verification keeps the main model's choice).
    The drafts come from the MTP layer attached to `model` (in memory, as trained or merged), through transformers'
    own `MtpModel` and candidate generator."""
    lm = causal_lm(model)
    lm.eval()
    stats = {"forwards": 0, "proposed": 0, "accepted": 0}
    new_tokens = identical = 0
    layers = mtp_layers(lm)
    if not layers:
        raise WorkbenchError("mtp: this model has no multi-token-prediction layer to draft with")
    with detached(lm), _drafts_from(layers[0]):
        for prompt in prompts:
            new, same = _compare_generation(lm, tokenizer, prompt, max_new_tokens, stats)
            new_tokens, identical = new_tokens + new, identical + same
    return {"acceptance_rate": stats["accepted"] / max(stats["proposed"], 1),
            "tokens_per_forward": new_tokens / max(stats["forwards"], 1),
            "identical": identical / max(len(prompts), 1), "prompts": len(prompts)}


def _compare_generation(lm, tokenizer, prompt, max_new_tokens: int, stats: dict) -> tuple[int, int]:
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"].to(lm.device)
    # use_cache and position_ids: a trainer may have switched the config's cache off, or wrapped the forward so
    # that generate no longer sees it take positions, and the MTP drafter needs both
    settings = dict(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                    use_cache=True, attention_mask=torch.ones_like(ids),
                    position_ids=torch.arange(ids.shape[1], device=ids.device).unsqueeze(0))
    plain = lm.generate(ids, **settings)
    with _count_drafts(stats), _quiet_transformers():
        fast = lm.generate(ids, use_mtp=True, **settings)
    return fast.shape[1] - ids.shape[1], int(torch.equal(plain, fast))


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


def prompts_of(rows, limit: int) -> list[list[dict]]:
    """The turns before each chat row's last assistant turn: held-out prompts for speculative decoding."""
    prompts = []
    for row in list(rows)[:limit]:
        messages = row["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append(messages[:last])
    return prompts


def measure(model, tokenizer, rows, cfg) -> dict[str, float]:
    """Held-out MTP loss and next-next-token accuracy, and speculative decoding's acceptance rate."""
    rows = list(rows)
    figures = {f"heldout_{k}": v for k, v in next_next_accuracy(model, tokenizer, rows).items() if k != "tokens"}
    if cfg.speculative_prompts:
        stats = speculative_stats(model, tokenizer, prompts_of(rows, cfg.speculative_prompts), cfg.speculative_tokens)
        figures.update({k: v for k, v in stats.items() if k != "prompts"})
    return figures


@contextlib.contextmanager
def temporarily_attached(model, folder: str):
    """The checkpoint's MTP layer on `model` for a while (to measure a layer that is not trained), then off again."""
    lm = causal_lm(model)
    before = lm.config.num_mtp_layers
    attach(lm, folder, init="checkpoint", key="mtp.report")
    try:
        yield
    finally:
        del lm.model.layers[lm.config.num_hidden_layers]
        lm.config.num_mtp_layers = before


@contextlib.contextmanager
def merged(model):
    """LoRA adapters merged into their base weights for a while (the MTP drafter reads plain weights)."""
    peft = hasattr(model, "merge_adapter") and hasattr(model, "peft_config")
    if peft:
        model.merge_adapter()
    try:
        yield
    finally:
        if peft:
            model.unmerge_adapter()


class MtpReport:
    """Before and after a run: the MTP head's held-out figures and speculative decoding on held-out prompts,
    logged as `mtp/*` (step 0 before, the last step after) and summed up in one console line. Measured on the
    model in memory (no second copy): the trained layer, or with `mtp.report: always` the checkpoint's layer
    attached for the measurement only."""

    def __init__(self, recipe, track, rows, enabled: bool):
        mode = recipe.mtp.report
        self.recipe, self.track, self.rows = recipe, track, rows
        self.active = enabled and mode != "never" and (recipe.mtp.enabled or mode == "always")
        self.before_figures: dict | None = None

    def _untrained_source(self, model, final_dir: Path | None = None) -> str | None:
        from workbench.model import local_checkpoint

        lm = causal_lm(model)
        for folder in ([str(final_dir)] if final_dir else []) + [local_checkpoint(lm.config.name_or_path)]:
            if folder and checkpoint_mtp_keys(folder, lm.config.num_hidden_layers):
                return folder
        return None

    def _measure(self, model, tokenizer, final_dir: Path | None = None) -> dict | None:
        if mtp_layers(model):
            with merged(model):
                return measure(model, tokenizer, self.rows, self.recipe.mtp)
        folder = self._untrained_source(model, final_dir)
        if folder is None:
            return None
        with temporarily_attached(model, folder), merged(model):
            return measure(model, tokenizer, self.rows, self.recipe.mtp)

    def before(self, model, tokenizer) -> None:
        if not self.active:
            return
        self.before_figures = self._measure(model, tokenizer)
        if self.before_figures is None:
            print("notice: mtp.report: always, but the base model has no MTP layer to measure")
            return
        self.track.log_metrics({f"mtp/{k}": v for k, v in self.before_figures.items()}, step=0, raw=True)

    def after(self, model, tokenizer, final_dir: Path, step: int) -> None:
        if not self.active:
            return
        figures = self._measure(model, tokenizer, final_dir)
        if figures is None:
            return
        self.track.log_metrics({f"mtp/{k}": v for k, v in figures.items()}, step=step, raw=True)
        before = self.before_figures or {}

        def change(key, fmt="{:.3f}"):
            now = fmt.format(figures[key])
            return f"{fmt.format(before[key])} -> {now}" if key in before else now

        trained = "trained" if self.recipe.mtp.enabled else "kept as loaded, mtp.enabled: false"
        line = f"MTP ({trained}): held-out next-next-token accuracy {change('heldout_accuracy')}"
        if "acceptance_rate" in figures:
            line += (f"; speculative decoding accepts {change('acceptance_rate')} of drafts, "
                     f"{change('tokens_per_forward', '{:.2f}')} tokens per forward")
            if figures["identical"] < 1:
                line += f" (warning: only {figures['identical']:.0%} of continuations equal plain greedy decoding)"
        print(line)
