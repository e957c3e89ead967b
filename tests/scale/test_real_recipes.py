"""The GPU-node recipes validate here without weights: recipe, DeepSpeed config, architecture and LoRA targets."""

import pytest

from workbench.scale import deepspeed as distributed
from workbench.recipe.load import load_recipe
from workbench.scale.estimate import architecture, meta_model
from workbench.model.lora import wrap
from workbench.moe.targets import expected_counts, resolve_targets

REAL = {  # model type, hidden size, GPUs
    "deepseek-v2-lite-legal": ("deepseek_v2", 2048, 8),
    "moonlight-legal": ("deepseek_v3", 2048, 8),
    "moonlight-legal-ep": ("deepseek_v3", 2048, 8),
    "deepseek-v3-legal": ("deepseek_v3", 7168, 8),
    "deepseek-v3-legal-ep": ("deepseek_v3", 7168, 32),
}


@pytest.mark.parametrize("name", REAL)
def test_real_recipe_validates_without_weights(name):
    recipe = load_recipe(name)
    model_type, hidden, gpus = REAL[name]
    assert recipe.train.deepspeed and recipe.train.precision == "bf16" and recipe.peft.type == "lora"

    config = distributed.resolved_config(recipe, hidden_size=hidden, world=gpus, model_type=model_type)
    distributed.validate(config)  # DeepSpeed's own parser
    assert config["bf16"]["enabled"] is True
    if recipe.train.expert_parallel > 1:
        assert config["zero_optimization"]["stage"] == 2
        assert config["expert_parallel"]["autoep_size"] == recipe.train.expert_parallel
        assert config["expert_parallel"]["preset_model"] == model_type
        assert gpus % recipe.train.expert_parallel == 0

    arch = architecture(recipe.model)
    assert arch.model_type == model_type and arch.hidden_size == hidden
    depth = arch.first_k_dense_replace + 1  # the dense layers and one MoE layer
    model = meta_model(arch, layers=depth)
    assert distributed.moe_block_classes(model)  # the ZeRO-3 leaf exists
    spec = resolve_targets(model, list(recipe.peft.target_modules))
    wrapped, adapted = wrap(model, recipe.peft)
    assert adapted == expected_counts(model, spec)  # every requested group, every layer
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) > 0
    frozen = [n for n, p in wrapped.named_parameters() if p.requires_grad and "lora_" not in n]
    assert frozen == []  # only adapters train on a real checkpoint
    if recipe.train.expert_parallel > 1:  # AutoEP rebuilds router and routed experts from plain weights
        assert not [n for n, p in wrapped.named_parameters() if p.requires_grad and (".mlp.experts." in n or ".mlp.gate." in n)]


def test_v2_lite_gets_its_own_query_projection():
    recipe = load_recipe("deepseek-v2-lite-legal")
    model = meta_model(architecture(recipe.model), layers=2)
    _, adapted = wrap(model, recipe.peft)
    assert adapted["attention"] == 2 * 4  # q_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj (no q_lora_rank)
