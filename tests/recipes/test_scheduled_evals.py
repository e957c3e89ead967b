"""End to end: `workbench schedule` processes racing over one MLflow store evaluate each run exactly once,
and a run whose scheduler crashed mid-evaluation is evaluated by the next one.

    .venv/bin/python -m pytest -q tests/recipes/test_scheduled_evals.py

Three FINISHED runs share one final model dir (the tiny preset's weights: three runs, same weights),
which is all the scheduler needs to find and load them; `legal` at --limit 1 keeps each eval short.
"""

import os
import re
import subprocess
import sys

import pytest

from workbench.schedule.scheduler import ClaimStore, ScheduleConfig, claims_url, tick

METRIC = "eval/legal_mc/acc_none"


@pytest.fixture
def store(tiny_final_dir, mlflow_sqlite_uri, tmp_path):
    """(client, uri, [run ids]): three finished runs of experiment `legal` whose final_dir is one tiny model."""
    import mlflow

    final, uri = tiny_final_dir, mlflow_sqlite_uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("legal", artifact_location=str(tmp_path / "artifacts"))
    ids = []
    for i in range(3):
        run_id = client.create_run(experiment, tags={"final_dir": str(final), "mlflow.runName": f"r{i}"}).info.run_id
        client.set_terminated(run_id)
        ids.append(run_id)
    return client, uri, ids


def _scheduler(uri: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "workbench.cli", "schedule", "--suite", "legal", "--once", "--limit", "1",
           "--experiment", "legal", "--lease", "30"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_schedulers_started_together_over_three_unevaluated_runs_evaluate_each_run_exactly_once(store):
    client, uri, ids = store
    schedulers = [_scheduler(uri), _scheduler(uri)]
    outputs = [p.communicate(timeout=400)[0] for p in schedulers]

    assert [p.returncode for p in schedulers] == [0, 0], "\n\n".join(o[-3000:] for o in outputs)
    evaluated = [m for out in outputs for m in re.findall(r"\] evaluated ([0-9a-f]{8}) \(", out)]
    assert sorted(evaluated) == sorted(run_id[:8] for run_id in ids), outputs  # each once, over both processes
    assert all(re.search(r"\] [123] runs? needs? 'legal'", out) for out in outputs)  # both saw work to do...
    assert sum(out.count("] skipping ") for out in outputs) >= 1  # ...and met the other's claim
    claims = ClaimStore(claims_url(None, uri))
    for run_id in ids:
        assert len(client.get_metric_history(run_id, METRIC)) == 1  # one evaluation logged, not two
        tags = client.get_run(run_id).data.tags
        assert (tags["eval.legal.source"], tags["eval.legal.limit"], tags["eval.legal.attempts"]) == ("local", "1", "1")
        row = claims.get(run_id, "legal")
        assert (row["state"], row["attempts"], row["generation"]) == ("done", 1, 1)  # claimed once, by one of them
    assert not any("lost the claim" in out or "store unavailable" in out for out in outputs)


def test_a_run_left_claimed_by_a_crashed_scheduler_is_evaluated_by_the_next_tick(store, monkeypatch):
    client, uri, ids = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    claims = ClaimStore(claims_url(None, uri))
    busy, crashed, fresh = ids
    # A scheduler claimed `crashed` (lease 30 s) and died 31 s ago without renewing; another still holds `busy`.
    claims_then = ClaimStore(claims.url, clock=lambda: claims.clock() - 31)
    assert claims_then.claim(crashed, "legal", "node-a:4242:dead01", lease_s=30, max_attempts=3).outcome == "claimed"
    assert claims.claim(busy, "legal", "node-b:77:alive1", lease_s=300, max_attempts=3).outcome == "claimed"
    lines = []
    cfg = ScheduleConfig(suite="legal", limit=1, experiments=("legal",), max_runs=1)

    assert tick(cfg, claims, client, "node-c:1:next01", say=lines.append) == [crashed]
    assert any(line.startswith(f"evaluated {crashed[:8]} (r1) on 'legal', attempt 2 of 3 in ") for line in lines)
    assert f"skipping {busy[:8]}: another scheduler is evaluating it" in lines
    assert "stopping at --max-runs 1; the rest wait for the next tick" in lines  # `fresh` waits
    assert [len(client.get_metric_history(r, METRIC)) for r in ids] == [0, 1, 0]
    assert client.get_run(crashed).data.tags["eval.legal.attempts"] == "2"
    row = claims.get(crashed, "legal")
    assert (row["state"], row["owner"], row["attempts"], row["generation"]) == ("done", "node-c:1:next01", 2, 2)
