"""LoRA targets on DeepSeek-V3: every preset's adapters counted against the model's structure."""

import pytest

from workbench.recipe.schema import PeftConfig
from workbench.errors import WorkbenchError
from workbench.model.lora import wrap


@pytest.fixture
def fresh(tiny):
    """A private copy of the tiny model (wrapping mutates it)."""
    import copy

    return copy.deepcopy(tiny[0])


def _structure(model):
    config = model.config
    n_moe = config.num_hidden_layers - config.first_k_dense_replace
    return {
        "attention": config.num_hidden_layers * 5,  # q_a, q_b, kv_a_with_mqa, kv_b, o
        "dense_mlp": config.first_k_dense_replace * 3,  # gate, up, down of each dense layer
        "shared_experts": n_moe * 3,
        "routed_experts": n_moe * 2,  # the 3D gate_up_proj and down_proj of each MoE layer
        "router": n_moe,
    }


@pytest.mark.parametrize("preset", ["attention", "dense_mlp", "shared_experts", "routed_experts", "router"])
def test_each_preset_adapts_exactly_its_modules(fresh, preset):
    model, report = wrap(fresh, PeftConfig(type="lora", r=4, target_modules=(preset,)))
    assert report == {preset: _structure(fresh)[preset]}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_all_adapts_everything(fresh):
    _, report = wrap(fresh, PeftConfig(type="lora", r=4, target_modules=("all",)))
    assert report == _structure(fresh)


def test_peft_silent_skip_of_dense_and_shared_mlp_is_prevented(fresh):
    """Stock PEFT turns gate/up/down_proj into routed-expert LoRA on deepseek_v3, leaving the dense MLP and
    shared experts bare. If the workaround stops working this test sees routed_experts instead."""
    model, report = wrap(fresh, PeftConfig(type="lora", r=4, target_modules=("gate_proj", "up_proj", "down_proj")))
    structure = _structure(fresh)
    assert report == {"dense_mlp": structure["dense_mlp"], "shared_experts": structure["shared_experts"]}
    layer0 = model.base_model.model.model.layers[0].mlp
    assert all(hasattr(getattr(layer0, n), "lora_A") for n in ("gate_proj", "up_proj", "down_proj"))


def test_stock_peft_still_rewrites_the_targets(fresh):
    """Documents why the workaround exists; when PEFT stops rewriting, this fails and the workaround can go."""
    from peft import LoraConfig, get_peft_model

    from workbench.moe.targets import classify_adapters

    model = get_peft_model(fresh, LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"]))
    assert "dense_mlp" not in classify_adapters(model)


def test_guide_names_map_with_a_notice(fresh, capsys):
    _, report = wrap(fresh, PeftConfig(type="lora", r=4, target_modules=("q_proj", "v_proj")))
    assert report == {"attention": fresh.config.num_hidden_layers * 2}  # q_b_proj and kv_b_proj per layer
    out = capsys.readouterr().out
    assert "q_proj -> q_b_proj" in out and "v_proj -> kv_b_proj" in out


def test_unknown_target_names_itself(fresh):
    from pydantic import ValidationError

    from workbench.moe.targets import resolve_targets

    with pytest.raises(ValidationError, match="unknown target 'c_attn'"):  # the recipe schema refuses it first
        PeftConfig(type="lora", target_modules=("c_attn",))
    with pytest.raises(WorkbenchError, match="peft.target_modules: 'c_attn' is not a DeepSeek-V3 target"):
        resolve_targets(fresh, ["c_attn"])
