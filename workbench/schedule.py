"""Scheduled evals: every tick, score the finished runs that have no results for a suite yet.

    workbench schedule --suite legal --once --limit 20         # one tick now (for cron / Kubernetes)
    workbench schedule --suite standard --every 600            # a tick every 10 minutes, forever
    workbench schedule --suite standard --cron "*/30 * * * *"  # ticks on a cron expression (croniter)
    make schedule SUITE=legal ONCE=1

A run needs the suite when it is FINISHED, has a `final_dir` tag, and lacks the tag
`eval.<suite>.source`, which `evaluate.log_to_run` sets after logging the scores (so a manual
`workbench eval <run> --suite <suite>` counts too). After logging, the scheduler also tags
`eval.<suite>.done=<UTC time>`; a run it gave up on gets `eval.<suite>.gave_up=<why>`.

Claims. MLflow tags are not compare-and-set, so two schedulers (processes or machines sharing one
tracking store) agree through a claims table, one row per (run_id, suite), in a SQL database:
  - claiming is one INSERT (primary key) or one conditional UPDATE (state open, lease expired, attempts
    left); a single statement is atomic in SQLite and in PostgreSQL, so exactly one scheduler wins;
  - the winner holds a lease (`expires_at`), renewed by a heartbeat thread while it evaluates; a
    scheduler that crashes stops renewing, its lease runs out and a later tick takes the run over;
  - success sets state `done`; a failure sets state `retry` with a backoff (`expires_at` = now +
    backoff * 2**(attempts-1)); after `max_attempts` claims (crashes count) the state is `gave_up`.
Where the claims live (`--claims-db` or $WORKBENCH_CLAIMS_DB, a SQLAlchemy URL or a file path):
  - default, for a `sqlite:///<dir>/<name>.db` tracking store: `<dir>/<name>.eval-claims.db` next to it;
  - another SQLite file: fine for schedulers on one machine, or on shared storage whose file locks work
    (SQLite's own advice: not NFS without working locks);
  - PostgreSQL (`postgresql://user:pw@host/db`, needs a driver such as psycopg2-binary): for schedulers on
    several machines. Any other tracking store (http://, file:) needs `--claims-db`.
Leases use each scheduler's wall clock: keep clocks in sync (NTP) and leases far above any skew.
"""

import gc
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workbench.errors import WorkbenchError

CLAIMS_TABLE = "workbench_eval_claims"
OPEN_STATES = ("running", "retry")  # claimable once expires_at has passed


def claims_url(claims_db: str | None, tracking_uri: str) -> str:
    """SQLAlchemy URL of the claims database: `claims_db` (URL or path), else next to a sqlite store."""
    if claims_db:
        return claims_db if "://" in claims_db else f"sqlite:///{Path(claims_db).expanduser().resolve()}"
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return f"sqlite:///{db.with_name(db.stem + '.eval-claims.db')}"
    raise WorkbenchError(f"schedule: the tracking store {tracking_uri} is not a sqlite file, so there is no default "
                         "place for claims; pass --claims-db (a shared sqlite file or a postgresql:// URL)")


def _engine(url: str):
    from sqlalchemy import create_engine, event

    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60})  # wait up to 60 s for another writer

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock first: no lock upgrades, no deadlock

    return engine


