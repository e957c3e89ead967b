"""Loading one process's share of a checkpoint: the dense weights whole, only its slice of the routed experts.

Under expert parallelism (DeepSpeed AutoEP) each process keeps E/N of every layer's routed experts, but
`from_pretrained` would first build the whole model in every process: 1.25 TB per process for DeepSeek-V3 in
16 bits. Here the model is built with its parameters on the meta device; every parameter but the routed experts'
is read whole from the safetensors shards, and each stacked expert tensor is allocated empty (the operating system
gives pages only where they are written) and filled only at this process's rows, read expert by expert from the
shards. AutoEP then slices exactly those rows (`experts[start:end]`), so no process ever touches another's experts.

    from workbench.model.shards import load_expert_share, expert_rows
    model = load_expert_share(folder, config, dtype, ep_rank=1, ep_size=2)   # rows 4..7 of 8 experts filled

Only checkpoints in transformers' DeepSeek layout (`...mlp.experts.<e>.{gate,up,down}_proj.weight`, what
`save_pretrained` and the hub's V2/V3/Moonlight checkpoints hold) are read this way; anything else is refused in
one line naming the key it lacks, never filled silently.
"""

import json
import re
from pathlib import Path

import torch

from workbench.errors import WorkbenchError

EXPERTS = re.compile(r"(?P<prefix>.+\.mlp\.experts)\.(?P<kind>gate_up_proj|down_proj)")


def expert_rows(n_experts: int, ep_rank: int, ep_size: int) -> range:
    """The routed experts process `ep_rank` of `ep_size` holds: the consecutive block AutoEP gives it."""
    per = n_experts // ep_size
    return range(ep_rank * per, (ep_rank + 1) * per)


