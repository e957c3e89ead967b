"""GRPO as a recipe: TRL's trainer with the workbench's rewards, routing replay and telemetry, the held-out reward
measured before and after, the router aux loss off, and bad GRPO data or rewards stopped before any run opens."""

import json

import pytest
from support import history, killed_after

from workbench.recipe.load import load_recipe
from workbench.errors import WorkbenchError
from workbench.train.plan import make_plan

# from the preset (no SFT run needed), few prompts, short completions
QUICK = ["model.from_run=null", "model.name=deepseek-v3-tiny", "train.max_steps=3", "train.batch_size=8",
         "method.generations=4", "method.max_new_tokens=8", "data.max_rows=16", "train.logging_steps=1",
         "train.save_steps=100"]


def test_grpo_logs_rewards_agreement_and_the_held_out_reward(train_recipe, tmp_path):
    rows = [json.loads(line) for line in open("data/legal-calc/heldout.jsonl")][:6]
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run, client = train_recipe("legal-grpo", QUICK + [f"data.eval={heldout}",
                                                      "method.rewards={math_answer: 1.0, format: 0.5}",
                                                      "method.format_pattern=.*#### \\d+",
                                                      "train.grad_accum=2", "method.iterations=2",
                                                      "train.gradient_checkpointing=true", "method.beta=0.04"],
                             out="grpo")
    run_id = run.tracker.run_id
    assert run.trainer.router_aux_loss_coef == 0.0 and not run.trainer.aux_loss_enabled
    assert run.trainer.ref_model is not None and history(client, run_id, "train/kl")  # a full fine-tune's reference
    logged = len(history(client, run_id, "train/reward"))  # one per logged step
    assert logged >= 2
    assert len(history(client, run_id, "train/rewards/math_answer/mean")) == logged
    assert len(history(client, run_id, "train/rewards/format/mean")) == logged
    assert len(history(client, run_id, "train/reward_std")) == logged
    # replay on (the recipe's moe.routing_replay: rollout), with 2 micro-batches and 2 updates per rollout
    applied = history(client, run_id, "moe/replay_applied")  # the expert modules received the rollout's experts
    assert len(applied) >= logged and set(applied) == {1.0}
    assert set(history(client, run_id, "moe/replay_skipped")) == {0.0}  # every rollout's layout fitted its batch
    router = history(client, run_id, "moe/router_agreement")  # the router's own choice: not forced by the replay
    assert len(router) == len(applied) and all(0.0 < a <= 1.0 for a in router)
    # step 1 scores its rollout with the weights that generated it: the router's own choice is the rollout's
    # exactly, which only holds if each row's layout travelled with its row through TRL's shuffle and split
    assert router[0] == 1.0
    assert all(history(client, run_id, f"moe/layer{layer}/router_agreement") for layer in (1, 2, 3))
    before, after = history(client, run_id, "heldout/reward")
    gain, = history(client, run_id, "heldout/reward_gain")
    assert gain == pytest.approx(after - before)
    assert history(client, run_id, "heldout/reward_gain_se")
    completions = (run.output_dir / "completions.jsonl").read_text().splitlines()
    sample = json.loads(completions[0])
    assert set(sample["rewards"]) == {"math_answer", "format"} and sample["completion"].startswith("assistant: ")
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"completions.jsonl", "heldout_completions.jsonl"} <= artifacts
    scored = [json.loads(line) for line in (run.output_dir / "heldout_completions.jsonl").read_text().splitlines()]
    assert [row["answer"] for row in scored] == [row["answer"] for row in rows]
    # sample answers: every held-out prompt (6 < eval.samples), each answer scored by the run's rewards
    from workbench.evaluate import rewards
    from workbench.evaluate.reward_report import score

    samples = [json.loads(line) for line in (run.output_dir / "samples.jsonl").read_text().splitlines()]
    assert "samples.jsonl" in artifacts and [s["index"] for s in samples] == list(range(6))
    assert [s["reference"] for s in samples] == [str(row["answer"]) for row in rows]
    funcs, weights = rewards.build({"math_answer": 1.0, "format": 0.5}, format_pattern=".*#### \\d+")
    for s, row in zip(samples, rows):
        assert s["score"] == "reward"
        for when in ("before", "after"):  # the score belongs to that very answer
            assert s[f"{when}_score"] == pytest.approx(score(funcs, weights, [row], [s[when]])["total"][0])


