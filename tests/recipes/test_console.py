"""What a person sees: `workbench finetune legal` with its output going to a file (as in CI) is a short, readable
log with no library warnings and a closing summary; `-v` brings the warnings back; runs are listed and shown.

    .venv/bin/python -m pytest -q tests/recipes/test_console.py
"""

import os
import subprocess
import sys

import pytest

from workbench.paths import project_root

WARNING_MARKS = ("Warning", "warnings.warn", "[WARNING]", "is deprecated", "aggregation is not", "kwarg is not of type",
                 "it/s]", "examples/s]")


def _finetune(tmp_path, *args, flags=()):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    tmp_path.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "workbench.cli", "finetune", "legal", *args,
                           f"track.tracking_uri=sqlite:///{tmp_path}/m.db", f"train.output_dir={tmp_path}/out", *flags],
                          capture_output=True, text=True, cwd=project_root(), env=env, timeout=1800)


@pytest.mark.slow
def test_the_legal_recipe_prints_a_short_log_without_library_noise_and_a_summary(tmp_path):
    result = _finetune(tmp_path)  # the recipe as shipped: 3 epochs, evals before and after
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) <= 40, result.stdout
    noise = [line for line in lines + result.stderr.splitlines() if any(mark in line for mark in WARNING_MARKS)]
    assert noise == [], noise
    out = result.stdout
    for expected in ("recipe", "trainable", "steps        165 (3 epochs of 55 steps of 8 rows)", "library log",
                     "step 0/165: eval loss", "Evaluating suite 'legal_chat' before training",
                     "Finished legal (sft)", "held-out loss 9.0", "legal_cloze_chat/acc_mutual_info_none",
                     "sign test p =", "routing: expert load max/mean", "make mlflow, then http://127.0.0.1:5000/#/"):
        assert expected in out, (expected, out)
    assert lines[-1].startswith("run_id=") and f"output_dir={tmp_path}/out" in lines[-1]
    log = (tmp_path / "out" / "workbench.log").read_text()
    assert "FutureWarning" in log or "WARNING" in log  # the warnings went to the run's log, not away


def test_verbose_shows_the_library_warnings_again(tmp_path):
    quiet = _finetune(tmp_path / "q", "train.max_steps=2", "eval.suite=null", "data.max_rows=16")
    loud = _finetune(tmp_path / "v", "train.max_steps=2", "eval.suite=null", "data.max_rows=16", flags=["-v"])
    assert quiet.returncode == loud.returncode == 0, loud.stderr[-3000:]
    assert not any(mark in quiet.stderr for mark in WARNING_MARKS)
    assert any(mark in loud.stderr for mark in WARNING_MARKS), loud.stderr[-2000:]
    assert quiet.stdout.count("\n") == loud.stdout.count("\n")  # the workbench's own lines are the same


def test_runs_lists_recent_runs_and_show_prints_one(train, isolated, monkeypatch, capsys):
    from workbench.cli import main

    first, _ = train("legal", ["train.max_steps=2", "train.eval_steps=2", "eval.suite=legal", "eval.limit=4"], out="a")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", isolated["uri"])
    capsys.readouterr()
    assert main(["runs", "legal"]) == 0
    table = capsys.readouterr().out
    assert first.tracker.run_id in table and "FINISHED" in table and "sft" in table
    assert "legal_mc/acc_none" in table  # the headline score, before -> after
    assert main(["show", first.tracker.run_id[:8]]) == 0
    shown = capsys.readouterr().out
    assert first.tracker.run_id in shown and "held-out loss" in shown and "legal_mc/acc_none" in shown
    assert main(["show", "no-such-thing"]) == 2
    assert "show: 'no-such-thing' is neither a run id" in capsys.readouterr().err
    assert main(["runs", "nothing-here"]) == 2
