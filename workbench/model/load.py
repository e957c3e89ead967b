"""Load the model and tokenizer a recipe names: a preset, a local directory, a hub id or another run.

    from workbench.model.load import resolve_model, load_resolved, load_model
    resolved = resolve_model(recipe.model)      # pinned: the weights folder or hub id, adapters on top, its config
    model, tokenizer = load_resolved(resolved)  # loads exactly that, looking nothing up again
    model, tokenizer = load_model(recipe.model) # both at once (eval targets, tests)

Presets (workbench.model.presets) are built once and then load like any checkpoint on disk. A run's final
weights are full weights, or an adapter over its base (itself a preset, a folder, a hub id or another run):
`resolve_model` follows that chain once, and `load_resolved` loads the innermost weights and applies each
adapter (and each run's router biases) in order, merging all of them, or all but the last (`merge=False`).
"""

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.model.device import experts_implementation, torch_dtype
from workbench.model.presets import PRESETS, preset_dir
from workbench.paths import FINAL_MODEL_INFO


def resolve_source(name: str, seed: int, key: str = "model.name") -> str:
    """A preset, an existing directory, or a hub id; fails in one line (naming `key`) when none is reachable."""
    if name in PRESETS:
        return str(preset_dir(name, seed))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    if offline and not _in_hub_cache(name):
        raise WorkbenchError(
            f"{key}: '{name}' is neither a preset ({', '.join(PRESETS)}) nor a local directory, "
            "and the hub is offline (HF_HUB_OFFLINE=1)"
        )
    return name


def local_checkpoint(source: str, revision: str | None = None) -> str | None:
    """A local folder for `source`: itself, or a hub id's downloaded snapshot (None where it is not downloaded)."""
    if Path(source).is_dir():
        return source
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(source, revision=revision, local_files_only=True)
    except Exception:  # not downloaded, or not a valid repo id
        return None


def is_fp8(config) -> bool:
    """FP8 weights, from the checkpoint's config (or the published one a shipped architecture file records)."""
    quant = getattr(config, "quantization_config", None) or getattr(config, "published_quantization", None) or {}
    quant = quant if isinstance(quant, dict) else quant.to_dict()
    return quant.get("quant_method") == "fp8"


def check_loadable(cfg, source: str, section: str = "model"):
    """Fail in one line, before any run is opened, on weights this machine cannot train; returns the model's
    config (None where it cannot be read here: from_pretrained reports that with the model's name)."""
    if cfg.quantize != "none":
        import torch

        if not torch.cuda.is_available():
            raise WorkbenchError(f"{section}.quantize: {cfg.quantize} loads the weights through bitsandbytes' CUDA "
                                 f"kernels and this machine has no CUDA GPU; set {section}.quantize: none here")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise WorkbenchError(f"{section}.quantize: needs bitsandbytes: pip install -c constraints.txt -e '.[gpu]'"
                                 ) from None
    config = read_config(source, cfg, key=f"{section}.name")
    if config is not None and is_fp8(config):
        raise WorkbenchError(f"{section}.name: '{cfg.name}' holds FP8 weights (DeepSeek-V3's published format), which "
                             "cannot be fine-tuned; convert them to BF16 (DeepSeek-V3's inference/fp8_cast_bf16.py) "
                             "and set model.name to that directory")
    return config


