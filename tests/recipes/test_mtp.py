"""Multi-token prediction as a recipe: the MTP head learns the token two ahead, the exported model speculates with
plain transformers and decodes exactly what greedy decoding does, a fine-tune without MTP keeps the layer as it was
(not dropped), LoRA reaches the MTP block and its router counts in the telemetry, and bad MTP recipes stop before
any run opens."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from support import FAST, history, killed_after

from workbench.model import mtp
from workbench.model import speculative
from workbench.recipe.load import load_recipe
from workbench.errors import WorkbenchError
from workbench.model.presets import preset_dir
from workbench.train.plan import make_plan


def _mtp_tensors(folder):
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        if file.name == "router_bias.safetensors":
            continue
        with safe_open(str(file), "pt") as handle:
            tensors.update({k: handle.get_tensor(k) for k in handle.keys() if k.startswith("model.layers.4.")})
    return tensors


def test_the_mtp_head_learns_and_the_export_speculates_exactly_with_plain_transformers(train_recipe, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.export.merge import export

    common = FAST + ["train.max_steps=30", "train.eval_steps=30", "eval.suite=null", "mtp.speculative_prompts=4",
                     "mtp.speculative_tokens=24"]
    run, client = train_recipe("legal-mtp", common, out="mtp")
    run_id = run.tracker.run_id
    accuracy = history(client, run_id, "mtp/heldout_accuracy")
    assert accuracy[0] < 0.01 and accuracy[-1] > 0.05, accuracy  # from a random MTP layer
    loss = history(client, run_id, "train/mtp/loss")
    assert loss[-1] < loss[0] - 1.0, loss
    assert history(client, run_id, "eval/mtp/accuracy")
    assert client.get_run(run_id).data.tags["mtp"] == "weight 0.3, from the checkpoint"
    final = run.output_dir / "final"
    assert "model.layers.4.eh_proj.weight" in _mtp_tensors(final)

    result = export(run_id, str(tmp_path / "export"))
    out = result.out_dir
    exported = _mtp_tensors(out)
    assert exported.keys() - _mtp_tensors(final).keys() == {"model.layers.4.embed_tokens.weight",
                                                             "model.layers.4.shared_head.head.weight"}  # DeepSeek's copies
    assert history(client, run_id, "export/mtp_max_abs_diff") == [0.0]
    plain = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    mtp.use_mtp_generation(plain)  # the one line (transformers expects DeepSeek-V3's 61 layers)
    prompts = [[{"role": "user", "content": q}] for q in ("What is a tort?", "Can a contract be oral?",
                                                           "What does a notary do?")]
    accepted = proposed = 0
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        greedy = plain.generate(**ids, max_new_tokens=24, do_sample=False)
        stats = {"forwards": 0, "proposed": 0, "accepted": 0}
        with speculative._count_drafts(stats):
            fast = plain.generate(**ids, max_new_tokens=24, do_sample=False, use_mtp=True)
        assert torch.equal(greedy, fast), prompt
        accepted, proposed = accepted + stats["accepted"], proposed + stats["proposed"]
    assert proposed > 0 and accepted > 0, (accepted, proposed)  # the trained MTP layer was loaded, not a random one

    # a second fine-tune without MTP: the layer is saved exactly as it came, the main model moves
    after, _ = train_recipe("vet-after-mtp", FAST + ["train.max_steps=3", "eval.suite=null", f"model.from_run={run_id}",
                                                      "mtp.speculative_prompts=2", "mtp.speculative_tokens=8"],
                            out="vet")
    kept, trained = _mtp_tensors(after.output_dir / "final"), _mtp_tensors(final)
    assert kept.keys() == trained.keys() and all(torch.equal(kept[k], trained[k]) for k in kept)
    assert history(client, after.tracker.run_id, "mtp/acceptance_rate")  # measured before and after


def test_lora_reaches_the_mtp_block_and_its_router_counts_in_the_telemetry(train_recipe):
    run, client = train_recipe("legal-mtp", FAST + ["peft.type=lora", "train.max_steps=4", "eval.suite=null",
                                                    "moe.telemetry_every=1", "mtp.speculative_prompts=0",
                                                    "peft.target_modules=[attention,routed_experts]"], out="lora")
    names = [n for n, m in run.trainer.model.named_modules() if ".layers.4." in n and hasattr(m, "lora_A")]
    assert any(".self_attn." in n for n in names) and any(".mlp.experts" in n for n in names), names
    moved = [n for n, p in run.trainer.model.named_parameters() if ".layers.4." in n and "lora_B" in n and p.abs().sum() > 0]
    assert moved, "the MTP block's adapters never trained"
    assert history(client, run.tracker.run_id, "moe/layer4/max_over_mean")

    # a full fine-tune from this LoRA run without MTP keeps the LoRA run's MTP layer, adapters merged
    from workbench.model.load import load_final

    merged, _ = load_final(run.output_dir / "final")
    expected = {f"model.layers.4.{k}": v for k, v in mtp.mtp_layers(merged)[0].state_dict().items()}
    after, _ = train_recipe("vet-after-mtp", FAST + ["train.max_steps=2", f"model.from_run={run.tracker.run_id}",
                                                      "mtp.report=never"], out="full-after-lora")
    kept = _mtp_tensors(after.output_dir / "final")
    assert torch.equal(kept["model.layers.4.self_attn.o_proj.weight"], expected["model.layers.4.self_attn.o_proj.weight"])
    assert torch.equal(kept["model.layers.4.mlp.experts.5.down_proj.weight"], expected["model.layers.4.mlp.experts.down_proj"][5])
    preset = _mtp_tensors(Path(str(preset_dir("deepseek-v3-tiny-mtp", 0))))
    assert not torch.equal(kept["model.layers.4.self_attn.o_proj.weight"], preset["model.layers.4.self_attn.o_proj.weight"])


@pytest.mark.parametrize("overrides, message", [
    (["model.name=deepseek-v3-tiny", "mtp.init=checkpoint"], r"^mtp\.init: checkpoint, but .* holds no MTP weights"),
    (["model.name=deepseek-v3-tiny", "peft.type=lora", "mtp.init=auto"], r"^mtp\.enabled: with LoRA the MTP layer's own weights"),
    (["peft.type=lora", "mtp.init=last_layer"], r"^mtp\.init: last_layer builds the MTP layer in memory"),
    (["model.name=deepseek-v3-tiny-student", "mtp.init=last_layer", "peft.type=none"], None),
])
def test_mtp_recipes_that_cannot_work_stop_in_preflight(overrides, message):
    recipe = load_recipe("legal-mtp", ["eval.suite=null"] + overrides)
    if message is None:
        make_plan(recipe)  # a model without MTP weights and a layer built from its last one: fine
        return
    with pytest.raises(WorkbenchError, match=message):
        make_plan(recipe)


def test_an_mtp_run_killed_after_a_checkpoint_resumes_with_its_trained_mtp_layer(isolated):
    from workbench.train.build import build

    recipe = load_recipe("legal-mtp", FAST + isolated["overrides"] + [
        "train.max_steps=4", "train.save_steps=2", "mtp.speculative_prompts=0", "moe.telemetry=false"])
    killed_after(recipe, step=3)  # after its step-2 checkpoint
    saved = _mtp_tensors(isolated["tmp"] / "out" / "checkpoint-2")
    second = build(recipe, resume=True)
    loaded = {}
    original = second.trainer._load_from_checkpoint

    def spy(checkpoint, model=None):
        original(checkpoint, model)
        lm = mtp.causal_lm(second.trainer.model)
        loaded.update({f"model.layers.4.{k}": v.clone() for k, v in mtp.mtp_layers(lm)[0].state_dict().items()})

    second.trainer._load_from_checkpoint = spy
    second.train()
    second.close()
    # the checkpoint's MTP weights came back (per-expert keys fused again), not the preset's
    fused = {k: v for k, v in loaded.items() if ".experts." not in k}
    assert fused and all(torch.equal(v, saved[k]) for k, v in fused.items())
    assert torch.equal(loaded["model.layers.4.mlp.experts.down_proj"][3], saved["model.layers.4.mlp.experts.3.down_proj.weight"])
    preset = _mtp_tensors(Path(str(preset_dir("deepseek-v3-tiny-mtp", 0))))
    assert not torch.equal(saved["model.layers.4.eh_proj.weight"], preset["model.layers.4.eh_proj.weight"])
