"""Load the model and tokenizer a recipe names: a preset, a local directory, a hub id or another run.

    from workbench.model.load import load_model
    model, tokenizer = load_model(recipe.model)

Presets (workbench.model.presets) are built once and then load like any checkpoint on disk. A run's final
weights load as saved: full weights, or its base with the LoRA adapter (merged by `load_final`).
"""

import json
import os
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


def check_loadable(cfg, source: str):
    """Fail in one line, before any run is opened, on weights this machine cannot train; returns the model's
    config (None where it cannot be read here: from_pretrained reports that with the model's name)."""
    if cfg.quantize != "none":
        import torch

        if not torch.cuda.is_available():
            raise WorkbenchError(f"model.quantize: {cfg.quantize} loads the base through bitsandbytes' CUDA kernels and "
                                 "this machine has no CUDA GPU; set model.quantize: none here")
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise WorkbenchError("model.quantize: needs bitsandbytes: pip install -c constraints.txt -e '.[gpu]'") from None
    config = read_config(source, cfg)
    if config is not None and is_fp8(config):
        raise WorkbenchError(f"model.name: '{cfg.name}' holds FP8 weights (DeepSeek-V3's published format), which "
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


def final_config(path: Path):
    """The architecture config of a run's final weights: its own config.json, or its base model's for an adapter."""
    base_cfg, adapter = final_info(path)
    if not adapter:
        return read_config(str(path), base_cfg)
    if base_cfg.from_run:
        from workbench.track.lineage import run_output

        return final_config(run_output(base_cfg.from_run))
    return read_config(resolve_source(base_cfg.name, base_cfg.seed), base_cfg)


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


def load_model(cfg, key: str = "model", with_mtp: bool = True):
    """(model, tokenizer) for a `ModelConfig`; `from_run` starts from another run's final weights. `key` names the
    recipe section in errors; the teacher's (key "teacher") needs no tokenizer of its own (None). `with_mtp`: a
    checkpoint's multi-token-prediction weights load as one more layer (workbench.model.mtp); otherwise they stay on disk."""
    if cfg.from_run:
        from workbench.track.lineage import run_output

        return load_final(run_output(cfg.from_run, key=f"{key}.from_run"), with_mtp=with_mtp)
    source = resolve_source(cfg.name, cfg.seed, key=f"{key}.name")
    return _from_pretrained(source, cfg, key=f"{key}.name", tokenizer=key == "model", with_mtp=with_mtp)


def _from_pretrained(source: str, cfg, key: str = "model.name", tokenizer: bool = True, with_mtp: bool = True):
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

        depth = getattr(read_config(source, cfg, key=key), "num_hidden_layers", None)
        with expected_mtp_keys(depth):  # a checkpoint's MTP keys are not the main model's: not reported as unexpected
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise WorkbenchError(f"{key}: cannot load '{cfg.name}': {str(exc).splitlines()[0]}") from None
    if with_mtp:
        from workbench.model.mtp import attach, is_deepseek_v3

        folder = local_checkpoint(source, cfg.revision)  # a hub id: its snapshot, downloaded by now
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


def write_final_info(final_dir: Path, base_model: dict, adapter: bool) -> None:
    """Say how to rebuild a run's final weights: its base model config, plus whether they are an adapter."""
    (final_dir / FINAL_MODEL_INFO).write_text(json.dumps({"base_model": base_model, "adapter": adapter}, indent=2))


def load_final(path: Path, with_mtp: bool = True):
    """Rebuild a run's final model: its base (recursively) with the LoRA adapter merged, or the full model."""
    model, tokenizer = load_unmerged(path, with_mtp=with_mtp)
    return (model.merge_and_unload() if hasattr(model, "merge_and_unload") else model), tokenizer


def load_unmerged(path: Path, with_mtp: bool = True):
    """A run's final model as trained: base + PEFT adapter (not merged), or the full model."""
    from workbench.moe.bias import load_router_bias

    base_cfg, adapter = final_info(path)
    if not adapter:
        model, tokenizer = _from_pretrained(str(path), base_cfg, with_mtp=with_mtp)
    else:
        from transformers import AutoTokenizer

        from workbench.model.lora import load_adapter

        base, _ = load_model(base_cfg, with_mtp=with_mtp)
        model, tokenizer = load_adapter(base, str(path)), AutoTokenizer.from_pretrained(str(path))
    load_router_bias(model, path)
    return model, tokenizer
