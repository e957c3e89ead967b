"""Claims (lease, generation fence, commit/publish, retry, give up, reset), store outages, the heartbeat, and
scheduler ticks over a real MLflow store with a stand-in evaluator; every claims test runs on sqlite and on
PostgreSQL (tests/stores.py).

    .venv/bin/python -m pytest -q tests/unit/schedule/test_schedule.py
"""

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone

import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, TEMPORARILY_UNAVAILABLE
from sqlalchemy.exc import IntegrityError, OperationalError

from workbench.errors import WorkbenchError
from workbench.schedule.claims import ClaimStore, claims_url
from workbench.schedule.lease import Heartbeat, LeaseLost
from workbench.schedule.outage import StoreRetry, StoreUnavailable, store_outage
from workbench.schedule.scheduler import ScheduleConfig, next_tick_in, runs_needing, tick


class Clock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(claims_db, clock):
    store = ClaimStore(claims_db, clock=clock)
    yield store
    store.close()


def test_a_live_claim_blocks_others_until_its_lease_expires(store, clock):
    a = store.claim("run1", "legal", "a", lease_s=60, max_attempts=3)
    assert (a.outcome, a.generation, a.attempts) == ("claimed", 1, 1)
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3).outcome == "held"
    assert store.claim("run1", "smoke", "b", lease_s=60, max_attempts=3).outcome == "claimed"  # per (run, suite)
    assert store.claim("run1", "legal", "a", lease_s=60, max_attempts=3).generation == 1  # a retried claim: still a's
    clock.now += 59
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3).outcome == "held"
    clock.now += 2  # a's lease ran out: a crashed scheduler's run is taken over, as attempt 2, generation 2
    b = store.claim("run1", "legal", "b", lease_s=60, max_attempts=3)
    assert (b.outcome, b.generation, b.attempts, b.expires_at) == ("claimed", 2, 2, clock.now + 60)
    assert store.renew("run1", "legal", "a", 1, 60) is None  # a lost it: every write a makes is refused
    assert store.commit("run1", "legal", "a", 1, "{}", 60) is False
    assert store.finish("run1", "legal", "a", 1) is False
    assert store.release("run1", "legal", "a", 1, 1, "OOM", 100, 3) is None
    assert store.get("run1", "legal")["state"] == "running"


def test_commit_needs_owner_generation_and_a_live_lease(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=3)
    assert store.renew("run1", "legal", "a", 1, 60) == clock.now + 60
    clock.now += 61  # a stalled past its lease; nobody took over yet, but a's claim is gone all the same
    assert store.renew("run1", "legal", "a", 1, 60) is None
    assert store.commit("run1", "legal", "a", 1, '{"scores": {}}', 60) is False
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3).generation == 2
    assert store.commit("run1", "legal", "b", 1, "{}", 60) is False  # the right owner with a stale generation
    assert store.commit("run1", "legal", "b", 2, '{"scores": {"x": 1.0}}', 60) is True
    assert store.commit("run1", "legal", "b", 2, '{"scores": {"x": 1.0}}', 60) is True  # retried: same claim
    row = store.get("run1", "legal")
    assert (row["state"], row["result"], row["attempts"]) == ("publishing", '{"scores": {"x": 1.0}}', 2)
    assert store.claim("run1", "legal", "c", lease_s=60, max_attempts=3).outcome == "held"
    assert store.finish("run1", "legal", "b", 2) is True
    assert store.claim("run1", "legal", "c", lease_s=60, max_attempts=3).outcome == "done"


def test_a_publisher_that_stopped_is_replaced_by_an_uncounted_republish(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=1)
    store.commit("run1", "legal", "a", 1, '{"scores": {"x": 0.5}}', 60)
    clock.now += 61  # a died while logging; its one attempt is not used up twice, nor is the run given up
    again = store.claim("run1", "legal", "b", lease_s=60, max_attempts=1)
    assert (again.outcome, again.generation, again.attempts) == ("republish", 2, 1)
    assert again.result == '{"scores": {"x": 0.5}}'
    assert store.finish("run1", "legal", "a", 1) is False and store.finish("run1", "legal", "b", 2) is True