class ClaimStore:
    """The claims table. Every method is one short transaction; `now` is injectable for tests."""

    def __init__(self, url: str, clock=time.time):
        from sqlalchemy import text

        self.url, self.clock, self.text = url, clock, text
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = _engine(url)
        with self.engine.begin() as db:
            db.execute(text(f"""CREATE TABLE IF NOT EXISTS {CLAIMS_TABLE} (
                run_id VARCHAR(64) NOT NULL, suite VARCHAR(128) NOT NULL, state VARCHAR(16) NOT NULL,
                owner VARCHAR(256) NOT NULL, expires_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL,
                last_error TEXT, updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, suite))"""))

    def _run(self, sql: str, **params):
        with self.engine.begin() as db:
            return db.execute(self.text(sql), params)

    def get(self, run_id: str, suite: str) -> dict | None:
        row = self._run(f"SELECT * FROM {CLAIMS_TABLE} WHERE run_id = :run_id AND suite = :suite",
                        run_id=run_id, suite=suite).mappings().first()
        return dict(row) if row else None

    def claim(self, run_id: str, suite: str, owner: str, lease_s: float, max_attempts: int) -> str:
        """'claimed' (the caller now holds the lease), or why not: 'held' (another live lease), 'waiting'
        (backoff after a failure), 'done', 'gave_up', or 'exhausted' (a crashed holder used the last attempt;
        now marked gave_up)."""
        from sqlalchemy.exc import IntegrityError

        now = self.clock()
        key = {"run_id": run_id, "suite": suite, "owner": owner, "expires": now + lease_s, "now": now}
        try:
            self._run(f"INSERT INTO {CLAIMS_TABLE} VALUES (:run_id, :suite, 'running', :owner, :expires, 1, NULL, :now)", **key)
            return "claimed"
        except IntegrityError:
            pass  # a row exists: take it over only if its lease ran out and attempts are left
        taken = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = 'running', owner = :owner, expires_at = :expires,
            attempts = attempts + 1, updated_at = :now WHERE run_id = :run_id AND suite = :suite
            AND state IN ('running', 'retry') AND expires_at <= :now AND attempts < :max_attempts""",
                          max_attempts=max_attempts, **key)
        if taken.rowcount == 1:
            return "claimed"
        row = self.get(run_id, suite)
        if row["state"] in ("done", "gave_up"):
            return row["state"]
        if row["expires_at"] > now:
            return "held" if row["state"] == "running" else "waiting"
        exhausted = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = 'gave_up', updated_at = :now,
            last_error = COALESCE(last_error, 'the scheduler holding it stopped (crashed or killed)')
            WHERE run_id = :run_id AND suite = :suite AND state IN ('running', 'retry') AND expires_at <= :now""",
                              run_id=run_id, suite=suite, now=now)
        return "exhausted" if exhausted.rowcount == 1 else self.claim(run_id, suite, owner, lease_s, max_attempts)

    def renew(self, run_id: str, suite: str, owner: str, lease_s: float) -> bool:
        """Extend the lease; False when this owner no longer holds it."""
        now = self.clock()
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET expires_at = :expires, updated_at = :now
            WHERE run_id = :run_id AND suite = :suite AND owner = :owner AND state = 'running'""",
                         run_id=run_id, suite=suite, owner=owner, expires=now + lease_s, now=now)
        return done.rowcount == 1

    def finish(self, run_id: str, suite: str, owner: str) -> bool:
        now = self.clock()
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = 'done', updated_at = :now, last_error = NULL
            WHERE run_id = :run_id AND suite = :suite AND owner = :owner AND state = 'running'""",
                         run_id=run_id, suite=suite, owner=owner, now=now)
        return done.rowcount == 1

    def hand_back(self, run_id: str, suite: str, owner: str) -> bool:
        """Give the claim up at once, uncounted (the scheduler was stopped, the run did not fail)."""
        now = self.clock()
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = 'retry', expires_at = :now, attempts = attempts - 1,
            updated_at = :now WHERE run_id = :run_id AND suite = :suite AND owner = :owner AND state = 'running'""",
                         run_id=run_id, suite=suite, owner=owner, now=now)
        return done.rowcount == 1

    def release(self, run_id: str, suite: str, owner: str, error: str, backoff_s: float, max_attempts: int) -> str:
        """After a failed attempt: 'retry' (claimable again after the backoff) or 'gave_up'."""
        now = self.clock()
        row = self.get(run_id, suite)
        attempts = row["attempts"] if row else max_attempts
        state = "gave_up" if attempts >= max_attempts else "retry"
        self._run(f"""UPDATE {CLAIMS_TABLE} SET state = :state, expires_at = :retry_at, last_error = :error,
            updated_at = :now WHERE run_id = :run_id AND suite = :suite AND owner = :owner AND state = 'running'""",
                  run_id=run_id, suite=suite, owner=owner, state=state, error=error[-2000:], now=now,
                  retry_at=now + backoff_s * 2 ** (attempts - 1))
        return state


class Heartbeat:
    """Renews a claim's lease every lease/3 seconds while the `with` block runs; `lost` tells if it failed."""

    def __init__(self, store: ClaimStore, run_id: str, suite: str, owner: str, lease_s: float):
        self.store, self.args, self.lease_s = store, (run_id, suite, owner, lease_s), lease_s
        self.lost, self._stop = False, threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{run_id[:8]}")

    def _beat(self):
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not self.store.renew(*self.args):
                    self.lost = True
                    return
            except Exception as exc:  # a database blip: try again at the next beat
                print(f"  warning: could not renew the lease on {self.args[0][:8]}: {exc}", flush=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class ScheduleConfig:
    suite: str
    limit: int | None = None
    experiments: tuple[str, ...] = ()
    max_runs: int | None = None  # evaluations attempted per tick
    lease_s: float = 900.0
    max_attempts: int = 3
    backoff_s: float = 300.0  # first retry after a failure; doubles per attempt
    batch_size: int = 8


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def runs_needing(client, cfg: ScheduleConfig) -> list:
    """FINISHED runs with a `final_dir` and no results for the suite, oldest first (all schedulers agree)."""
    if cfg.experiments:
        found = [client.get_experiment_by_name(name) for name in cfg.experiments]
        missing = [name for name, exp in zip(cfg.experiments, found) if exp is None]
        if missing:
            raise WorkbenchError(f"schedule: no experiment named {', '.join(missing)} in {client.tracking_uri}")
        ids = [exp.experiment_id for exp in found]
    else:
        ids = [exp.experiment_id for exp in client.search_experiments()]
    runs, token = [], None
    while ids:
        page = client.search_runs(ids, filter_string="attributes.status = 'FINISHED' and tags.final_dir != ''",
                                  order_by=["attributes.start_time ASC"], max_results=1000, page_token=token)
        runs += [r for r in page if not _has_results(r.data.tags, cfg.suite)]
        token = page.token
        if not token:
            break
    return runs


def _has_results(tags: dict, suite: str) -> bool:
    return f"eval.{suite}.source" in tags or f"eval.{suite}.gave_up" in tags


def evaluate_run(run_id: str, cfg: ScheduleConfig) -> dict:
    """Load the run's final model and score it: `run_suite`'s result."""
    from workbench.evaluate import load_target, run_suite

    model, tokenizer, _ = load_target(run_id)
    try:
        return run_suite(model, tokenizer, cfg.suite, limit=cfg.limit, batch_size=cfg.batch_size)
    finally:
        del model
        gc.collect()


def _say(line: str) -> None:
    print(line, flush=True)  # one line per event, visible at once in cron mail and `kubectl logs`


def tick(cfg: ScheduleConfig, store: ClaimStore, client, owner: str, evaluate=evaluate_run, say=_say) -> list[str]:
    """One pass: claim and evaluate the runs needing the suite. Returns the run ids this tick evaluated."""
    from workbench.evaluate import log_to_run

    pending = runs_needing(client, cfg)
    if not pending:
        say(f"no runs need '{cfg.suite}'")
        return []
    say(f"{len(pending)} run{'s' * (len(pending) != 1)} need{'s' * (len(pending) == 1)} '{cfg.suite}'")
    evaluated, attempted = [], 0
    for run in pending:
        if cfg.max_runs is not None and attempted >= cfg.max_runs:
            say(f"stopping at --max-runs {cfg.max_runs}; the rest wait for the next tick")
            break
        run_id, short = run.info.run_id, run.info.run_id[:8]
        outcome = store.claim(run_id, cfg.suite, owner, cfg.lease_s, cfg.max_attempts)
        if outcome == "exhausted":
            client.set_tag(run_id, f"eval.{cfg.suite}.gave_up", f"{cfg.max_attempts} attempts; last: scheduler stopped mid-run")
        if outcome != "claimed":
            say(f"skipping {short}: {CLAIM_WORDS[outcome]}")
            continue
        if _has_results(client.get_run(run_id).data.tags, cfg.suite):  # finished elsewhere since the search
            store.finish(run_id, cfg.suite, owner)
            say(f"skipping {short}: {CLAIM_WORDS['done']}")
            continue
        attempted += 1
        if _evaluate_claimed(run, cfg, store, client, owner, evaluate, log_to_run, say):
            evaluated.append(run_id)
    return evaluated


CLAIM_WORDS = {"held": "another scheduler is evaluating it", "waiting": "waiting out the backoff after a failure",
               "done": "already evaluated", "gave_up": "given up after too many failed attempts",
               "exhausted": "its last attempt was lost with a stopped scheduler; giving up"}


def _evaluate_claimed(run, cfg, store, client, owner, evaluate, log_to_run, say) -> bool:
    run_id, short = run.info.run_id, run.info.run_id[:8]
    attempt = store.get(run_id, cfg.suite)["attempts"]
    name = run.data.tags.get("mlflow.runName", "")
    say(f"evaluating {short} ({name}) on '{cfg.suite}', attempt {attempt} of {cfg.max_attempts} ...")
    start = time.perf_counter()
    try:
        with Heartbeat(store, run_id, cfg.suite, owner, cfg.lease_s) as heartbeat:
            result = evaluate(run_id, cfg)
        if heartbeat.lost:  # another scheduler took the run over: its scores win, ours are dropped
            raise WorkbenchError("lost the claim while evaluating (lease expired); not logging")
        log_to_run(run_id, result)
    except KeyboardInterrupt:  # stopped (Ctrl-C, SIGTERM): hand the run back at once, no backoff
        store.hand_back(run_id, cfg.suite, owner)
        raise
    except Exception as exc:  # any failure of one run must not stop the tick
        state = store.release(run_id, cfg.suite, owner, f"{type(exc).__name__}: {exc}", cfg.backoff_s, cfg.max_attempts)
        client.set_tag(run_id, f"eval.{cfg.suite}.attempts", str(attempt))
        if state == "gave_up":
            client.set_tag(run_id, f"eval.{cfg.suite}.gave_up", f"{attempt} attempts; last: {type(exc).__name__}: {exc}"[:5000])
        say(f"  {short} failed ({type(exc).__name__}: {exc}); " + ("giving up" if state == "gave_up" else "will retry later"))
        return False
    client.set_tag(run_id, f"eval.{cfg.suite}.done", _utc_now())
    client.set_tag(run_id, f"eval.{cfg.suite}.attempts", str(attempt))
    store.finish(run_id, cfg.suite, owner)
    scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result["scores"].items()))
    say(f"  evaluated {short} in {time.perf_counter() - start:.1f} s: {scores}")
    return True


