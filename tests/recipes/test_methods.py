"""Each method end to end on the tiny model for a few steps: loss values, files written, MLflow contents."""

import json
import math

import mlflow
import pytest
from support import FAST, history, killed_after

from workbench.recipe.load import load_recipe
from workbench.train.build import build

@pytest.mark.parametrize("peft", ["lora", "none"])
def test_sft_lowers_eval_loss_and_records_the_run(train, peft):
    run, client = train("legal", [f"peft.type={peft}", "train.max_steps=8", "train.eval_steps=8"])
    eval_loss = history(client, run.tracker.run_id, "eval/loss")
    assert len(eval_loss) == 2 and eval_loss[-1] < eval_loss[0] - 0.5  # baseline at step 0, then after training
    assert len(history(client, run.tracker.run_id, "train/loss")) == 8
    assert len(history(client, run.tracker.run_id, "train/learning_rate")) == 8
    record = client.get_run(run.tracker.run_id)
    assert record.info.status == "FINISHED"
    assert record.data.tags["method"] == "sft" and record.data.tags["base_model"] == "deepseek-v3-tiny"
    assert record.data.params["train.max_steps"] == "8" and len(record.data.params["data.fingerprint"]) == 16
    assert record.data.params["version.trl"].startswith("1.")
    artifacts = {a.path for a in client.list_artifacts(run.tracker.run_id, "model")}
    weights = "model/adapter_model.safetensors" if peft == "lora" else "model/model.safetensors"
    assert weights in artifacts and "model/workbench_model.json" in artifacts
    assert "recipe.yaml" in {a.path for a in client.list_artifacts(run.tracker.run_id)}
    if peft == "lora":  # 5 MLA projections in each of the 4 layers
        assert record.data.params["peft.adapted.attention"] == "20"
        _assert_samples_are_the_models_answers(run, client)


def _greedy(model, tokenizer, prompts: list, tokens: int) -> list[str]:
    """Greedy answers computed here, one prompt at a time, to check the run's samples against."""
    import torch

    answers = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return answers


def _assert_samples_are_the_models_answers(run, client):
    """samples.jsonl: held-out prompts with their own answers, the base model's greedy answer before and the trained
    model's after, each recomputed here from the models on disk (not from the run's own generation)."""
    from workbench.data.load import load_dataset
    from workbench.model.load import load_model, load_unmerged
    from workbench.recipe.schema import ModelConfig

    path = client.download_artifacts(run.tracker.run_id, "samples.jsonl", str(run.output_dir / "downloaded"))
    samples = [json.loads(line) for line in open(path)]
    held_out = load_dataset(run.recipe.data, "sft").eval
    assert len(samples) == min(run.recipe.eval.samples, len(held_out)) >= 3
    prompts = []
    for sample in samples:
        messages = held_out[sample["index"]]["messages"]
        assert sample["reference"] == messages[-1]["content"]  # a held-out row, its own answer
        assert sample["prompt"] == "\n".join(f"{m['role']}: {m['content']}" for m in messages[:-1])
        prompts.append(messages[:-1])
    tokens = run.recipe.eval.sample_tokens
    base, tokenizer = load_model(ModelConfig())
    trained, _ = load_unmerged(run.output_dir / "final")
    assert [s["before"] for s in samples] == _greedy(base.eval(), tokenizer, prompts, tokens)
    assert [s["after"] for s in samples] == _greedy(trained.eval(), tokenizer, prompts, tokens)
    assert any(s["before"] != s["after"] for s in samples)  # training changed what the model says


def test_dpo_starts_at_ln2_and_moves(train):
    run, client = train("legal-dpo", ["model.from_run=null", "train.max_steps=6", "train.eval_steps=6",
                                                 "train.lr=5e-3"])
    losses = history(client, run.tracker.run_id, "train/loss")
    eval_loss = history(client, run.tracker.run_id, "eval/loss")
    assert eval_loss[0] == pytest.approx(math.log(2), abs=1e-4)  # zero-init adapter: policy == reference
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)
    assert eval_loss[-1] != pytest.approx(math.log(2), abs=1e-3)
    assert history(client, run.tracker.run_id, "eval/rewards/accuracies")


def test_kto_trains_on_unpaired_rows(train):
    run, client = train("legal-dpo", ["model.from_run=null", "method.name=kto", "train.max_steps=4",
                                                 "train.eval_steps=4", "data.train=data/legal/kto.jsonl"])
    assert len(history(client, run.tracker.run_id, "train/loss")) == 4
    assert (run.output_dir / "final" / "adapter_model.safetensors").is_file()


def test_orpo_lowers_its_loss(train):
    run, client = train("legal-dpo", ["model.from_run=null", "method.name=orpo", "train.max_steps=8",
                                                 "train.eval_steps=8", "train.lr=5e-3", "peft.modules_to_save=[lm_head]"])
    eval_loss = history(client, run.tracker.run_id, "eval/loss")
    assert eval_loss[-1] < eval_loss[0]


def test_dpo_continues_from_a_finished_sft_run(train):
    sft, client = train("legal", ["train.max_steps=2", "train.eval_steps=2"])
    dpo, _ = train("legal-dpo", ["train.max_steps=1", "train.eval_steps=1"], out="dpo")
    record = client.get_run(dpo.tracker.run_id)
    assert record.data.tags["base_run_id"] == sft.tracker.run_id
    note = json.loads((dpo.output_dir / "final" / "workbench_model.json").read_text())
    assert note["base_model"]["from_run"] == sft.tracker.run_id  # pinned, not "the newest legal run"


def test_resume_continues_the_same_run_from_its_checkpoint(isolated):
    recipe = load_recipe("legal", isolated["overrides"] + FAST + ["train.max_steps=4", "train.save_steps=2",
                                                                  "train.eval_steps=100"])
    first = killed_after(recipe, step=3)  # like a killed job, after the step-2 checkpoint
    assert (first.output_dir / "checkpoint-2").is_dir() and not (first.output_dir / "final").exists()
    second = build(recipe, resume=True)
    assert second.tracker.run_id == first.tracker.run_id and second.resume_from.endswith("checkpoint-2")
    second.train()
    second.close()
    assert second.trainer.state.global_step == 4
    client = mlflow.MlflowClient(isolated["uri"])
    assert client.get_run(first.tracker.run_id).info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(first.tracker.run_id, "train/loss")}
    assert steps == {1, 2, 3, 4}


def test_the_recipe_seed_fixes_the_adapter_weights(isolated):
    import torch

    def adapter(seed: int, out: str) -> dict:
        torch.manual_seed(len(out))  # whatever state the process is in, the recipe's seed decides
        recipe = load_recipe("legal", [*isolated["overrides"][:1], f"train.output_dir={isolated['tmp'] / out}",
                                       f"train.seed={seed}", "eval.suite=null"])
        run = build(recipe)
        try:
            return {n: p.detach().clone() for n, p in run.trainer.model.named_parameters() if "lora_A" in n}
        finally:
            run.close()

    first, again, other = adapter(7, "a"), adapter(7, "bb"), adapter(8, "ccc")
    assert len(first) == 20  # the 5 MLA projections in each of the 4 layers
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not any(torch.equal(first[n], other[n]) for n in first)