def test_done_runs_are_never_claimed_again(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=3)
    assert store.finish("run1", "legal", "a", 1) is True
    clock.now += 10_000
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3).outcome == "done"
    assert store.get("run1", "legal")["attempts"] == 1


def test_failures_back_off_count_attempts_give_up_and_reset(store, clock):
    assert store.claim("run1", "legal", "a", lease_s=60, max_attempts=3).outcome == "claimed"
    assert store.release("run1", "legal", "a", 1, 1, "OOM", backoff_s=100, max_attempts=3) == "retry"
    assert store.get("run1", "legal")["expires_at"] == clock.now + 100  # 100 * 2**0
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3).outcome == "waiting"
    clock.now += 100
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3).generation == 2
    assert store.release("run1", "legal", "b", 2, 2, "OOM again", backoff_s=100, max_attempts=3) == "retry"
    assert store.get("run1", "legal")["expires_at"] == clock.now + 200  # doubles
    clock.now += 200
    assert store.claim("run1", "legal", "a", lease_s=60, max_attempts=3).attempts == 3
    assert store.release("run1", "legal", "a", 3, 3, "OOM thrice", backoff_s=100, max_attempts=3) == "gave_up"
    clock.now += 10_000
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=3).outcome == "gave_up"
    assert store.given_up("legal") == [{"run_id": "run1", "attempts": 3, "last_error": "OOM thrice"}]
    assert store.reset("run1", "legal") is True and store.reset("run1", "legal") is False  # only a given-up run
    assert store.given_up("legal") == []
    again = store.claim("run1", "legal", "b", lease_s=60, max_attempts=3)
    assert (again.outcome, again.attempts, again.generation) == ("claimed", 1, 4)  # generations never repeat


def test_a_stopped_scheduler_hands_its_run_back_uncounted(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=1)
    assert store.hand_back("run1", "legal", "a", 1) is True
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=1).outcome == "claimed"  # at once, attempt 1
    assert store.get("run1", "legal")["attempts"] == 1


def test_a_crash_on_the_last_attempt_gives_up(store, clock):
    store.claim("run1", "legal", "a", lease_s=60, max_attempts=1)
    clock.now += 61  # a crashed holding the only attempt
    assert store.claim("run1", "legal", "b", lease_s=60, max_attempts=1).outcome == "exhausted"
    assert store.get("run1", "legal")["state"] == "gave_up"


@pytest.mark.parametrize("expired_claim", [False, True])
def test_racing_claimers_have_exactly_one_winner(claims_db, expired_claim):
    if expired_claim:  # the UPDATE path: a lease that ran out, wanted by all
        ClaimStore(claims_db, clock=lambda: 0.0).claim("run1", "legal", "crashed", lease_s=1, max_attempts=9)
    stores = [ClaimStore(claims_db) for _ in range(8)]  # one engine each, like separate processes
    outcomes, start = [], threading.Barrier(len(stores))

    def claim(i):
        start.wait()
        outcomes.append(stores[i].claim("run1", "legal", f"s{i}", lease_s=60, max_attempts=9).outcome)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes) == ["claimed"] + ["held"] * 7
    assert stores[0].get("run1", "legal")["attempts"] == (2 if expired_claim else 1)
    [s.close() for s in stores]


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


# --- store outages: which errors, how retried ------------------------------------------------------------