def test_without_replay_the_agreement_is_measured_not_forced(train_recipe):
    run, client = train_recipe("legal-grpo", QUICK + ["moe.routing_replay=none", "data.eval=null",
                                                      "data.eval_fraction=0"], out="plain")
    run_id = run.tracker.run_id
    router = history(client, run_id, "moe/router_agreement")
    # one update per rollout, scored by the weights that generated it: nothing forces the experts, and the router
    # picks the recorded ones at every step (a layout one position off reads far below 1)
    assert len(router) >= 2 and set(router) == {1.0}
    assert set(history(client, run_id, "moe/replay_skipped")) == {0.0}
    assert not history(client, run_id, "moe/replay_applied")  # nothing replayed, nothing claimed
    assert not history(client, run_id, "heldout/reward")  # no held-out rows: nothing measured, nothing claimed


def test_the_mixtral_aux_loss_of_trl_stays_off_on_v3(tiny, tmp_path):
    """A config that declares a router aux coefficient would switch TRL's Mixtral-style loss on; the workbench's
    GRPO keeps it at 0 (the test shows plain TRL would turn it on for the same model)."""
    import copy

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from workbench.data.load import Splits
    from workbench.train.methods import grpo

    model, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    model.config.router_aux_loss_coef, model.config.output_router_logits = 0.01, False
    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "How many judges?"}], "answer": "3"}] * 4)
    from workbench.evaluate import rewards

    plain = GRPOTrainer(model=copy.deepcopy(model), reward_funcs=rewards.build({"math_answer": 1.0})[0], train_dataset=rows,
                        processing_class=tokenizer,
                        args=GRPOConfig(output_dir=str(tmp_path / "plain"), per_device_train_batch_size=4,
                                        num_generations=4, use_cpu=True, report_to="none"))
    recipe = load_recipe("legal-grpo", ["model.from_run=null", "train.batch_size=4", "method.generations=4"])
    trainer = grpo.build_trainer(recipe, model, tokenizer, Splits(rows, None, "x", "x"), str(tmp_path / "ours"), [],
                                 rewards=rewards.build(dict(recipe.method.rewards)))
    assert trainer.router_aux_loss_coef == 0.0 and not trainer.aux_loss_enabled
    assert plain.router_aux_loss_coef == 0.01 and plain.aux_loss_enabled  # what TRL alone would do


@pytest.mark.parametrize("replay", ["rollout", "none"])
def test_a_recording_that_does_not_fit_its_batch_is_never_dropped_silently(tiny, tmp_path, replay):
    """A rollout whose recorded experts are one token short of its batch: replay stops the run in one line naming
    moe.routing_replay; a run that only measures agreement logs it as moe/replay_skipped, with no agreement."""
    import copy

    from datasets import Dataset

    from workbench.data.load import Splits
    from workbench.evaluate import rewards
    from workbench.train.methods import grpo

    rows = Dataset.from_list([{"prompt": [{"role": "user", "content": "How many judges?"}], "answer": "3"}] * 4)
    recipe = load_recipe("legal-grpo", ["model.from_run=null", "train.batch_size=4", "method.generations=4",
                                        "method.max_new_tokens=4", "train.max_steps=1", "train.logging_steps=1",
                                        "train.save_steps=100", f"moe.routing_replay={replay}"])
    trainer = grpo.build_trainer(recipe, copy.deepcopy(tiny[0]), tiny[1], Splits(rows, None, "x", "x"),
                                 str(tmp_path), [], rewards=rewards.build(dict(recipe.method.rewards)))
    recorded = trainer.routing.layout
    trainer.routing.layout = lambda *args, **kwargs: recorded(*args, **kwargs)[:, :-1]
    logged = []
    trainer.raw_metrics = lambda metrics, step: logged.append(metrics)
    if replay == "rollout":
        with pytest.raises(WorkbenchError) as err:
            trainer.train()
        assert str(err.value).startswith("moe.routing_replay: the recorded layout covers (4, ")
        assert "\n" not in str(err.value)
    else:
        trainer.train()
        assert [m["moe/replay_skipped"] for m in logged] == [1.0]  # step 1's log; the end-of-run log has none
        assert not any("moe/router_agreement" in m for m in logged)  # not measured, and not reported as measured


