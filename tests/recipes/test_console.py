"""What a person sees: `-v` brings the library warnings back (the full recipe's short log is checked by
test_legal_recipe.py); runs are listed and shown.

    .venv/bin/python -m pytest -q tests/recipes/test_console.py
"""


def test_verbose_shows_the_library_warnings_again(finetune_cli, warning_marks, tmp_path):
    quiet = finetune_cli(tmp_path / "q", "train.max_steps=2", "eval.suite=null", "data.max_rows=16")
    loud = finetune_cli(tmp_path / "v", "train.max_steps=2", "eval.suite=null", "data.max_rows=16", flags=["-v"])
    assert quiet.returncode == loud.returncode == 0, loud.stderr[-3000:]
    assert not any(mark in quiet.stderr for mark in warning_marks)
    assert any(mark in loud.stderr for mark in warning_marks), loud.stderr[-2000:]
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