def read_config(source: str, cfg, key: str = "model.name"):
    """The model's config; a local config.json that is broken is a one-line error naming the file. None for a
    hub id whose config cannot be fetched here (from_pretrained then reports it with the model's name)."""
    from transformers import AutoConfig

    local = Path(source) / "config.json"
    if Path(source).is_dir():
        from workbench.files import read_text

        if not local.is_file():
            raise WorkbenchError(f"{key}: {source} holds no config.json (not a model directory)")
        try:
            json.loads(read_text(local))
        except json.JSONDecodeError as exc:
            raise WorkbenchError(f"{local}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        return AutoConfig.from_pretrained(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
    except Exception as exc:  # transformers and huggingface_hub raise assorted types for a config they refuse
        if Path(source).is_dir():
            raise WorkbenchError(f"{local}: transformers cannot read it: {str(exc).splitlines()[0]}") from None
        return None


def final_info(path: Path) -> tuple[object, bool]:
    """(ModelConfig of the base, whether `path` holds an adapter) from a run's final dir."""
    from pydantic import ValidationError

    from workbench.files import read_text
    from workbench.recipe.schema import ModelConfig

    where = path / FINAL_MODEL_INFO
    try:
        info = json.loads(read_text(where))
        return ModelConfig(**info["base_model"]), bool(info["adapter"])
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        raise WorkbenchError(f"{where}: not a run's model description ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0]})") from None


def _bnb_config(quantize: str):
    import torch
    from transformers import BitsAndBytesConfig

    if quantize == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=torch.bfloat16)
    return BitsAndBytesConfig(load_in_8bit=True)


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id that is not even a valid repo name
        return False


def _from_pretrained(source: str, cfg, key: str = "model.name", tokenizer: bool = True, with_mtp: bool = True,
                     config=None, folder: str | None = None):
    """`config`, `folder`: the model's config and local folder where they are known already (a plan pinned them)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(revision=cfg.revision, trust_remote_code=cfg.trust_remote_code, dtype=torch_dtype(cfg.dtype))
    if not cfg.trust_remote_code:  # remote modelling code has its own expert kernels
        kwargs["experts_implementation"] = experts_implementation(cfg.experts_implementation)
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    if getattr(cfg, "quantize", "none") != "none":
        kwargs["quantization_config"] = _bnb_config(cfg.quantize)
    try:
        tokenizer = (AutoTokenizer.from_pretrained(source, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
                     if tokenizer else None)
        from workbench.model.mtp import expected_mtp_keys

        depth = getattr(config if config is not None else read_config(source, cfg, key=key), "num_hidden_layers", None)
        with expected_mtp_keys(depth):  # a checkpoint's MTP keys are not the main model's: not reported as unexpected
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise WorkbenchError(f"{key}: cannot load '{cfg.name}': {str(exc).splitlines()[0]}") from None
    if with_mtp:
        from workbench.model.mtp import attach, is_deepseek_v3

        folder = folder or local_checkpoint(source, cfg.revision)  # a hub id: its snapshot, downloaded by now
        if is_deepseek_v3(model) and _mtp_keys(folder):
            attach(model, folder, init="checkpoint")
    if tokenizer is not None and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _mtp_keys(source: str | None) -> list[str]:
    from workbench.model.mtp import checkpoint_mtp_keys

    if source is None:
        return []
    config = Path(source) / "config.json"
    if not config.is_file():
        return []
    layers = json.loads(config.read_text(encoding="utf-8")).get("num_hidden_layers")
    return checkpoint_mtp_keys(source, layers) if isinstance(layers, int) else []


def write_final_info(final_dir: Path, base_model: dict, adapter: bool, routing: dict | None = None) -> None:
    """Say how to rebuild a run's final weights: its base model config, whether they are an adapter, and the routing
    they were trained with where it is not V3's top-k (`routing`, workbench.moe.top_p)."""
    info = {"base_model": base_model, "adapter": adapter, **({"routing": routing} if routing else {})}
    (final_dir / FINAL_MODEL_INFO).write_text(json.dumps(info, indent=2))


def final_routing(path: Path) -> dict | None:
    """The routing a run's final weights were trained with (None: V3's top-k), from its workbench_model.json."""
    from workbench.files import read_text

    return json.loads(read_text(path / FINAL_MODEL_INFO)).get("routing")


