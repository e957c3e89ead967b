"""Load the model and tokenizer a recipe names: a preset, a local directory, a hub id or another run.

    from workbench.model import load_model
    model, tokenizer = load_model(recipe.model)

Presets are small builder functions returning a real `DeepseekV3Config`; the embedded default
`deepseek-v3-tiny` (~10M parameters) is built once from a seed, saved under the cache dir and
reloaded with `from_pretrained`, so it takes the same path as any checkpoint on disk.
"""

import hashlib
import json
import os
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.paths import FINAL_MODEL_INFO, cache_dir, project_root


def deepseek_v3_tiny():
    """A real DeepSeek-V3 layout at toy size: MLA, 1 shared + 8 routed experts (top-2 of 2 groups)."""
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        vocab_size=8192,
        hidden_size=256,
        intermediate_size=768,  # dense layer 0 (first_k_dense_replace=1)
        moe_intermediate_size=192,
        num_hidden_layers=4,
        first_k_dense_replace=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        q_lora_rank=96,
        kv_lora_rank=64,
        qk_rope_head_dim=16,
        qk_nope_head_dim=32,
        v_head_dim=32,
        n_shared_experts=1,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        max_position_embeddings=2048,
        num_mtp_layers=0,  # multi-token prediction is only used by speculative decoding
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )


def deepseek_v3_tiny_student():
    """A distillation student for `deepseek-v3-tiny`: the same width, vocabulary and tokenizer, half the depth
    (1 dense + 1 MoE layer) and half the routed experts (4, top-2 of 2 groups): 5.7M parameters against 9.2M."""
    config = deepseek_v3_tiny()
    config.num_hidden_layers = 2
    config.n_routed_experts = 4
    config.n_group = 2
    config.topk_group = 1
    return config


def deepseek_v3_tiny_mtp():
    """`deepseek-v3-tiny` with one multi-token-prediction layer (as DeepSeek-V3 ships): the same main weights
    from the same seed, plus an MTP block (MoE) at `model.layers.4` in DeepSeek's checkpoint layout."""
    config = deepseek_v3_tiny()
    config.num_mtp_layers = 1
    return config


PRESETS = {"deepseek-v3-tiny": deepseek_v3_tiny, "deepseek-v3-tiny-student": deepseek_v3_tiny_student,
           "deepseek-v3-tiny-mtp": deepseek_v3_tiny_mtp}


def tokenizer_corpus() -> list[Path]:
    """The shipped legal training text the embedded tokenizer learns from (held-out test sets excluded). Only
    data/legal/: another data folder (data/vet/) would change the tokenizer, hence every legal recipe's numbers."""
    return sorted(p for p in (project_root() / "data" / "legal").rglob("*.jsonl") if not p.name.startswith("mc_"))


def preset_dir(name: str, seed: int) -> Path:
    """Build the preset once (weights from `seed`, tokenizer from the shipped corpus) and cache it."""
    config = PRESETS[name]()
    corpus = tokenizer_corpus()
    digest = hashlib.sha256(config.to_json_string().encode() + str(seed).encode())
    for path in corpus:
        digest.update(path.read_bytes())
    target = cache_dir() / "models" / f"{name}-seed{seed}-{digest.hexdigest()[:10]}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import DeepseekV3ForCausalLM

    from workbench.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(config.vocab_size, corpus, model_max_length=config.max_position_embeddings)
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(config)
    if config.num_mtp_layers:
        from workbench.mtp import attach

        attach(model, None, init="random")
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, target)  # atomic: a killed build never leaves a half-written preset
    return target


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

    from workbench.config import ModelConfig
    from workbench.files import read_text

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
        from workbench.lineage import run_output

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


def torch_dtype(dtype: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


def experts_implementation(choice: str) -> str | None:
    """`auto`: transformers' default on GPU; `eager` on CPU, where grouped_mm decodes ~5x slower."""
    import torch

    if choice != "auto":
        return choice
    return None if torch.cuda.is_available() else "eager"


def load_model(cfg, key: str = "model", with_mtp: bool = True):
    """(model, tokenizer) for a `ModelConfig`; `from_run` starts from another run's final weights. `key` names the
    recipe section in errors; the teacher's (key "teacher") needs no tokenizer of its own (None). `with_mtp`: a
    checkpoint's multi-token-prediction weights load as one more layer (workbench.mtp); otherwise they stay on disk."""
    if cfg.from_run:
        from workbench.lineage import run_output

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
        from workbench.mtp import expected_mtp_keys

        depth = getattr(read_config(source, cfg, key=key), "num_hidden_layers", None)
        with expected_mtp_keys(depth):  # a checkpoint's MTP keys are not the main model's: not reported as unexpected
            model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        raise WorkbenchError(f"{key}: cannot load '{cfg.name}': {str(exc).splitlines()[0]}") from None
    if with_mtp:
        from workbench.mtp import attach, is_deepseek_v3

        folder = local_checkpoint(source, cfg.revision)  # a hub id: its snapshot, downloaded by now
        if is_deepseek_v3(model) and _mtp_keys(folder):
            attach(model, folder, init="checkpoint")
    if tokenizer is not None and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _mtp_keys(source: str | None) -> list[str]:
    from workbench.mtp import checkpoint_mtp_keys

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

        from workbench.lora import load_adapter

        base, _ = load_model(base_cfg, with_mtp=with_mtp)
        model, tokenizer = load_adapter(base, str(path)), AutoTokenizer.from_pretrained(str(path))
    load_router_bias(model, path)
    return model, tokenizer
