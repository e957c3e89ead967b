"""The models for `bench.py --gpu` and `make gpu-proof`: DeepSeek-V3 layouts (random init), built once and cached.

    .venv/bin/python benchmarks/gpu.py          # print the configs' parameter counts (meta device: no GPU needed)
    .venv/bin/python benchmarks/bench.py --gpu  # the benchmark on the ~1B model (needs CUDA)
    make gpu-proof                              # benchmarks/gpu_proof.py: every method on the ~190M proof models

UNTESTED on a GPU: only the parameter counts below have been checked (on the meta device), and the save path on
the CPU (`save_random_model(..., device="cpu")`). The models use the embedded tiny preset's tokenizer (vocab
8192), so the legal data tokenises exactly as in the CPU benchmark.
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


def deepseek_v3_proof():
    """The proof's model (make gpu-proof): hidden 1024, 8 layers (1 dense), 16 routed experts top-4 in 4 groups
    (top-2 groups), 1 shared, MLA; ~190M parameters: big enough to keep a GPU busy at batch 8 x 256 tokens, small
    enough that eight methods, each saving its weights, fit the proof's few minutes."""
    config = deepseek_v3_1b()
    config.update(dict(hidden_size=1024, intermediate_size=2816, moe_intermediate_size=384, num_hidden_layers=8,
                       num_attention_heads=16, num_key_value_heads=16, q_lora_rank=384, kv_lora_rank=256,
                       n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=2))
    return config


def deepseek_v3_proof_mtp():
    """The proof's model with one multi-token-prediction layer (DeepSeek's layout), for MTP training and drafts."""
    config = deepseek_v3_proof()
    config.num_mtp_layers = 1
    return config


def deepseek_v3_proof_student():
    """The proof's distillation student: the same width and vocabulary, 4 layers, 8 routed experts (top-2 of 4)."""
    config = deepseek_v3_proof()
    config.update(dict(num_hidden_layers=4, n_routed_experts=8, num_experts_per_tok=2, n_group=4, topk_group=2))
    return config


CONFIGS = {"deepseek_v3_1b": deepseek_v3_1b, "deepseek_v3_proof": deepseek_v3_proof,
           "deepseek_v3_proof_mtp": deepseek_v3_proof_mtp, "deepseek_v3_proof_student": deepseek_v3_proof_student}


def parameter_counts(config=None) -> dict:
    """Total and active parameters of a config (default: the ~1B one), counted on the meta device (no memory)."""
    import torch
    from transformers import DeepseekV3ForCausalLM

    from benchmarks.workloads import active_params

    with torch.device("meta"):
        model = DeepseekV3ForCausalLM(config or deepseek_v3_1b())
    return {"total": sum(p.numel() for p in model.parameters()), "active": active_params(model)}


def save_random_model(config, target, device: str = "cuda", dtype: str = "bfloat16") -> str:
    """Save a random-init model of `config` (seed 0) plus the tiny preset's tokenizer at `target` once; return it.
    Written to a `.partial` folder first, so an interrupted save is never taken for a model."""
    import os
    from pathlib import Path

    import torch
    from transformers import AutoTokenizer, DeepseekV3ForCausalLM

    from workbench.model.presets import preset_dir

    target = Path(target)
    if (target / "config.json").is_file():
        return str(target)
    torch.manual_seed(0)
    with torch.device(device):
        model = DeepseekV3ForCausalLM(config)
        if config.num_mtp_layers:  # saved at model.layers.<N> like DeepSeek's checkpoints, as the MTP preset does
            from workbench.model.mtp import attach

            attach(model, None, init="random")
    model = model.to(getattr(torch, dtype))
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    AutoTokenizer.from_pretrained(preset_dir("deepseek-v3-tiny", 0)).save_pretrained(partial)
    os.replace(partial, target)
    return str(target)


def gpu_model_dir() -> str:
    """Save the random-init bf16 ~1B model plus the tiny preset's tokenizer under the cache dir once; return the dir."""
    from workbench.paths import cache_dir

    return save_random_model(deepseek_v3_1b(), cache_dir() / "models" / "bench-deepseek-v3-1b-seed0")


if __name__ == "__main__":
    for name, build in CONFIGS.items():
        counts = parameter_counts(build())
        print(f"{name}: {counts['total'] / 1e6:,.0f}M parameters, {counts['active'] / 1e6:.0f}M active per token "
              "(embedding excluded)")