@dataclass(frozen=True)
class ResolvedModel:
    """A model pinned before anything loads: what `from_pretrained` reads, and the adapters on top, oldest first."""
    cfg: object  # the ModelConfig as the recipe named it, `from_run` pinned to a run id
    weights: str  # a preset folder, a local directory or a hub id holding full weights
    weights_cfg: object  # the ModelConfig those weights load with (dtype, revision, quantize, kernels)
    adapters: tuple[str, ...] = ()  # LoRA adapter folders applied in order (a chain of runs)
    bias_dirs: tuple[str, ...] = ()  # folders whose router_bias.safetensors is applied (runs' aux-free biases)
    config: object | None = None  # the transformers config; None for a hub id this machine cannot read
    tokenizer_source: str | None = None  # where the tokenizer loads from: a folder or a hub id
    key: str = "model"  # the recipe section, for errors
    weights_dir: str | None = None  # the local folder of the full weights (None: a hub id not downloaded yet)
    tokenizer_dir: str | None = None  # the local folder holding the tokenizer, where there is one
    routing: dict | None = None  # the outermost run's routing (workbench.moe.top_p); None: V3's top-k

    @property
    def label(self) -> str:
        return f"run {self.cfg.from_run}" if self.cfg.from_run else self.cfg.name

    @property
    def is_adapter(self) -> bool:
        return bool(self.adapters)



def resolve_model(cfg, key: str = "model") -> ResolvedModel:
    """Pin `cfg` (a ModelConfig or TeacherConfig): a run reference to its id and final folder (the tracking URI
    must be set), a preset to its built folder; check that it can load here. One-line errors naming `key`."""
    if cfg.from_run:
        from workbench.track.lineage import find_run, run_output

        run_id = find_run(cfg.from_run, key=f"{key}.from_run").info.run_id
        resolved = resolve_final(run_output(run_id, key=f"{key}.from_run"), key=key)
        return replace(resolved, cfg=cfg.model_copy(update={"from_run": run_id}))
    source = resolve_source(cfg.name, cfg.seed, key=f"{key}.name")
    config = check_loadable(cfg, source, section=key)
    if Path(source).is_dir():  # a teacher scores the student's tokens: its own tokenizer is never loaded
        check_model_files(Path(source), cfg, key=f"{key}.name", tokenizer=key == "model")
    folder = local_checkpoint(source, cfg.revision)
    return ResolvedModel(cfg=cfg, weights=source, weights_cfg=cfg, config=config, key=key, tokenizer_source=source,
                         weights_dir=folder, tokenizer_dir=folder if folder and _has_tokenizer(folder) else None)


def resolve_final(path: Path, key: str = "model") -> ResolvedModel:
    """A run's final folder: full weights, or an adapter over its base (followed back to full weights)."""
    from workbench.recipe.schema import ModelConfig

    base_cfg, adapter = final_info(path)
    routing = final_routing(path)
    if not adapter:
        return ResolvedModel(cfg=ModelConfig(name=str(path)), weights=str(path), weights_cfg=base_cfg, key=key,
                             bias_dirs=(str(path),), config=read_config(str(path), base_cfg), tokenizer_source=str(path),
                             routing=routing, weights_dir=str(path),
                             tokenizer_dir=str(path) if _has_tokenizer(str(path)) else None)
    if base_cfg.from_run:
        from workbench.track.lineage import run_output

        base = resolve_final(run_output(base_cfg.from_run, key=f"{key}.from_run"), key=key)
    else:
        base = resolve_model(base_cfg, key=key)
    return replace(base, cfg=ModelConfig(name=str(path)), adapters=base.adapters + (str(path),),
                   bias_dirs=base.bias_dirs + (str(path),), tokenizer_source=str(path), routing=routing,
                   tokenizer_dir=str(path) if _has_tokenizer(str(path)) else None)