def _locked_sqlite(tmp_path):
    """A real "database is locked": another connection holds the write lock."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    store = ClaimStore(url, busy_timeout_s=0.01)
    locker = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        store.claim("run1", "legal", "a", 60, 3)
    except Exception as exc:
        return exc
    finally:
        locker.rollback()
        store.close()


def _mlflow_server_unreachable():
    import requests

    try:
        try:
            raise requests.ConnectionError("HTTPConnectionPool(host='mlflow', port=5000): Max retries exceeded")
        except Exception as e:  # what mlflow.utils.rest_utils.http_request raises once its own retries are spent
            raise MlflowException(f"API request to http://mlflow:5000/api/2.0/mlflow/runs/search failed with "
                                  f"exception {e}")
    except MlflowException as exc:
        return exc


def test_store_outages_are_told_apart_from_evaluation_failures(tmp_path):
    locked = _locked_sqlite(tmp_path)
    assert isinstance(locked, OperationalError) and "database is locked" in str(locked)
    # MLflow's SQL store turns a driver's OperationalError into this (mlflow/store/db/utils.py)
    mlflow_db_down = MlflowException("(sqlite3.OperationalError) database is locked",
                                     error_code=TEMPORARILY_UNAVAILABLE)
    server_5xx = RestException({"error_code": "INTERNAL_ERROR", "message": "gunicorn worker timeout"})
    for outage in (locked, mlflow_db_down, server_5xx, _mlflow_server_unreachable(), ConnectionRefusedError(111)):
        assert store_outage(outage), outage
    try:
        try:
            raise mlflow_db_down
        except MlflowException:  # evaluate._load_run re-raises a failed lookup as "no run with that id"
            raise WorkbenchError("eval target '1a2b': no run with that id in sqlite:///mlflow.db") from None
    except WorkbenchError as exc:
        assert store_outage(exc, network=False)
    failures = [RuntimeError("CUDA out of memory"), WorkbenchError("eval: suite 'nope' is not defined"),
                OSError("model.safetensors: no such file"), IntegrityError("INSERT", {}, Exception("duplicate key")),
                MlflowException("Run 1a2b not found", error_code=RESOURCE_DOES_NOT_EXIST),
                MlflowException("Invalid metric name: 'a,b'")]
    for failure in failures:
        assert not store_outage(failure), failure
    # an evaluation's own connection error (an offline hub) is the evaluation failing, not the store
    assert not store_outage(ConnectionError("Couldn't reach the Hub (offline mode is enabled)"), network=False)


def test_a_refused_postgresql_connection_is_an_outage():
    pytest.importorskip("psycopg")
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OperationalError) as refused:
        ClaimStore(f"postgresql://nobody@127.0.0.1:{port}/claims")
    assert "refused" in str(refused.value) and store_outage(refused.value)


def test_store_retry_backs_off_exponentially_and_gives_up_in_bounded_time():
    lines, sleeps = [], []
    retry = StoreRetry(total_s=10, first_s=1, max_s=30, sleep=sleeps.append, say=lines.append)
    calls = iter([OperationalError("SELECT", {}, Exception("connection refused"))] * 3 + ["rows"])

    def flaky():
        value = next(calls)
        if isinstance(value, Exception):
            raise value
        return value

    assert retry("searching for runs", flaky) == "rows"
    assert sleeps == [1, 2, 4]
    assert lines == ["  store unavailable while searching for runs (Exception: connection refused); retrying "
                     "for up to 10 s (not counted as an attempt)",
                     "  store back after 3 failed tries (7.0 s) while searching for runs"]
    sleeps.clear()
    with pytest.raises(StoreUnavailable, match="claiming a run: the store is still unavailable after 5 tries over "
                                              "10 s") as down:
        retry("claiming a run", lambda: (_ for _ in ()).throw(OperationalError("UPDATE", {}, Exception("locked"))))
    assert sleeps == [1, 2, 4, 3] and down.value.exit_code == 75  # capped at total_s; EX_TEMPFAIL
    sleeps.clear()
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # not an outage: at once, no retry
        retry("evaluating", lambda: (_ for _ in ()).throw(RuntimeError("CUDA out of memory")))
    assert sleeps == []


class Partitioned(ClaimStore):
    """A scheduler cut off from the claims database: its renewals fail (the real exception class)."""

    tries = 0

    def renew(self, *args):
        self.tries += 1
        raise OperationalError("UPDATE workbench_eval_claims", {}, Exception("could not connect to server"))


def _busy_until_interrupted(heartbeat, seconds=30.0):
    start = time.monotonic()
    with pytest.raises(LeaseLost):
        with heartbeat.interruptible():
            while time.monotonic() - start < seconds:  # an evaluation: Python code between C calls
                time.sleep(0.005)
    return time.monotonic() - start


@pytest.mark.parametrize("how", ["renewals fail", "taken over"])
def test_heartbeat_interrupts_an_evaluation_whose_claim_is_lost(claims_db, clock, how):
    store = (Partitioned if how == "renewals fail" else ClaimStore)(claims_db, clock=clock)
    claim = store.claim("run1", "legal", "a", lease_s=60, max_attempts=3)
    lines = []
    heartbeat = Heartbeat(store, ("run1", "legal", "a", claim.generation), 60, claim.expires_at, every_s=0.05,
                          retry_s=0.02, say=lines.append)

    other = ClaimStore(claims_db, clock=clock)

    def lose():
        time.sleep(0.3)
        clock.now += 61  # the lease runs out (renewals failing), or another scheduler takes the run over
        if how == "taken over":
            assert other.claim("run1", "legal", "b", lease_s=60, max_attempts=3).outcome == "claimed"

    loser = threading.Thread(target=lose)
    loser.start()
    with heartbeat:
        took = _busy_until_interrupted(heartbeat)
    loser.join()
    other.close()
    # noticed after the loss and long before the evaluation would end by itself (30 s); the bound is loose so
    # that a loaded machine (other tests beside this one) cannot fail it
    assert heartbeat.lost and 0.3 < took < 10
    if how == "renewals fail":
        assert heartbeat.failures >= 3 and "no renewal succeeded before the lease ran out" in heartbeat.why
        assert len(lines) == 1  # one warning for the streak
        assert lines[0].startswith("  warning: could not renew the lease on run1 (Exception: could not connect")
    else:
        assert heartbeat.failures == 0 and heartbeat.why == "its lease ran out or another scheduler took the run over"
    store.close()


# --- ticks over a real MLflow store, with a stand-in evaluator ------------------------------------------

METRIC = "eval/legal_mc/acc_none"


@pytest.fixture
def store_with_runs(mlflow_sqlite_uri, tmp_path):
    """A sqlite MLflow store: 2 finished runs in `legal`, 1 in `other`, plus a running and a finished
    run without final_dir (never candidates)."""
    import mlflow

    client = mlflow.MlflowClient(mlflow_sqlite_uri)
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


def logged(client, run_id):
    return [m.value for m in client.get_metric_history(run_id, METRIC)]


def test_tick_evaluates_runs_lacking_the_suite_once(store_with_runs, store):
    client, ids = store_with_runs
    cfg = ScheduleConfig(suite="legal", experiments=("legal",))
    lines, called = [], []

    def evaluate(run_id, cfg):
        called.append(run_id)
        return fake_result(0.25 * len(called))

    assert tick(cfg, store, client, "me", evaluate=evaluate, say=lines.append) == [ids["legal0"], ids["legal1"]]
    assert lines[0] == "2 runs need 'legal'"
    assert client.get_run(ids["legal1"]).data.metrics == {METRIC: 0.5}
    tags = client.get_run(ids["legal0"]).data.tags
    assert (tags["eval.legal.source"], tags["eval.legal.limit"], tags["eval.legal.attempts"]) == ("local", "1", "1")
    assert "eval.legal.done" in tags and "eval.legal.done" not in client.get_run(ids["other0"]).data.tags
    assert [a.path for a in client.list_artifacts(ids["legal0"], "eval/legal")] == ["eval/legal/results.json"]
    row = store.get(ids["legal0"], "legal")
    assert (row["state"], row["generation"]) == ("done", 1)
    assert json.loads(row["result"])["scores"] == {"legal_mc/acc_none": 0.25}  # what was committed
    assert tick(cfg, store, client, "me", evaluate=evaluate, say=lines.append) == []
    assert lines[-1] == "no runs need 'legal'" and len(called) == 2
    everything = ScheduleConfig(suite="legal", max_runs=1)
    assert [r.info.run_id for r in runs_needing(client, everything)] == [ids["other0"]]


def test_tick_skips_live_claims_and_takes_over_expired_ones(store_with_runs, store, clock):
    client, ids = store_with_runs
    cfg = ScheduleConfig(suite="legal", experiments=("legal",), lease_s=60)
    store.claim(ids["legal0"], "legal", "crashed-host:1:dead", lease_s=60, max_attempts=3)
    store.claim(ids["legal1"], "legal", "busy-host:2:beef", lease_s=600, max_attempts=3)
    clock.now += 61  # the crashed scheduler's lease ran out; the busy one's did not
    lines = []
    assert tick(cfg, store, client, "me", evaluate=lambda r, c: fake_result(), say=lines.append) == [ids["legal0"]]
    assert f"skipping {ids['legal1'][:8]}: another scheduler is evaluating it" in lines
    assert any(line.startswith(f"evaluated {ids['legal0'][:8]} (legal0) on 'legal', attempt 2 of 3 in ") for line in lines)
    assert store.get(ids["legal0"], "legal")["state"] == "done"
    assert client.get_run(ids["legal0"]).data.metrics == {METRIC: 0.5}


@pytest.mark.parametrize("how", ["stalled past its lease", "cut off from the claims database", "renewal refused"])
def test_a_scheduler_that_loses_its_lease_mid_evaluation_logs_nothing(store_with_runs, claims_db, clock, how):
    """A evaluates; its lease runs out and B takes the run over and logs; then A resumes: A logs nothing."""
    client, ids = store_with_runs
    run_id = ids["legal0"]
    cfg = ScheduleConfig(suite="legal", experiments=("legal",), max_runs=1, lease_s=60, store_backoff_s=0.01,
                         heartbeat_s=1000 if how == "stalled past its lease" else 0.05)
    a_store = (Partitioned if how == "cut off from the claims database" else ClaimStore)(claims_db, clock=clock)
    b_store = ClaimStore(claims_db, clock=clock)
    started, resume, a_lines, a = threading.Event(), threading.Event(), [], {}

    def a_evaluates(run_id, cfg):
        started.set()
        if how == "stalled past its lease":
            resume.wait()  # like one long C call: nothing can interrupt it
        while not resume.is_set():  # like lm-eval: Python code between forward passes
            time.sleep(0.005)
        a["returned"] = True
        return fake_result(0.25)

    thread = threading.Thread(target=lambda: a.update(evaluated=tick(cfg, a_store, client, "a", evaluate=a_evaluates,
                                                                     say=a_lines.append)))
    thread.start()
    assert started.wait(30)
    while how == "cut off from the claims database" and a_store.tries < 2:
        time.sleep(0.01)  # a few renewals fail while the lease is still live
    clock.now += 61  # a's lease has run out
    b_lines = []
    assert tick(cfg, b_store, client, "b", evaluate=lambda r, c: fake_result(0.75), say=b_lines.append) == [run_id]
    if how != "stalled past its lease":  # a's heartbeat notices the loss by itself: wait for it before resuming a
        thread.join(30)
    resume.set()
    thread.join(30)

    assert a["evaluated"] == [] and logged(client, run_id) == [0.75]  # one result, B's
    tags = client.get_run(run_id).data.tags
    assert (tags["eval.legal.source"], tags["eval.legal.attempts"]) == ("local", "2")
    row = b_store.get(run_id, "legal")
    assert (row["state"], row["owner"], row["generation"], row["attempts"]) == ("done", "b", 2, 2)
    results = json.loads(open(client.download_artifacts(run_id, "eval/legal/results.json")).read())
    assert results["scores"] == {"legal_mc/acc_none": 0.75}
    if how == "stalled past its lease":  # the heartbeat never beat: the commit's fence refused A's result
        assert a["returned"] and any(line.startswith(f"  {run_id[:8]}: the claim was lost before the result was "
                                                     "committed") for line in a_lines)
    else:  # the heartbeat saw the loss and interrupted A's evaluation
        assert "returned" not in a and any(line.startswith(f"  {run_id[:8]}: lost the claim while evaluating")
                                           for line in a_lines)
    warnings = [line for line in a_lines if "could not renew" in line]
    assert len(warnings) == (1 if how == "cut off from the claims database" else 0)
    a_store.close()
    b_store.close()


class FlakyMlflow:
    """An MlflowClient whose first calls of the named methods raise what MLflow's SQL store raises while its
    database is locked or down (MlflowException, TEMPORARILY_UNAVAILABLE: mlflow/store/db/utils.py)."""

    def __init__(self, client, **failures):
        self.client, self.failures = client, failures

    def __getattr__(self, name):
        real = getattr(self.client, name)
        if name not in self.failures:
            return real

        def flaky(*args, **kwargs):
            if self.failures[name] > 0:
                self.failures[name] -= 1
                raise MlflowException("(sqlite3.OperationalError) database is locked",
                                      error_code=TEMPORARILY_UNAVAILABLE)
            return real(*args, **kwargs)

        return flaky


def _take_down(claims_db, request, tmp_path):
    """Make the claims database unavailable for real; returns what brings it back."""
    if claims_db.startswith("sqlite"):
        locker = sqlite3.connect(tmp_path / "claims.db", isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # every other connection now gets "database is locked"
        return locker.rollback
    postgres = request.getfixturevalue("postgres")
    postgres.stop()
    return postgres.start


def test_a_store_outage_is_ridden_out_and_not_counted_as_an_attempt(store_with_runs, claims_db, request, tmp_path):
    client, ids = store_with_runs
    cfg = ScheduleConfig(suite="legal", experiments=("legal",), max_runs=1, max_attempts=1, store_backoff_s=0.01)
    store = ClaimStore(claims_db, busy_timeout_s=0.01)
    bring_back, sleeps, lines = _take_down(claims_db, request, tmp_path), [], []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:  # the claims database comes back after the claim failed twice
            bring_back()

    flaky = FlakyMlflow(client, search_runs=1, log_batch=2)  # and MLflow fails at the search and at the logging
    assert tick(cfg, store, flaky, "me", evaluate=lambda r, c: fake_result(0.5), say=lines.append, sleep=sleep) \
        == [ids["legal0"]]
    assert sleeps == [0.01, 0.01, 0.02, 0.01, 0.02]
    assert [line.split(" (")[0] for line in lines if "store" in line] == [
        "  store unavailable while searching for runs", "  store back after 1 failed tries",
        "  store unavailable while claiming a run", "  store back after 2 failed tries",
        "  store unavailable while logging the scores", "  store back after 2 failed tries"]
    assert "OperationalError: " in next(line for line in lines if "while claiming" in line)
    row = store.get(ids["legal0"], "legal")
    assert (row["state"], row["attempts"]) == ("done", 1)  # with max_attempts=1, a counted outage would give up
    assert logged(client, ids["legal0"]) == [0.5]
    assert client.get_run(ids["legal0"]).data.tags["eval.legal.attempts"] == "1"
    store.close()


def test_a_store_failure_inside_the_evaluation_hands_the_run_back_uncounted(store_with_runs, store):
    client, ids = store_with_runs
    cfg = ScheduleConfig(suite="legal", experiments=("legal",), max_runs=1, max_attempts=1)
    calls, lines = [], []

    def evaluate(run_id, cfg):  # the model lookup hits the tracking store while its database is down
        calls.append(run_id)
        if len(calls) == 1:
            raise MlflowException("(psycopg.OperationalError) server closed the connection",
                                  error_code=TEMPORARILY_UNAVAILABLE)
        return fake_result(0.5)

    assert tick(cfg, store, client, "me", evaluate=evaluate, say=lines.append) == [ids["legal1"]]  # max_runs unspent
    assert any(line.startswith(f"  {ids['legal0'][:8]}: a store failed during the evaluation") and
               line.endswith("handed back, not counted as an attempt") for line in lines)
    assert (store.get(ids["legal0"], "legal")["state"], store.get(ids["legal0"], "legal")["attempts"]) == ("retry", 0)
    assert tick(cfg, store, client, "me", evaluate=evaluate, say=lines.append) == [ids["legal0"]]
    assert client.get_run(ids["legal0"]).data.tags["eval.legal.attempts"] == "1"


class Crash(BaseException):
    """The scheduler dying right there (nothing after it runs, as with kill -9)."""


class CrashAfterLogging(FlakyMlflow):
    def __init__(self, client):
        super().__init__(client)

    def log_batch(self, *args, **kwargs):
        self.client.log_batch(*args, **kwargs)
        raise Crash


@pytest.mark.parametrize("how", ["crashed after logging the scores", "tracking store down past --store-retry"])
def test_a_committed_result_is_republished_never_evaluated_or_logged_twice(store_with_runs, store, clock, how):
    client, ids = store_with_runs
    run_id, calls, lines = ids["legal0"], [], []
    cfg = ScheduleConfig(suite="legal", experiments=("legal",), max_runs=1, lease_s=60, store_retry_s=0.05,
                         store_backoff_s=0.01)

    def evaluate(run_id, cfg):
        calls.append(run_id)
        return fake_result(0.5)

    if how == "crashed after logging the scores":
        with pytest.raises(Crash):
            tick(cfg, store, CrashAfterLogging(client), "a", evaluate=evaluate, say=lines.append)
        clock.now += 61  # until its lease runs out, nobody touches it
    else:  # handed back at once: the next tick need not wait for the lease
        with pytest.raises(StoreUnavailable, match="logging the scores: the store is still unavailable"):
            tick(cfg, store, FlakyMlflow(client, log_batch=10**6), "a", evaluate=evaluate, say=lines.append)
    row = store.get(run_id, "legal")
    assert row["state"] == "publishing" and json.loads(row["result"])["scores"] == {"legal_mc/acc_none": 0.5}

    assert tick(cfg, store, client, "b", evaluate=evaluate, say=lines.append) == [ids["legal1"]]
    assert calls == [run_id, ids["legal1"]]  # legal0 was evaluated once
    assert f"re-publishing {run_id[:8]}: a scheduler committed its scores (attempt 1) but stopped before finishing; " \
           "writing the same entries again" in lines
    assert logged(client, run_id) == [0.5]  # one entry, whether or not the first publisher had logged it
    tags = client.get_run(run_id).data.tags
    assert (tags["eval.legal.source"], tags["eval.legal.attempts"], tags["eval.legal.done"]) == \
        ("local", "1", json.loads(row["result"])["done"])
    assert tags["eval.legal.republished"].endswith("; artifacts as the first publisher left them")
    assert [a.path for a in client.list_artifacts(run_id, "eval/legal")] == ["eval/legal/results.json"]
    row = store.get(run_id, "legal")
    assert (row["state"], row["owner"], row["attempts"], row["generation"]) == ("done", "b", 1, 2)


def test_given_up_runs_are_listed_every_tick_and_reset_puts_them_back(store_with_runs, monkeypatch, capsys):
    from workbench.cli import main

    client, ids = store_with_runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    store = ClaimStore(claims_url(None, client.tracking_uri))  # where the CLI finds it
    cfg, lines = ScheduleConfig(suite="legal", experiments=("legal",), max_attempts=1), []

    def broken(run_id, cfg):
        raise RuntimeError("CUDA out of memory")

    tick(cfg, store, client, "me", evaluate=broken, say=lines.append)
    listing = ["given up on 2 runs for 'legal' (workbench schedule --suite legal --reset RUN_ID|all puts them back):",
               f"  {ids['legal0'][:8]}: 1 attempt; last: RuntimeError: CUDA out of memory",
               f"  {ids['legal1'][:8]}: 1 attempt; last: RuntimeError: CUDA out of memory"]
    assert lines[-3:] == listing
    gave_up = client.get_run(ids["legal0"]).data.tags["eval.legal.gave_up"]
    assert gave_up == "1 attempt; last: RuntimeError: CUDA out of memory"
    lines.clear()
    tick(cfg, store, client, "me", evaluate=broken, say=lines.append)
    assert lines == ["no runs need 'legal'"] + listing  # every tick, even one with nothing to do

    assert main(["schedule", "--suite", "legal", "--reset", ids["legal0"][:8]]) == 0
    assert f"reset {ids['legal0'][:8]} on 'legal': the next tick evaluates it again" in capsys.readouterr().out
    assert "eval.legal.gave_up" not in client.get_run(ids["legal0"]).data.tags
    assert (store.get(ids["legal0"], "legal")["state"], store.get(ids["legal0"], "legal")["attempts"]) == ("retry", 0)
    for which, error in ((ids["legal0"][:8], f"run {ids['legal0'][:8]} is not given up on 'legal' (it is waiting for "
                                             "its next attempt); only given-up runs are reset"),
                         ("0123abcd", "no run with that id has been scheduled on 'legal'"),
                         ("legal0", "expected a run id")):
        assert main(["schedule", "--suite", "legal", "--reset", which]) == 2
        assert error in capsys.readouterr().err
    assert main(["schedule", "--suite", "legal", "--reset", "all"]) == 0
    assert f"reset {ids['legal1'][:8]} on 'legal'" in capsys.readouterr().out
    assert main(["schedule", "--suite", "legal", "--reset", "all"]) == 0
    assert "no runs are given up on 'legal'" in capsys.readouterr().out
    lines.clear()
    evaluated = tick(cfg, store, client, "me", evaluate=lambda r, c: fake_result(), say=lines.append)
    assert evaluated == [ids["legal0"], ids["legal1"]]
    assert any(line.startswith(f"evaluated {ids['legal0'][:8]} (legal0) on 'legal', attempt 1 of 1 in ") for line in lines)
    assert not any(line.startswith("given up") for line in lines)
    store.close()


@pytest.mark.parametrize("takes_it", [False, True])
def test_unsafe_weak_sandbox_reaches_run_suite_only_when_it_takes_it(monkeypatch, takes_it):
    import workbench.evaluate.harness as evaluate
    from workbench.schedule.scheduler import evaluate_run

    seen = {}

    def before(model, tokenizer, suite, limit=None, source="local", batch_size=8):
        return seen.setdefault("args", (suite, limit, batch_size))

    def after(model, tokenizer, suite, limit=None, source="local", batch_size=8, unsafe_weak_sandbox=False):
        seen["unsafe_weak_sandbox"] = unsafe_weak_sandbox
        return seen.setdefault("args", (suite, limit, batch_size))

    monkeypatch.setattr(evaluate, "load_target", lambda run_id: (object(), object(), run_id))
    monkeypatch.setattr(evaluate, "run_suite", after if takes_it else before)
    cfg = ScheduleConfig(suite="legal", limit=2, batch_size=4, unsafe_weak_sandbox=True)
    assert evaluate_run("1a2b", cfg) == ("legal", 2, 4)
    assert seen.get("unsafe_weak_sandbox") is (True if takes_it else None)


def test_cli_rejects_a_bad_cron_expression_an_unknown_suite_and_no_schedule(capsys, tmp_path, monkeypatch):
    from workbench.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert main(["schedule", "--suite", "legal", "--cron", "every tuesday"]) == 2
    assert "--cron 'every tuesday' is not a valid cron expression" in capsys.readouterr().err
    assert main(["schedule", "--suite", "nope", "--once"]) == 2
    assert "suite 'nope' is not defined" in capsys.readouterr().err
    assert main(["schedule", "--suite", "legal", "--every", "0"]) == 2
    assert "--every must be > 0, got 0" in capsys.readouterr().err
    assert main(["schedule", "--suite", "legal"]) == 2
    assert "give --every SECONDS, --cron EXPR or --once (or --reset RUN_ID|all)" in capsys.readouterr().err
