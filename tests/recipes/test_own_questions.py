"""Own questions end to end: the generated tasks score exactly as lm-eval's own CLI scores them, and the vet recipe
carries base and tuned scores on its own questions, with the paired sign test, on its MLflow run.

    .venv/bin/python -m pytest -q tests/recipes/test_own_questions.py

The tiny preset has random weights, so most answers are wrong: the test compares every sample's raw model output
(per-choice log-likelihoods, generated text) as well as the scores, which is what makes equality meaningful.
"""

import json
import os
import subprocess
import sys

from workbench.evaluate import tasks as eval_tasks
from workbench.evaluate.tasks import task_dir
from workbench.evaluate.harness import flat_scores, run_suite
from workbench.model.presets import preset_dir

MC_ROWS = [
    {"question": "Which food is toxic to dogs?", "choices": ["Chocolate", "Carrots", "Rice", "Apples"], "answer": 0},
    {"question": "Which flower harms cats?", "choices": ["Roses", "Lilies"], "answer": "B"},  # a letter, 2 choices
    {"question": "What spreads heartworm?", "choices": ["Fleas", "Mosquitoes", "Ticks"], "answer": 1},
]
DEV_ROWS = [{"question": "What sound does a cat make?", "choices": ["Meow", "Woof"], "answer": 0}]
QA_ROWS = [{"question": "Which sweetener in gum harms dogs?", "answer": "Xylitol"},
           {"question": "What spreads heartworm?", "answer": "the mosquito"}]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _lm_eval_cli(tasks: list[str], folder, out) -> tuple[dict, dict]:
    # The workbench loads the model with eager experts on CPU (workbench.model.device.experts_implementation); the same
    # kernel here, or grouped_mm's other summation order moves a log-likelihood in its 7th digit now and then.
    model_args = f"pretrained={preset_dir('deepseek-v3-tiny', 0)},dtype=float32,experts_implementation=eager"
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args", model_args, "--tasks", ",".join(tasks),
           "--include_path", str(folder), "--batch_size", "8", "--output_path", str(out), "--log_samples"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = {p.name.split("samples_", 1)[1].rsplit("_", 1)[0]: [json.loads(line) for line in p.read_text().splitlines()]
               for p in out.rglob("samples_*.jsonl")}
    return results, samples


def _outputs(rows: list[dict]) -> list:
    """Each sample's raw and filtered output, at the CLI's precision (its sample files hold str() of each value)."""
    text = lambda v: [text(x) for x in v] if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    return sorted((r["doc_id"], text(r["resps"]), text(r["filtered_resps"])) for r in rows)


def test_own_questions_score_exactly_as_lm_eval_cli_scores_the_generated_tasks(tiny, tmp_path, monkeypatch):
    mc = _write(tmp_path / "clinic" / "questions.jsonl", MC_ROWS)
    _write(tmp_path / "clinic" / "questions_dev.jsonl", DEV_ROWS)
    qa = _write(tmp_path / "clinic" / "qa.jsonl", QA_ROWS)
    real = eval_tasks.load_suites()
    suites = {"mine": [{"questions": str(mc)}, {"questions": str(qa)}]}
    monkeypatch.setattr(eval_tasks, "load_suites", lambda: {"tasks": real["tasks"], "suites": suites})
    model, tokenizer = tiny

    ours = run_suite(model, tokenizer, "mine", batch_size=8)
    folder = task_dir([mc, qa])
    assert ours["results"]["workbench"]["task_dir"] == str(folder)
    cli_results, cli_samples = _lm_eval_cli(["clinic_questions", "clinic_qa"], folder, tmp_path / "cli")
    theirs = {**flat_scores(cli_results, "clinic_questions", "clinic_questions"),
              **flat_scores(cli_results, "clinic_qa", "clinic_qa")}
    assert set(ours["scores"]) == {"clinic_questions/acc_none", "clinic_questions/acc_norm_none",
                                   "clinic_questions/acc_mutual_info_none", "clinic_qa/exact_match_none"}
    assert ours["scores"] == theirs
    assert set(ours["samples"]) == set(cli_samples) == {"clinic_questions", "clinic_qa"}
    for task, rows in ours["samples"].items():
        assert _outputs(rows) == _outputs(cli_samples[task]), task
    # The file's rows as scored: the letter became index 1, the dev row is the one-shot example, PMI's reference
    # is the prompt without the question, and the answers to generate are the file's.
    mc_samples = sorted(ours["samples"]["clinic_questions"], key=lambda r: r["doc_id"])
    assert [r["target"] for r in mc_samples] == [0, 1, 1]
    contexts = [context for context, _ in mc_samples[1]["arguments"]]
    assert contexts[0] == "Question: What sound does a cat make?\nAnswer: Meow\n\nQuestion: Which flower harms cats?\nAnswer:"
    assert contexts[2:] == ["Question: \nAnswer:"] * 2
    assert sorted(r["target"] for r in ours["samples"]["clinic_qa"]) == ["Xylitol", "the mosquito"]


def test_vet_recipe_logs_base_and_tuned_scores_on_its_own_questions(train, tiny):
    """A few steps of recipes/vet.yaml with its own questions before and after training (limit 12)."""
    limit = 12
    run, client = train("vet", ["train.max_steps=3", "data.max_rows=24", f"eval.suite=vet_chat", f"eval.limit={limit}",
                                "track.log_model=false"])
    data = client.get_run(run.tracker.run_id).data
    task = "vet_questions_chat"
    for prefix in ("base", "eval"):
        scores = {k: v for k, v in data.metrics.items() if k.startswith(f"{prefix}/{task}/")}
        assert set(scores) == {f"{prefix}/{task}/{m}_none" for m in ("acc", "acc_norm", "acc_mutual_info")}
        assert all(v * limit == round(v * limit) for v in scores.values())  # right answers out of 12 questions
    # Before training the model is the preset itself (LoRA starts as a no-op): the same scores as scored directly.
    model, tokenizer = tiny
    direct = run_suite(model, tokenizer, "vet_chat", limit=limit)["scores"]
    assert {k: data.metrics[f"base/{k}"] for k in direct} == direct
    sign = {k.rsplit("/", 1)[1]: v for k, v in data.metrics.items() if k.startswith(f"compare/{task}/acc_mutual_info_none/")}
    assert set(sign) == {"improved", "worsened", "p_value"} and sign["improved"] + sign["worsened"] <= limit
    assert 0 < sign["p_value"] <= 1
    assert data.tags["eval.vet_chat.source"] == "local"
    artifacts = {a.path for a in client.list_artifacts(run.tracker.run_id, "eval/vet_chat")}
    assert f"eval/vet_chat/samples_{task}.jsonl" in artifacts
