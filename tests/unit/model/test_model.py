"""The embedded model: a real DeepSeek-V3 layout, deterministic, cached, with a chat-aware tokenizer."""

import pytest
import torch

from workbench.recipe.schema import ModelConfig
from workbench.errors import WorkbenchError
from workbench.model.load import load_model
from workbench.model.presets import preset_dir


def test_tiny_preset_is_a_real_deepseek_v3(tiny):
    model, _ = tiny
    config = model.config
    assert type(model).__name__ == "DeepseekV3ForCausalLM"
    assert config.q_lora_rank and config.kv_lora_rank  # MLA with low-rank q and kv
    assert config.n_shared_experts == 1 and config.n_routed_experts >= 8 and config.num_experts_per_tok == 2
    assert config.n_group > 1 and config.topk_group < config.n_group  # group-limited routing
    assert config.first_k_dense_replace == 1 and config.num_nextn_predict_layers == 0
    n_params = sum(p.numel() for p in model.parameters())
    assert 7e6 < n_params < 14e6
    dense, moe = model.model.layers[0].mlp, model.model.layers[1].mlp
    assert type(dense).__name__ == "DeepseekV3MLP" and type(moe).__name__ == "DeepseekV3MoE"
    assert moe.experts.gate_up_proj.shape[0] == config.n_routed_experts


def test_preset_is_cached_and_deterministic(tiny):
    model, _ = tiny
    assert preset_dir("deepseek-v3-tiny", 0) == preset_dir("deepseek-v3-tiny", 0)
    again, _ = load_model(ModelConfig())
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name
    other_seed = preset_dir("deepseek-v3-tiny", 1)
    assert other_seed != preset_dir("deepseek-v3-tiny", 0)


def test_chat_template_marks_only_assistant_tokens(tiny):
    _, tokenizer = tiny
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a tort?"},
                {"role": "assistant", "content": "A civil wrong."}]
    out = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    learned = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    assert learned == "A civil wrong." + tokenizer.eos_token
    assert ids[0] == tokenizer.bos_token_id and tokenizer.pad_token_id not in ids
    prompt = tokenizer.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<｜Assistant｜>")
    text = "Indemnification clauses allocate risk."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("name", ["no-such-org/no-such-model", "not a model"])
def test_unknown_model_offline_fails_in_one_line(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match="neither a preset .* nor a local directory"):
        load_model(ModelConfig(name=name))


def test_local_directory_loads_through_the_same_path(tiny):
    model, _ = load_model(ModelConfig(name=str(preset_dir("deepseek-v3-tiny", 0))))
    assert torch.equal(model.lm_head.weight, tiny[0].lm_head.weight)
