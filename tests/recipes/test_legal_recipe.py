"""The legal recipe as shipped, run as a user runs it (`workbench finetune legal`, output to a file as in CI):
a short readable log with no library warnings and a closing summary, and a run that carries the held-out legal
scores before and after training with their sign test (the acceptance test of `make finetune RECIPE=legal`).

    .venv/bin/python -m pytest -q tests/recipes/test_legal_recipe.py     (about 3 min on 2 CPU cores)

Only where the run writes is overridden (its MLflow store and output folder): the full 3 epochs, the recipe's
seed and its eval section run as a user gets them, so the scores are real measurements.
"""

import pytest

SCORE = "legal_cloze_chat/acc_mutual_info_none"  # domain-conditional PMI; see evals/tasks/legal/legal_cloze.yaml
CHANCE = 0.25  # four choices
QUESTIONS = 149


@pytest.mark.slow
def test_the_legal_recipe_prints_a_short_log_and_scores_the_held_out_questions_before_and_after(finetune_cli, warning_marks, tmp_path):
    import mlflow

    result = finetune_cli(tmp_path)  # the recipe as shipped: 3 epochs, evals before and after
    assert result.returncode == 0, result.stderr[-3000:]

    # What the user sees: at most 40 lines, no library noise, a header, progress, and a summary with the scores
    lines = result.stdout.strip().splitlines()
    assert len(lines) <= 40, result.stdout
    noise = [line for line in lines + result.stderr.splitlines() if any(mark in line for mark in warning_marks)]
    assert noise == [], noise
    out = result.stdout
    for expected in ("recipe", "trainable", "steps        165 (3 epochs of 55 steps of 8 rows)", "library log",
                     "step 0/165: eval loss", "Evaluating suite 'legal_chat' before training",
                     "Finished legal (sft)", "held-out loss 9.0", SCORE, "sign test p =",
                     "routing: expert load max/mean", "make mlflow, then http://127.0.0.1:5000/#/"):
        assert expected in out, (expected, out)
    assert lines[-1].startswith("run_id=") and f"output_dir={tmp_path}/out" in lines[-1]
    log = (tmp_path / "out" / "workbench.log").read_text()
    assert "FutureWarning" in log or "WARNING" in log  # the warnings went to the run's log, not away

    # What the run carries
    run_id = lines[-1].split()[0].removeprefix("run_id=")
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/m.db")
    record = client.get_run(run_id)
    metrics = record.data.metrics
    assert record.info.status == "FINISHED"
    assert {name.split("/", 1)[0] for name in metrics if name.endswith("acc_none")} == {"base", "eval"}
    before, after = metrics[f"base/{SCORE}"], metrics[f"eval/{SCORE}"]
    assert abs(before - CHANCE) < 0.1  # the random-init base model guesses
    assert before * QUESTIONS == pytest.approx(round(before * QUESTIONS))  # right answers out of 149 questions
    improved, worsened = metrics[f"compare/{SCORE}/improved"], metrics[f"compare/{SCORE}/worsened"]
    assert 0 < improved + worsened <= QUESTIONS  # training changed answers, question by question
    assert (improved - worsened) / QUESTIONS == pytest.approx(after - before)  # the sign test counts the same answers
    assert 0 < metrics[f"compare/{SCORE}/p_value"] <= 1
    # Measured on 2 CPU cores, base 0.215: 0.302 (seed 42, the recipe's; it repeats exactly), 0.289 and 0.282 for
    # seeds 1 and 2, each short of significance alone (sign test p = 0.105, 0.18, 0.25); the bound is under half the
    # smallest rise, so it holds a rise the three seeds agree on without claiming more.
    assert after > before + 0.03, (before, after)
    losses = [m.value for m in sorted(client.get_metric_history(run_id, "eval/loss"), key=lambda m: m.step)]
    assert losses[-1] < 0.5 * losses[0]  # the held-out conversations: 9.07 -> 3.93 for seeds 42, 1 and 2
