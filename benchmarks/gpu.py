"""The model for `bench.py --gpu`: a ~1B-parameter DeepSeek-V3 layout (random init), built once and cached.

    .venv/bin/python benchmarks/gpu.py          # print the config's parameter counts (meta device: no GPU needed)
    .venv/bin/python benchmarks/bench.py --gpu  # the benchmark on it (needs CUDA)

UNTESTED on a GPU: only the parameter count below has been checked (on the meta device). The model uses the
embedded tiny preset's tokenizer (vocab 8192), so the legal data tokenises exactly as in the CPU benchmark.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def deepseek_v3_1b():
    """hidden 2048, 12 layers (1 dense), 64 routed experts top-6 in 8 groups (top-4 groups), 1 shared, MLA."""
    from transformers import DeepseekV3Config

    return DeepseekV3Config(
        vocab_size=8192,  # the embedded tokenizer's
        hidden_size=2048,
        intermediate_size=5632,  # the dense layer
        moe_intermediate_size=256,
        num_hidden_layers=12,
        first_k_dense_replace=1,
        num_attention_heads=16,
        num_key_value_heads=16,
        q_lora_rank=768,
        kv_lora_rank=256,
        qk_rope_head_dim=32,
        qk_nope_head_dim=64,
        v_head_dim=64,
        n_shared_experts=1,
        n_routed_experts=64,
        num_experts_per_tok=6,
        n_group=8,
        topk_group=4,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        max_position_embeddings=4096,
        num_mtp_layers=0,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
    )


def parameter_counts() -> dict:
    """Total and active parameters of the config, counted on the meta device (no memory, no GPU)."""
    import torch
    from transformers import DeepseekV3ForCausalLM

    from benchmarks.workloads import active_params

    with torch.device("meta"):
        model = DeepseekV3ForCausalLM(deepseek_v3_1b())
    return {"total": sum(p.numel() for p in model.parameters()), "active": active_params(model)}


def gpu_model_dir() -> str:
    """Save the random-init bf16 model plus the tiny preset's tokenizer under the cache dir once; return the dir."""
    import os

    import torch
    from transformers import AutoTokenizer, DeepseekV3ForCausalLM

    from workbench.model.presets import preset_dir
    from workbench.paths import cache_dir

    target = cache_dir() / "models" / "bench-deepseek-v3-1b-seed0"
    if (target / "config.json").is_file():
        return str(target)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = DeepseekV3ForCausalLM(deepseek_v3_1b()).to(torch.bfloat16)
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    AutoTokenizer.from_pretrained(preset_dir("deepseek-v3-tiny", 0)).save_pretrained(partial)
    os.replace(partial, target)
    return str(target)


if __name__ == "__main__":
    counts = parameter_counts()
    print(f"deepseek_v3_1b: {counts['total'] / 1e9:.2f}B parameters, {counts['active'] / 1e6:.0f}M active per token "
          "(embedding excluded)")
