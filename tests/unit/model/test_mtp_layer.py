"""The MTP layer (workbench.model.mtp): DeepSeek's checkpoint layout, the same computation as transformers' own MtpModel
(which `generate(use_mtp=True)` runs), and a loss on the answer tokens two ahead only."""

import pytest
import torch
from safetensors import safe_open

from workbench.model import mtp
from workbench.model import speculative
from workbench.train import mtp as mtp_training
from workbench.recipe.schema import ModelConfig
from workbench.model.load import _from_pretrained
from workbench.model.presets import preset_dir


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The MTP preset, saved again by save_pretrained (what a run's final/ and an export hold)."""
    model, tokenizer = _from_pretrained(str(preset_dir("deepseek-v3-tiny-mtp", 0)), ModelConfig(name="deepseek-v3-tiny-mtp"))
    folder = tmp_path_factory.mktemp("mtp-model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer, folder


def test_the_mtp_layer_is_saved_in_deepseeks_key_layout_and_reloads_bit_equal(saved):
    model, _, folder = saved
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        keys = {k for k in handle.keys() if k.startswith("model.layers.4.")}
    for name in ("eh_proj.weight", "enorm.weight", "hnorm.weight", "shared_head.norm.weight", "self_attn.q_a_proj.weight",
                 "mlp.gate.weight", "mlp.gate.e_score_correction_bias", "mlp.experts.7.down_proj.weight",
                 "mlp.shared_experts.up_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight"):
        assert f"model.layers.4.{name}" in keys, name
    assert not any(".mtp_block." in k or ".post_norm." in k for k in keys)  # not transformers' MtpModel names
    again, _ = _from_pretrained(str(folder), ModelConfig(name=str(folder)))
    assert again.config.num_mtp_layers == 1 and len(again.model.layers) == 5
    before, after = mtp.mtp_layers(model)[0].state_dict(), mtp.mtp_layers(again)[0].state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_the_training_forward_computes_what_transformers_mtp_model_drafts_with(saved):
    from transformers.modeling_layers import MtpModel

    _, _, folder = saved
    model, _ = _from_pretrained(str(folder), ModelConfig(name=str(folder)))  # save_pretrained left dtype as text
    model.eval()
    ids = torch.randint(3, 8000, (1, 14), generator=torch.Generator().manual_seed(0))
    capture = mtp_training.HiddenCapture(model)
    with torch.no_grad():
        out = model(input_ids=ids, output_hidden_states=True)
        hidden = capture.take()
        assert torch.equal(out.hidden_states[-1], hidden)  # what MTPCandidateGenerator hands the MTP layer
        ours = model.lm_head(mtp_training.mtp_forward(model, hidden, ids))
        with mtp._mtp_key_pattern(model), mtp.detached(model):  # transformers reads the saved files itself
            theirs_model = MtpModel.from_pretrained(model)
        positions = torch.arange(1, 14).unsqueeze(0)
        theirs = theirs_model.shared_head(theirs_model.forward_layer(0, hidden[:, :-1], positions, None, input_ids=ids[:, 1:]))
    capture.remove()
    assert (ours - theirs).abs().max().item() < 1e-5
    assert ours.shape == (1, 13, model.config.vocab_size)


def test_plain_transformers_finds_no_mtp_weights_in_a_checkpoint_that_is_not_61_layers_deep(saved):
    """transformers 5.23 declares DeepSeek-V3's MTP keys as model.layers.61.*: the README's one-line fix is needed."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_layers import MtpModel

    _, _, folder = saved
    plain = AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(RuntimeError, match="MtpModel weights are missing"):
        MtpModel.from_pretrained(plain)
    mtp.use_mtp_generation(plain)
    assert len(MtpModel.from_pretrained(plain).layers) == 1


def test_the_mtp_loss_counts_only_labelled_tokens_two_ahead_and_ignores_padding(saved):
    model, _, _ = saved
    model.eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 8000, (1, 12), generator=generator)
    labels = ids.clone()
    labels[0, :6] = -100  # the prompt
    capture = mtp_training.HiddenCapture(model)
    with torch.no_grad():
        model(input_ids=ids)
        hidden = capture.take()
        total, count, _ = mtp_training.mtp_loss(model, hidden, ids, labels)
        states = mtp_training.mtp_forward(model, hidden, ids)  # state j predicts token j + 2
        by_hand = sum(torch.nn.functional.cross_entropy(model.lm_head(states[0, j]), ids[0, j + 2])
                      for j in range(12 - 2) if labels[0, j + 2] != -100)
        assert count.item() == 6 and abs(total.item() - by_hand.item()) < 1e-4
        # the same row right-padded in a batch with a longer one: the same sum
        longer = torch.randint(3, 8000, (1, 16), generator=generator)
        batch = torch.full((2, 16), 2)
        batch[0, :12], batch[1] = ids[0], longer[0]
        mask = (torch.arange(16) < torch.tensor([[12], [16]])).long()
        batch_labels = torch.full((2, 16), -100)
        batch_labels[0, :12] = labels[0]
        model(input_ids=batch, attention_mask=mask)
        padded_total, padded_count, _ = mtp_training.mtp_loss(model, capture.take(), batch, batch_labels, mask)
    capture.remove()
    assert padded_count.item() == 6 and abs(padded_total.item() - total.item()) < 1e-3


def test_last_layer_init_copies_the_block_and_starts_eh_proj_as_an_average(saved):
    from workbench.model.load import load_model

    model, _ = load_model(ModelConfig(name="deepseek-v3-tiny"))
    assert mtp.attach(model, None, init="last_layer") == "last_layer"
    layer, last = mtp.mtp_layers(model)[0], model.model.layers[3]
    assert torch.equal(layer.self_attn.q_a_proj.weight, last.self_attn.q_a_proj.weight)
    assert torch.equal(layer.mlp.experts.gate_up_proj, last.mlp.experts.gate_up_proj)
    assert torch.equal(layer.shared_head.norm.weight, model.model.norm.weight)
    hidden = model.config.hidden_size
    assert torch.equal(layer.eh_proj.weight, torch.cat([torch.eye(hidden)] * 2, dim=1) / 2)
    assert model.config.num_mtp_layers == 1


def test_the_mtp_router_counts_real_tokens_only_in_the_routing_telemetry(saved):
    from workbench.moe.routing import RoutingRecorder

    model, _, _ = saved
    model.eval()
    recorder = RoutingRecorder(model)
    assert recorder.layers == [1, 2, 3, 4]  # the MTP layer's router is the fifth layer's
    batch = torch.randint(3, 8000, (2, 10), generator=torch.Generator().manual_seed(2))
    mask = (torch.arange(10) < torch.tensor([[6], [10]])).long()  # 6 + 10 real tokens, right-padded
    capture = mtp_training.HiddenCapture(model)
    with torch.no_grad():
        model(input_ids=batch, attention_mask=mask)
        mtp_training.mtp_forward(model, capture.take(), batch, mask)
    capture.remove()
    recorder.remove()
    tokens = recorder.take("eval").tokens
    assert tokens.tolist() == [16, 16, 16, 5 + 9]  # the MTP layer sees positions 1..T-1: 5 + 9 of them real


def test_speculative_decoding_runs_in_bfloat16_as_on_a_gpu():
    from workbench.model.load import load_model

    model, tokenizer = load_model(ModelConfig(name="deepseek-v3-tiny-mtp", dtype="bfloat16"))
    stats = speculative.speculative_stats(model, tokenizer, [[{"role": "user", "content": "What is a tort?"}]], max_new_tokens=4)
    assert stats["prompts"] == 1 and stats["identical"] == 1.0 and stats["tokens_per_forward"] >= 1.0
