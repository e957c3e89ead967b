"""Claims (lease, release, retry, give up) and one scheduler tick, with a stand-in evaluator.

    .venv/bin/python -m pytest -q tests/unit/test_schedule.py
"""

import threading
from datetime import datetime, timezone

import pytest

from workbench.errors import WorkbenchError
from workbench.schedule import ClaimStore, ScheduleConfig, claims_url, next_tick_in, runs_needing, tick


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(tmp_path, clock):
    return ClaimStore(f"sqlite:///{tmp_path / 'claims.db'}", clock=clock)


def test_a_live_claim_blocks_others_until_its_lease_expires(store, clock):
    assert store.claim("run1", "legal", "a", lease_s=60, max_attempts=3) == "claimed"
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "held"
    assert store.claim("run1", "smoke", "b", lease_s=60, max_attempts=3) == "claimed"  # per (run, suite)
    clock.now += 59
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "held"
    clock.now += 2  # a's lease ran out: a crashed scheduler's run is taken over, as attempt 2
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "claimed"
    row = store.get("run1", "legal")
    assert (row["owner"], row["attempts"], row["state"], row["expires_at"]) == ("b", 2, "running", clock.now + 60)
    assert store.renew("run1", "legal", "a", 60) is False  # a lost it
    assert store.finish("run1", "legal", "a") is False


def test_heartbeat_renewal_keeps_the_claim(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=3)
    clock.now += 50
    assert store.renew("run1", "legal", "a", 60) is True
    clock.now += 50  # 100 s after the claim, but 50 s after the renewal
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "held"


def test_done_runs_are_never_claimed_again(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=3)
    assert store.finish("run1", "legal", "a") is True
    clock.now += 10_000
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "done"
    assert store.get("run1", "legal")["attempts"] == 1


def test_failures_back_off_count_attempts_and_give_up(store, clock):
    assert store.claim("run1", "legal", "a", lease_s=60, max_attempts=3) == "claimed"
    assert store.release("run1", "legal", "a", "OOM", backoff_s=100, max_attempts=3) == "retry"
    assert store.get("run1", "legal")["expires_at"] == clock.now + 100  # 100 * 2**0
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "waiting"
    clock.now += 100
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "claimed"
    assert store.release("run1", "legal", "b", "OOM again", backoff_s=100, max_attempts=3) == "retry"
    assert store.get("run1", "legal")["expires_at"] == clock.now + 200  # doubles
    clock.now += 200
    assert store.claim("run1", "legal", "a", lease_s=60, max_attempts=3) == "claimed"
    assert store.release("run1", "legal", "a", "OOM thrice", backoff_s=100, max_attempts=3) == "gave_up"
    clock.now += 10_000
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3) == "gave_up"
    row = store.get("run1", "legal")
    assert (row["attempts"], row["last_error"]) == (3, "OOM thrice")


def test_a_stopped_scheduler_hands_its_run_back_uncounted(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=1)
    assert store.hand_back("run1", "legal", "a") is True
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=1) == "claimed"  # at once, still attempt 1
    assert store.get("run1", "legal")["attempts"] == 1


def test_a_crash_on_the_last_attempt_gives_up(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=1)
    clock.now += 61  # a crashed holding the only attempt
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=1) == "exhausted"
    assert store.get("run1", "legal")["state"] == "gave_up"


@pytest.mark.parametrize("expired_claim", [False, True])
def test_racing_claimers_have_exactly_one_winner(tmp_path, expired_claim):
    url = f"sqlite:///{tmp_path / 'claims.db'}"
    if expired_claim:  # the UPDATE path: a lease that ran out, wanted by all
        ClaimStore(url, clock=lambda: 0.0).claim("run1", "legal", "crashed", lease_s=1, max_attempts=9)
    stores = [ClaimStore(url) for _ in range(8)]  # one engine each, like separate processes
    outcomes, start = [], threading.Barrier(len(stores))

    def claim(i):
        start.wait()
        outcomes.append(stores[i].claim("run1", "legal", f"s{i}", lease_s=60, max_attempts=9))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes) == ["claimed"] + ["held"] * 7
    assert stores[0].get("run1", "legal")["attempts"] == (2 if expired_claim else 1)


def test_claims_live_next_to_a_sqlite_store_or_where_told(tmp_path):
    assert claims_url(None, "sqlite:////data/ml/mlflow.db") == "sqlite:////data/ml/mlflow.eval-claims.db"
    assert claims_url("postgresql://u@db/claims", "http://mlflow:5000") == "postgresql://u@db/claims"
    assert claims_url(str(tmp_path / "c.db"), "http://mlflow:5000") == f"sqlite:///{tmp_path / 'c.db'}"
    with pytest.raises(WorkbenchError, match="--claims-db"):
        claims_url(None, "http://mlflow:5000")


def test_next_tick_follows_the_interval_or_the_cron_expression():
    now = datetime(2026, 11, 23, 10, 7, 30, tzinfo=timezone.utc).timestamp()
    assert next_tick_in(600, None, now) == 600
    assert next_tick_in(None, "*/30 * * * *", now) == 22 * 60 + 30  # 10:30:00


# --- one tick over a real MLflow store, with a stand-in evaluator -----------------------------------