def _write(tmp_path, rows, name="rows.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("row, rewards, expected", [
    ({"prompt": "How many judges?"}, "{math_answer: 1}", "row 2: answer: missing (reward math_answer reads it)"),
    ({"prompt": "How many judges?", "answer": "forty"}, "{math_answer: 1}", "row 2: answer: not a number: 'forty'"),
    ({"prompt": "Pick one.", "answer": "AB"}, "{choice: 1}", "row 2: answer: must be one letter A-Z"),
    ({"prompt": "Write f.", "tests": ""}, "{code_tests: 1}", "row 2: tests: must be non-empty text"),
    ({"prompt": [{"role": "assistant", "content": "hi"}], "answer": "3"}, "{math_answer: 1}",
     "row 2: prompt: the last turn must not be the assistant's"),
    ({"answer": "3"}, "{math_answer: 1}", "row 2: prompt: missing"),
    ({"prompt": "How many?", "answer": 3}, "{math_answer: 1}", "row 2: answer: a number here but text in row 1"),
    ({"prompt": [{"role": "user", "content": "How many?"}], "answer": "3"}, "{math_answer: 1}",
     "row 2: prompt: a list here but text in row 1"),
    ({"prompt": "How many?", "answer": "3", "kind": "x"}, "{math_answer: 1}",
     "row 2: has kind which row 1 lacks (every row needs the same fields)"),
    ({"prompt": "How many?", "answer": "3", "completions": "x"}, "{math_answer: 1}",
     "row 2: completions: a field name TRL uses for its own reward arguments"),
])
def test_bad_grpo_rows_name_the_file_row_and_field(tmp_path, isolated, row, rewards, expected):
    good = ({"prompt": "Write f.", "tests": "assert True"} if "code_tests" in rewards else
            {"prompt": "How many judges sat?", "answer": "B" if "choice" in rewards else "3"})
    path = _write(tmp_path, [good, row])
    recipe = load_recipe("legal-grpo", isolated["overrides"] + ["model.from_run=null", f"data.train={path}",
                                                                "data.eval=null", f"method.rewards={rewards}"])
    with pytest.raises(WorkbenchError) as err:
        make_plan(recipe)
    assert f"{path}: {expected}" in str(err.value) and "\n" not in str(err.value)


def test_a_user_reward_whose_arguments_do_not_fit_stops_before_the_run(tmp_path, isolated, capsys):
    (tmp_path / "mine.py").write_text("def score(prompts, completions, tests):\n    return [0.0 for _ in completions]\n"
                                      "def picky(completions, trainer_state, **kwargs):\n"
                                      "    return [1 / (len(c[0]['content']) - 1) for c in completions]\n")
    recipe = load_recipe("legal-grpo", isolated["overrides"] + ["model.from_run=null",
                                                                f"method.rewards={{{tmp_path}/mine.py:score: 1}}"])
    with pytest.raises(WorkbenchError, match=r"mine.py:score: calling score failed: TypeError: .*'tests'"):
        make_plan(recipe)  # the rows have no `tests` field: it would fail at the first step
    recipe = load_recipe("legal-grpo", isolated["overrides"] + ["model.from_run=null",
                                                                f"method.rewards={{{tmp_path}/mine.py:picky: 1}}"])
    make_plan(recipe)  # it fails on the placeholder only: a notice, not a refusal
    assert "calling picky failed: ZeroDivisionError" in capsys.readouterr().out


def test_a_missing_user_reward_stops_before_the_run(tmp_path, isolated):
    recipe = load_recipe("legal-grpo", isolated["overrides"] + ["model.from_run=null",
                                                                "method.rewards={rewards/nowhere.py:score: 1}"])
    with pytest.raises(WorkbenchError, match=r"method.rewards.rewards/nowhere.py:score: .*not found"):
        make_plan(recipe)


def test_a_lora_grpo_run_killed_after_a_checkpoint_resumes_and_reports_its_gain(isolated, tmp_path):
    """LoRA on attention and the routed experts, replay on; killed after its step-2 checkpoint, resumed: the
    adapter trains on, the held-out start measured before the crash is the one the gain is computed from."""
    import mlflow

    from workbench.train.build import build

    rows = [json.loads(line) for line in open("data/legal-calc/heldout.jsonl")][:4]
    heldout = _write(tmp_path, rows, "heldout.jsonl")
    recipe = load_recipe("legal-grpo", isolated["overrides"] + QUICK + [
        f"data.eval={heldout}", "train.max_steps=4", "train.save_steps=2", "peft.type=lora",
        "peft.target_modules=[q_b_proj, o_proj, routed_experts]"])
    first = killed_after(recipe, step=3)  # after its step-2 checkpoint
    start = json.loads((isolated["tmp"] / "out" / "heldout_before.json").read_text())
    second = build(recipe, resume=True)
    assert second.resume_from.endswith("checkpoint-2")
    second.train()
    second.close()
    client = mlflow.MlflowClient(isolated["uri"])
    run_id = second.tracker.run_id
    assert run_id == first.tracker.run_id  # the same MLflow run continues
    after, = [m.value for m in client.get_metric_history(run_id, "heldout/reward") if m.step == 4]
    gain, = history(client, run_id, "heldout/reward_gain")
    assert gain == pytest.approx(after - sum(start["scores"]["total"]) / len(rows))
    assert (isolated["tmp"] / "out" / "final" / "adapter_model.safetensors").is_file()
    adapted = client.get_run(run_id).data.params
    assert any(key.startswith("peft.adapted.") for key in adapted)
    assert set(history(client, run_id, "moe/replay_applied")) == {1.0}