def next_tick_in(every: float | None, cron: str | None, now: float | None = None) -> float:
    """Seconds until the next tick: `every` seconds, or the next time matching the cron expression."""
    if every is not None:
        return every
    from croniter import croniter

    now = time.time() if now is None else now
    return max(0.0, croniter(cron, now).get_next(float) - now)


def check_cron(cron: str) -> None:
    from croniter import croniter

    if not croniter.is_valid(cron):
        raise WorkbenchError(f"schedule: --cron '{cron}' is not a valid cron expression (e.g. '*/30 * * * *')")


def run_schedule(cfg: ScheduleConfig, every: float | None = None, cron: str | None = None, once: bool = False,
                 claims_db: str | None = None, say=_say) -> int:
    """Tick once (`once`), or forever on `every` seconds / the `cron` expression. Returns runs evaluated."""
    import mlflow

    from workbench.eval_tasks import suite_tasks
    from workbench.paths import default_tracking_uri

    suite_tasks(cfg.suite)  # a bad suite fails before anything else
    if cron:
        check_cron(cron)
    uri = default_tracking_uri()
    store = ClaimStore(claims_url(claims_db or os.environ.get("WORKBENCH_CLAIMS_DB"), uri))
    client, owner = mlflow.MlflowClient(tracking_uri=uri), owner_id()
    say(f"scheduler {owner}: suite '{cfg.suite}', store {uri}, claims {store.url}")
    if threading.current_thread() is threading.main_thread():  # Kubernetes stops pods with SIGTERM
        signal.signal(signal.SIGTERM, _interrupt)
    total = 0
    try:
        while True:
            total += len(tick(cfg, store, client, owner, say=lambda line: say(f"[{_utc_now()}] {line}")))
            if once:
                return total
            wait = next_tick_in(every, cron)
            say(f"next tick in {wait:.0f} s")
            time.sleep(wait)
    except KeyboardInterrupt:
        say(f"stopped after evaluating {total} run(s); a run stopped mid-evaluation goes back to the queue")
        return total


def _interrupt(signum, frame):
    raise KeyboardInterrupt