@pytest.fixture
def store_with_runs(tmp_path):
    """A sqlite MLflow store: 2 finished runs in `legal`, 1 in `other`, plus a running and a finished
    run without final_dir (never candidates)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    ids = {}
    for name in ("legal", "other"):
        exp = client.create_experiment(name, artifact_location=str(tmp_path / "artifacts" / name))
        for i in range(2 if name == "legal" else 1):
            run = client.create_run(exp, tags={"final_dir": str(tmp_path / "final"), "mlflow.runName": f"{name}{i}"})
            client.set_terminated(run.info.run_id)
            ids[f"{name}{i}"] = run.info.run_id
        client.create_run(exp, tags={"final_dir": str(tmp_path / "final")})  # still RUNNING
        client.set_terminated(client.create_run(exp).info.run_id)  # no final_dir
    return client, ids


def fake_result(score=0.5):
    return {"scores": {"legal_mc/acc_none": score}, "results": {"workbench": {"limit": 1}}, "samples": {},
            "suite": "legal", "source": "local"}


def test_tick_evaluates_runs_lacking_the_suite_once(store_with_runs, store, monkeypatch):
    client, ids = store_with_runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    cfg = ScheduleConfig(suite="legal", experiments=("legal",))
    lines, called = [], []

    def evaluate(run_id, cfg):
        called.append(run_id)
        return fake_result(0.25 * len(called))

    assert tick(cfg, store, client, "me", evaluate=evaluate, say=lines.append) == [ids["legal0"], ids["legal1"]]
    assert lines[0] == "2 runs need 'legal'"
    assert client.get_run(ids["legal1"]).data.metrics == {"eval/legal_mc/acc_none": 0.5}
    tags = client.get_run(ids["legal0"]).data.tags
    assert (tags["eval.legal.source"], tags["eval.legal.limit"], tags["eval.legal.attempts"]) == ("local", "1", "1")
    assert "eval.legal.done" in tags and "eval.legal.done" not in client.get_run(ids["other0"]).data.tags
    assert tick(cfg, store, client, "me", evaluate=evaluate, say=lines.append) == []
    assert lines[-1] == "no runs need 'legal'" and len(called) == 2
    everything = ScheduleConfig(suite="legal", max_runs=1)
    assert [r.info.run_id for r in runs_needing(client, everything)] == [ids["other0"]]


def test_tick_skips_live_claims_and_takes_over_expired_ones(store_with_runs, store, clock, monkeypatch):
    client, ids = store_with_runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    cfg = ScheduleConfig(suite="legal", experiments=("legal",), lease_s=60)
    store.claim(ids["legal0"], "legal", "crashed-host:1:dead", lease_s=60, max_attempts=3)
    store.claim(ids["legal1"], "legal", "busy-host:2:beef", lease_s=600, max_attempts=3)
    clock.now += 61  # the crashed scheduler's lease ran out; the busy one's did not
    lines = []
    assert tick(cfg, store, client, "me", evaluate=lambda r, c: fake_result(), say=lines.append) == [ids["legal0"]]
    assert f"skipping {ids['legal1'][:8]}: another scheduler is evaluating it" in lines
    assert any(line.startswith(f"evaluating {ids['legal0'][:8]} (legal0) on 'legal', attempt 2 of 3") for line in lines)
    assert store.get(ids["legal0"], "legal")["state"] == "done"
    assert client.get_run(ids["legal0"]).data.metrics == {"eval/legal_mc/acc_none": 0.5}


def test_failed_evaluations_retry_after_backoff_then_give_up_visibly(store_with_runs, store, clock, monkeypatch):
    client, ids = store_with_runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    cfg = ScheduleConfig(suite="legal", experiments=("legal",), max_runs=1, max_attempts=2, backoff_s=100)
    calls, lines = [], []

    def broken(run_id, cfg):
        calls.append(run_id)
        raise RuntimeError("CUDA out of memory")

    assert tick(cfg, store, client, "me", evaluate=broken, say=lines.append) == []
    assert f"  {ids['legal0'][:8]} failed (RuntimeError: CUDA out of memory); will retry later" in lines
    assert client.get_run(ids["legal0"]).data.tags["eval.legal.attempts"] == "1"
    tick(cfg, store, client, "me", evaluate=broken, say=lines.append)  # legal0 waits out its backoff
    assert calls == [ids["legal0"], ids["legal1"]]
    clock.now += 100
    tick(cfg, store, client, "me", evaluate=broken, say=lines.append)
    assert calls[-1] == ids["legal0"]
    assert client.get_run(ids["legal0"]).data.tags["eval.legal.gave_up"] == "2 attempts; last: RuntimeError: CUDA out of memory"
    assert [r.info.run_id for r in runs_needing(client, cfg)] == [ids["legal1"]]  # no longer a candidate


def test_cli_rejects_a_bad_cron_expression_and_an_unknown_suite(capsys, tmp_path, monkeypatch):
    from workbench.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["schedule", "--suite", "legal", "--cron", "every tuesday"]) == 2
    assert "--cron 'every tuesday' is not a valid cron expression" in capsys.readouterr().err
    assert main(["schedule", "--suite", "nope", "--once"]) == 2
    assert "suite 'nope' is not defined" in capsys.readouterr().err
    assert main(["schedule", "--suite", "legal", "--every", "0"]) == 2
    assert "--every must be > 0, got 0" in capsys.readouterr().err
