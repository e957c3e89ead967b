"""Model presets: small builder functions returning real `DeepseekV3Config`s, built once and cached.

    from workbench.model.presets import PRESETS, preset_dir
    folder = preset_dir("deepseek-v3-tiny", seed=0)   # config, weights and tokenizer, built on first use

The embedded default `deepseek-v3-tiny` (~10M parameters) is built once from a seed (weights) and the shipped
legal text (tokenizer), saved under the cache dir and reloaded with `from_pretrained`, so it takes the same
path as any checkpoint on disk.
"""

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from workbench.paths import cache_dir, project_root


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

    from workbench.model.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(config.vocab_size, corpus, model_max_length=config.max_position_embeddings)
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(config)
    if config.num_mtp_layers:
        from workbench.model.mtp import attach

        attach(model, None, init="random")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))  # one per process
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        os.replace(partial, target)  # atomic: a killed build never leaves a half-written preset
    except OSError:  # another process built the same preset meanwhile (same seed, same bytes): keep theirs
        shutil.rmtree(partial, ignore_errors=True)
    return target