def load_resolved(resolved: ResolvedModel, with_mtp: bool = True, tokenizer: bool = True, merge: bool = True,
                  share: tuple[int, int] | None = None):
    """(model, tokenizer or None) exactly as resolved: the full weights, then each adapter in order with the router
    biases saved beside it; adapters merged (all but the last one with `merge=False`: the model as trained); routed
    the way the resolved run was trained (`resolved.routing`: top-p, workbench.moe.top_p).

    `share=(rank, size)`: expert parallelism's loading, the dense weights and only that rank's routed experts read
    from the local shards (workbench.model.shards; no adapters, no MTP layer)."""
    from workbench.model.lora import load_adapter
    from workbench.moe.bias import load_router_bias

    if share is not None:
        from workbench.model.device import experts_implementation, torch_dtype
        from workbench.model.shards import load_expert_share

        if resolved.adapters or not resolved.weights_dir:
            raise WorkbenchError(f"{resolved.key}.name: a share of the experts is read from a local checkpoint "
                                 "without adapters")
        cfg = resolved.weights_cfg
        model = load_expert_share(resolved.weights_dir, resolved.config, torch_dtype(cfg.dtype), *share,
                                  experts_implementation=experts_implementation(cfg.experts_implementation),
                                  attn_implementation=cfg.attn_implementation)
    else:
        model, _ = _from_pretrained(resolved.weights, resolved.weights_cfg, key=f"{resolved.key}.name",
                                    tokenizer=False, with_mtp=with_mtp, config=resolved.config,
                                    folder=resolved.weights_dir)
    biases = list(resolved.bias_dirs)
    if biases and biases[0] == resolved.weights:  # a run's full weights: its biases first
        load_router_bias(model, Path(biases.pop(0)))
    for i, adapter in enumerate(resolved.adapters):
        model = load_adapter(model, adapter)
        load_router_bias(model, Path(adapter))
        if merge or i < len(resolved.adapters) - 1:
            model = model.merge_and_unload()
    if resolved.routing:
        from workbench.moe.top_p import apply_routing

        apply_routing(model, resolved.routing)
    return model, (load_tokenizer(resolved) if tokenizer else None)


def load_tokenizer(resolved: ResolvedModel):
    from transformers import AutoTokenizer

    source = resolved.tokenizer_source or resolved.weights
    cfg = resolved.weights_cfg
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=None if resolved.adapters else cfg.revision,
                                                  trust_remote_code=cfg.trust_remote_code)
    except OSError as exc:
        raise WorkbenchError(f"{resolved.key}.name: cannot load the tokenizer of '{resolved.label}': "
                             f"{str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(cfg, key: str = "model", with_mtp: bool = True):
    """(model, tokenizer) for a `ModelConfig`, resolved and loaded at once; the teacher's (key "teacher") needs no
    tokenizer of its own (None). `with_mtp`: a checkpoint's multi-token-prediction weights load as one more layer
    (workbench.model.mtp); otherwise they stay on disk."""
    return load_resolved(resolve_model(cfg, key), with_mtp=with_mtp, tokenizer=key == "model")


def load_final(path: Path, with_mtp: bool = True):
    """A run's final model: its base (recursively) with the LoRA adapter merged, or the full model."""
    return load_resolved(resolve_final(path), with_mtp=with_mtp)


def load_unmerged(path: Path, with_mtp: bool = True):
    """A run's final model as trained: base + PEFT adapter (not merged), or the full model."""
    return load_resolved(resolve_final(path), with_mtp=with_mtp, merge=False)


def _has_tokenizer(folder: str) -> bool:
    return any((Path(folder) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_model_files(folder: Path, cfg, key: str = "model.name", tokenizer: bool = True) -> None:
    """A local model directory must hold weights and (`tokenizer`) a tokenizer that loads (read here, not after a
    run opened)."""
    if not any((folder / name).is_file() for name in WEIGHTS):
        raise WorkbenchError(f"{key}: {folder} holds no weights (expected one of {', '.join(WEIGHTS)})")
    if not tokenizer:
        return
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(str(folder), trust_remote_code=cfg.trust_remote_code)
    except Exception as exc:  # tokenizers raise assorted types for a broken tokenizer.json / vocab
        raise WorkbenchError(f"{key}: the tokenizer in {folder} does not load: "
                             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