def checkpoint_files(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (an index file, or a single model.safetensors)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise WorkbenchError(f"model.name: {folder} has no model.safetensors or model.safetensors.index.json "
                             "(loading each process's share of the experts reads safetensors shards)")
    return {name: single for name in _header(single)[1] if name != "__metadata__"}


def check_checkpoint(folder: str | Path) -> int:
    """Before a run opens: every shard the checkpoint names is there and has a readable header; the shard count."""
    folder = Path(folder)
    files = sorted(set(checkpoint_files(folder).values()))
    for path in files:
        if not path.is_file():
            raise WorkbenchError(f"model.name: {folder / 'model.safetensors.index.json'} names {path.name}, which is "
                                 "not in the folder")
        _header(path)
    return len(files)


def _header(path: Path) -> tuple[int, dict]:
    """(where the tensor bytes start, the JSON header) of a safetensors file."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise WorkbenchError(f"model.name: {path} is not a readable safetensors file ({exc})") from None
    return 8 + size, header


# safetensors' dtype names (its format's header) for the dtypes a DeepSeek checkpoint in 16 or 32 bits holds
DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}


class _Reader:
    """Reads tensors by name from the shards straight into the tensors that keep them.

    The safetensors format is an 8-byte header length, a JSON header (per tensor: dtype, shape, byte offsets) and
    the raw bytes. The bytes are read with plain file reads into the destination: safetensors' own reader maps the
    files, and mapped pages that were read count in the process's resident memory beside the copy (twice the
    weights at the peak, measured: benchmarks/expert_loading.py)."""

    def __init__(self, folder: Path):
        self.folder, self.files, self.headers = folder, checkpoint_files(folder), {}

    def _entry(self, name: str) -> tuple[Path, int, dict]:
        if name not in self.files:
            raise WorkbenchError(f"model.name: the checkpoint in {self.folder} has no tensor '{name}', which the "
                                 "model needs (is it a DeepSeek checkpoint in transformers' layout?)")
        path = self.files[name]
        if path not in self.headers:
            self.headers[path] = _header(path)
        data_start, header = self.headers[path]
        if name not in header:
            raise WorkbenchError(f"model.name: {path.name} does not hold '{name}', though the checkpoint's index says so")
        return path, data_start, header[name]

    def read_into(self, name: str, dest: torch.Tensor) -> None:
        """Fill `dest` (any dtype: converted after the read where the stored one differs) with tensor `name`."""
        path, data_start, entry = self._entry(name)
        stored = DTYPES.get(entry["dtype"])
        if stored is None:
            raise WorkbenchError(f"model.name: '{name}' is stored as {entry['dtype']}, which this loader does not "
                                 "read; convert the checkpoint to BF16 first (README: DeepSeek-V3)")
        if tuple(entry["shape"]) != tuple(dest.shape):
            raise WorkbenchError(f"model.name: '{name}' has shape {tuple(entry['shape'])} in the checkpoint, the "
                                 f"model expects {tuple(dest.shape)}")
        begin, end = entry["data_offsets"]
        direct = stored == dest.dtype and dest.is_contiguous()
        buffer = dest if direct else torch.empty(dest.shape, dtype=stored)
        raw = buffer.reshape(-1).view(torch.uint8).numpy()
        with open(path, "rb") as handle:
            handle.seek(data_start + begin)
            got = handle.readinto(memoryview(raw))
        if got != end - begin or raw.nbytes != end - begin:
            raise WorkbenchError(f"model.name: {path.name} ends inside '{name}' (read {got} of {end - begin} bytes)")
        if not direct:
            dest.copy_(buffer)


def _set(model, name: str, value: torch.Tensor, buffer: bool) -> None:
    module_name, _, leaf = name.rpartition(".")
    module = model.get_submodule(module_name)
    if buffer:
        module._buffers[leaf] = value
    else:
        old = module._parameters[leaf]
        module._parameters[leaf] = torch.nn.Parameter(value, requires_grad=old.requires_grad)


def _fill_experts(reader: _Reader, prefix: str, kind: str, shape, dtype, rows: range) -> torch.Tensor:
    """A stacked expert tensor of the full shape with only `rows` written. torch.empty takes untouched pages from
    the OS, so the other rows cost address space, not memory, and are never read (AutoEP keeps `rows` only)."""
    full = torch.empty(shape, dtype=dtype)
    for e in rows:
        if kind == "gate_up_proj":  # transformers fuses [gate; up] along the output rows (its conversion mapping)
            half = shape[1] // 2
            reader.read_into(f"{prefix}.{e}.gate_proj.weight", full[e, :half])
            reader.read_into(f"{prefix}.{e}.up_proj.weight", full[e, half:])
        else:
            reader.read_into(f"{prefix}.{e}.down_proj.weight", full[e])
    return full


def load_expert_share(folder: str | Path, config, dtype: torch.dtype, ep_rank: int, ep_size: int,
                      experts_implementation: str | None = None, attn_implementation: str | None = None):
    """The model with every dense tensor loaded and only routed-expert rows `expert_rows(E, ep_rank, ep_size)`."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    kwargs = {"dtype": dtype}
    if experts_implementation:
        kwargs["experts_implementation"] = experts_implementation
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    with init_empty_weights():  # parameters on meta; buffers (rotary frequencies, router bias) real
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    rows = expert_rows(config.n_routed_experts, ep_rank, ep_size)
    reader = _Reader(folder)
    keep_fp32 = tuple(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    persistent = {name for name, _ in model.named_buffers()
                  if name.rpartition(".")[2] not in model.get_submodule(name.rpartition(".")[0])._non_persistent_buffers_set}
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {}) if getattr(config, "tie_word_embeddings", False) else set()
    for name, tensor in list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if n in persistent]:
        if name in tied:
            continue
        target = torch.float32 if any(k in name for k in keep_fp32) else (tensor.dtype if tensor.is_floating_point() else None)
        match = EXPERTS.fullmatch(name)
        if match:
            value = _fill_experts(reader, match["prefix"], match["kind"], tensor.shape, target, rows)
        else:
            value = torch.empty(tensor.shape, dtype=target or tensor.dtype)
            reader.read_into(name, value)
        _set(model, name, value, buffer=name in persistent)
    if tied:
        model.tie_weights()
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise WorkbenchError(f"model.name: {len(left)} tensor(s) were not loaded, e.g. '{left[0]}'")
    model.eval()
    model.expert_share = (ep_rank, ep_size, rows.start, rows.stop)  # read back where AutoEP has sliced (a guard)
    return model
