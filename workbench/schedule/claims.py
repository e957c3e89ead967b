"""The scheduler's claims table, store-outage handling and lease heartbeat (used by workbench.schedule.scheduler).

    from workbench.schedule.claims import ClaimStore, Heartbeat, StoreRetry
    store = ClaimStore("postgresql://user:pw@db/claims")          # or sqlite:///<path>
    claim = store.claim(run_id, "legal", owner, lease_s=900, max_attempts=3)   # Claim(outcome="claimed", ...)
    with Heartbeat(store, (run_id, "legal", owner, claim.generation), 900, claim.expires_at) as beat:
        with beat.interruptible():
            result = evaluate(run_id)                                 # LeaseLost if the claim is lost meanwhile
        store.commit(run_id, "legal", owner, claim.generation, scores_json, 900)  # False: lost, log nothing
    store.finish(run_id, "legal", owner, claim.generation)

One row per (run_id, suite). States: running (evaluating) -> publishing (result committed, being logged) ->
done; running -> retry (failed, backoff) -> running ...; -> gave_up after max_attempts; reset -> retry.
  - claiming is one transaction (an INSERT, or an UPDATE taking over an expired lease): exactly one scheduler
    wins (primary key and row locks in PostgreSQL, BEGIN IMMEDIATE in SQLite). Every successful claim bumps
    `generation`; the holder quotes owner + generation on every later write (a fence), so a scheduler that
    lost its claim can write nothing over its successor;
  - `commit` moves running -> publishing, storing the result, in one UPDATE that checks owner, generation,
    state and a live lease. Only a committed result is logged, so at most one result per (run, suite) is;
    an expired `publishing` row is taken over (uncounted) to re-publish the very same result;
  - writes retried after a lost reply are idempotent (claim, commit, finish, release).
Store outages (`store_outage`) are retried by `StoreRetry` and never count as attempts.
"""

import ctypes
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

CLAIMS_TABLE = "workbench_eval_claims"
COLUMNS = "run_id, suite, state, owner, expires_at, attempts, last_error, updated_at, generation, result"
KEY = "run_id = :run_id AND suite = :suite"
FENCE = KEY + " AND owner = :owner AND generation = :generation"  # the claim this scheduler holds, no other


def _say(line: str) -> None:
    print(line, flush=True)  # one line per event, visible at once in cron mail and `kubectl logs`


def _one_line(text, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(exc: BaseException, limit: int = 200) -> str:
    """`Class: message` on one line; for SQLAlchemy's wrappers, the driver's own error (without the SQL)."""
    exc = getattr(exc, "orig", None) or exc
    return _one_line(f"{type(exc).__name__}: {exc}", limit)


def shown(url: str) -> str:
    """A store URL fit for logs: its password masked."""
    return re.sub(r"(//[^/:@]+):[^/@]*@", r"\1:***@", url)


def claims_url(claims_db: str | None, tracking_uri: str) -> str:
    """SQLAlchemy URL of the claims database: `claims_db` (URL or path), else next to a sqlite store."""
    if claims_db:
        return claims_db if "://" in claims_db else f"sqlite:///{Path(claims_db).expanduser().resolve()}"
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return f"sqlite:///{db.with_name(db.stem + '.eval-claims.db')}"
    raise WorkbenchError(f"schedule: the tracking store {shown(tracking_uri)} is not a sqlite file, so there is no "
                         "default place for claims; pass --claims-db (a shared sqlite file or a postgresql:// URL)")


# --- store outages: classified, retried, never counted as attempts -----------------------------------------


class StoreUnavailable(WorkbenchError):
    """The tracking store or the claims database stayed unavailable through every retry."""

    exit_code = 75  # EX_TEMPFAIL: cron and Kubernetes see a temporary failure, not bad input


def store_outage(exc: BaseException, network: bool = True) -> bool:
    """True when `exc` (or what it was raised from) says a store is down or busy for now: SQLAlchemy's
    OperationalError / InterfaceError / DisconnectionError / pool timeout (sqlite "database is locked",
    connection refused), MLflow's TEMPORARILY_UNAVAILABLE / DEADLINE_EXCEEDED / rate limits and a tracking
    server's 5xx or missing reply. `network`: also plain connection errors, right for calls that only talk to
    the stores; an evaluation's own ConnectionError (say, an offline hub) is the evaluation failing."""
    import sqlite3

    from sqlalchemy import exc as sa

    down = (sa.OperationalError, sa.InterfaceError, sa.DisconnectionError, sa.TimeoutError, sqlite3.OperationalError)
    for _ in range(10):  # walk __cause__ / __context__: stores re-raise driver errors as their own
        if exc is None:
            return False
        if isinstance(exc, down) or getattr(exc, "connection_invalidated", False) or _mlflow_outage(exc):
            return True
        if network and _network_error(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _mlflow_outage(exc) -> bool:
    from mlflow.exceptions import MlflowException, RestException

    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code in ("TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED",
                          "RESOURCE_EXHAUSTED"):
        return True
    status = exc.get_http_status_code()  # a tracking server's 5xx (not 501), or no reply at all
    from_http = isinstance(exc, RestException) or str(exc).startswith("API request to ")
    return from_http and status >= 500 and status != 501


def _network_error(exc) -> bool:
    import requests

    return isinstance(exc, (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout))


@dataclass
class StoreRetry:
    """`retry(what, fn, *args)`: call `fn`, riding out store outages with exponential backoff (first_s,
    doubling, at most max_s apart) for up to total_s seconds of waiting, then StoreUnavailable. Any other
    error passes through at once. The first failure of a streak and the recovery are printed."""

    total_s: float = 300.0
    first_s: float = 1.0
    max_s: float = 30.0
    sleep: object = time.sleep
    say: object = _say

    def __call__(self, what: str, fn, *args, **kwargs):
        waited, delay, failures = 0.0, self.first_s, 0
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not store_outage(exc):
                    raise
                failures += 1
                if waited >= self.total_s:
                    raise StoreUnavailable(f"schedule: {what}: the store is still unavailable after {failures} tries "
                                           f"over {waited:.0f} s: {describe(exc)}") from exc
                if failures == 1:
                    self.say(f"  store unavailable while {what} ({describe(exc)}); retrying for up to "
                             f"{self.total_s:.0f} s (not counted as an attempt)")
                pause = min(delay, self.max_s, self.total_s - waited)
                self.sleep(pause)
                waited, delay = waited + pause, delay * 2
                continue
            if failures:
                self.say(f"  store back after {failures} failed tries ({waited:.1f} s) while {what}")
            return result


# --- the claims table -----------------------------------------------------------------------------------


def _engine(url: str, busy_timeout_s: float):
    from sqlalchemy import create_engine, event

    if not url.startswith("sqlite"):  # pre-ping: a connection the server dropped (restart, failover) is replaced
        # libpq timeouts, so that a vanished server fails a call (an outage, retried) instead of hanging it
        # (and with it the heartbeat) for the kernel's default of hours
        connect_args = {"connect_timeout": 10, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
                        "tcp_user_timeout": 30_000} if url.startswith("postgresql") else {}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})  # wait this long for another writer

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")  # take the write lock first: no lock upgrades, no deadlock

    return engine


@dataclass(frozen=True)
class Claim:
    """What `ClaimStore.claim` found: `outcome` is 'claimed' or 'republish' (the caller now holds the lease,
    as `generation`), or why not: 'held', 'waiting' (backoff), 'done', 'gave_up', 'exhausted'."""

    outcome: str
    generation: int = 0
    attempts: int = 0
    expires_at: float = 0.0
    result: str | None = None  # the committed scores (JSON) that a 'republish' writes again
    last_error: str | None = None


_SELECT = f"SELECT * FROM {CLAIMS_TABLE} WHERE {KEY}"
_INSERT = f"""INSERT INTO {CLAIMS_TABLE} ({COLUMNS}) VALUES (:run_id, :suite, 'running', :owner, :expires, 1, NULL,
    :now, 1, NULL) ON CONFLICT (run_id, suite) DO NOTHING"""
_TAKE = "owner = :owner, expires_at = :expires, generation = generation + 1, updated_at = :now"
_TAKE_OVER = f"""UPDATE {CLAIMS_TABLE} SET state = 'running', attempts = attempts + 1, {_TAKE} WHERE {KEY}
    AND state IN ('running', 'retry') AND expires_at <= :now AND attempts < :max_attempts"""
_TAKE_OVER_PUBLISHING = f"UPDATE {CLAIMS_TABLE} SET {_TAKE} WHERE {KEY} AND state = 'publishing' AND expires_at <= :now"
_EXHAUST = f"""UPDATE {CLAIMS_TABLE} SET state = 'gave_up', updated_at = :now,
    last_error = COALESCE(last_error, 'the scheduler holding it stopped (crashed or killed)')
    WHERE {KEY} AND state IN ('running', 'retry') AND expires_at <= :now"""


class ClaimStore:
    """The claims table. Every method is one short transaction; `clock` is injectable for tests."""

    def __init__(self, url: str, clock=time.time, busy_timeout_s: float = 60.0):
        from sqlalchemy import text

        self.url, self.clock, self.text = url, clock, text
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine = _engine(url, busy_timeout_s)
        self._create_table()

    def _create_table(self) -> None:
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.exc import DBAPIError

        try:
            self._run(f"""CREATE TABLE IF NOT EXISTS {CLAIMS_TABLE} (
                run_id VARCHAR(64) NOT NULL, suite VARCHAR(128) NOT NULL, state VARCHAR(16) NOT NULL,
                owner VARCHAR(256) NOT NULL, expires_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL,
                last_error TEXT, updated_at DOUBLE PRECISION NOT NULL, generation INTEGER NOT NULL DEFAULT 0,
                result TEXT, PRIMARY KEY (run_id, suite))""")
        except DBAPIError:  # PostgreSQL: two schedulers creating it at once, one loses on pg_type; fine if it exists
            if not sa_inspect(self.engine).has_table(CLAIMS_TABLE):
                raise
        have = {column["name"] for column in sa_inspect(self.engine).get_columns(CLAIMS_TABLE)}
        for name, kind in (("generation", "INTEGER NOT NULL DEFAULT 0"), ("result", "TEXT")):  # tables from before
            if name not in have:
                try:
                    self._run(f"ALTER TABLE {CLAIMS_TABLE} ADD COLUMN {name} {kind}")
                except DBAPIError:  # another scheduler added it first
                    pass

    def _run(self, sql: str, **params):
        with self.engine.begin() as db:
            return db.execute(self.text(sql), params)

    def close(self) -> None:
        self.engine.dispose()

    def get(self, run_id: str, suite: str) -> dict | None:
        row = self._run(f"SELECT * FROM {CLAIMS_TABLE} WHERE {KEY}", run_id=run_id, suite=suite).mappings().first()
        return dict(row) if row else None

    def claim(self, run_id: str, suite: str, owner: str, lease_s: float, max_attempts: int) -> Claim:
        """Take the run: a new row, or a takeover of an expired lease (a counted attempt; an expired
        `publishing` row is taken over uncounted, for a re-publish). One transaction."""
        now = self.clock()
        key = {"run_id": run_id, "suite": suite, "owner": owner, "expires": now + lease_s, "now": now,
               "max_attempts": max_attempts}
        with self.engine.begin() as db:
            def run(sql):
                return db.execute(self.text(sql), key)

            if run(_INSERT).rowcount == 1 or run(_TAKE_OVER).rowcount == 1:
                outcome = "claimed"
            elif run(_TAKE_OVER_PUBLISHING).rowcount == 1:
                outcome = "republish"
            else:
                outcome = _why_not(dict(run(_SELECT).mappings().one()), now, owner)
                if outcome == "exhausted" and run(_EXHAUST).rowcount != 1:
                    outcome = "held"  # taken meanwhile
            row = run(_SELECT).mappings().one()
        return Claim(outcome, row["generation"], row["attempts"], row["expires_at"], row["result"], row["last_error"])

    def renew(self, run_id: str, suite: str, owner: str, generation: int, lease_s: float) -> float | None:
        """Extend a live lease: the new expiry, or None when this claim is gone (taken over, or run out)."""
        now = self.clock()
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET expires_at = :expires, updated_at = :now WHERE {FENCE}
            AND state IN ('running', 'publishing') AND expires_at > :now""",
                         run_id=run_id, suite=suite, owner=owner, generation=generation, expires=now + lease_s, now=now)
        return now + lease_s if done.rowcount == 1 else None

    def commit(self, run_id: str, suite: str, owner: str, generation: int, result: str, lease_s: float) -> bool:
        """Phase one of publishing: store the result, state `publishing`, only while this claim is live.
        (Again on `publishing` of this same claim: a retry whose first reply was lost.)"""
        now = self.clock()
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = 'publishing', result = :result, expires_at = :expires,
            updated_at = :now WHERE {FENCE} AND state IN ('running', 'publishing') AND expires_at > :now""",
                         run_id=run_id, suite=suite, owner=owner, generation=generation, result=result,
                         expires=now + lease_s, now=now)
        return done.rowcount == 1

    def finish(self, run_id: str, suite: str, owner: str, generation: int) -> bool:
        """State `done`; False when the claim passed to another scheduler."""
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = 'done', last_error = NULL, updated_at = :now
            WHERE {FENCE} AND state IN ('running', 'publishing', 'done')""",
                         run_id=run_id, suite=suite, owner=owner, generation=generation, now=self.clock())
        return done.rowcount == 1

    def hand_back(self, run_id: str, suite: str, owner: str, generation: int, retry_in: float = 0.0) -> bool:
        """Give the claim up, uncounted (the scheduler stopped, or a store failed): an evaluation goes back to
        the queue, a committed result waits for a re-publish."""
        now = self.clock()
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = CASE WHEN state = 'running' THEN 'retry' ELSE state END,
            attempts = CASE WHEN state = 'running' THEN attempts - 1 ELSE attempts END, expires_at = :retry_at,
            updated_at = :now WHERE {FENCE} AND state IN ('running', 'publishing')""",
                         run_id=run_id, suite=suite, owner=owner, generation=generation, now=now,
                         retry_at=now + retry_in)
        return done.rowcount == 1

    def release(self, run_id: str, suite: str, owner: str, generation: int, attempts: int, error: str,
                backoff_s: float, max_attempts: int) -> str | None:
        """After a failed attempt: 'retry' (claimable after the backoff), 'gave_up', or None (claim lost)."""
        now = self.clock()
        state = "gave_up" if attempts >= max_attempts else "retry"
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = :state, expires_at = :retry_at, last_error = :error,
            updated_at = :now WHERE {FENCE} AND state IN ('running', :state)""",
                         run_id=run_id, suite=suite, owner=owner, generation=generation, state=state,
                         error=error[-2000:], now=now, retry_at=now + backoff_s * 2 ** (attempts - 1))
        return state if done.rowcount == 1 else None

    def reset(self, run_id: str, suite: str) -> bool:
        """A given-up run back in the queue, attempts from zero."""
        done = self._run(f"""UPDATE {CLAIMS_TABLE} SET state = 'retry', attempts = 0, expires_at = 0, last_error = NULL,
            result = NULL, updated_at = :now WHERE {KEY} AND state = 'gave_up'""",
                         run_id=run_id, suite=suite, now=self.clock())
        return done.rowcount == 1

    def given_up(self, suite: str) -> list[dict]:
        rows = self._run(f"""SELECT run_id, attempts, last_error FROM {CLAIMS_TABLE} WHERE suite = :suite
            AND state = 'gave_up' ORDER BY updated_at, run_id""", suite=suite).mappings()
        return [dict(row) for row in rows]

    def matching(self, suite: str, prefix: str) -> list[dict]:
        """Claims of the suite whose run id starts with `prefix` (hex digits only: no LIKE wildcards)."""
        rows = self._run(f"SELECT run_id, state FROM {CLAIMS_TABLE} WHERE suite = :suite AND run_id LIKE :pattern",
                         suite=suite, pattern=prefix + "%").mappings()
        return [dict(row) for row in rows]


def _why_not(row: dict, now: float, owner: str) -> str:
    if row["state"] in ("done", "gave_up"):
        return row["state"]
    if row["expires_at"] > now:
        if row["state"] == "running" and row["owner"] == owner:
            return "claimed"  # our own claim, retried after its reply was lost (one claim at a time per owner)
        return "held" if row["state"] in ("running", "publishing") else "waiting"
    return "exhausted"  # expired, but no attempts left


# --- the heartbeat --------------------------------------------------------------------------------------


class LeaseLost(BaseException):
    """Raised in the evaluating thread when its claim is lost. A BaseException, like KeyboardInterrupt, so
    that an evaluation's own `except Exception` does not swallow it."""

    def __str__(self):
        return "the claim was lost"


def _raise_in(thread_id: int, exc_type) -> None:
    """CPython's PyThreadState_SetAsyncExc: raise `exc_type` in that thread at its next bytecode; None cancels
    one not yet raised."""
    exc = ctypes.py_object(exc_type) if exc_type else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), exc)


class Heartbeat:
    """Keeps a claim's lease alive while the `with` block runs; `lost` (and `why`) once it is not.

    Renews every `every_s` (default lease/3, at most 60 s). A refused renewal loses the claim at once: it is
    noticed at most one beat after the takeover. A renewal that raises is a failure: the first of a streak is
    printed, all are counted (`failures`), retries come sooner (retry_s, doubling), and when the lease has run
    out with no success the claim is lost, noticed at the expiry. On loss, code inside `interruptible()` gets
    LeaseLost at its next Python bytecode (a long C call, e.g. one forward pass, finishes first)."""

    def __init__(self, store: ClaimStore, claim: tuple, lease_s: float, expires_at: float,
                 every_s: float | None = None, retry_s: float = 1.0, say=_say):
        # claim: (run_id, suite, owner, generation), the fence every renewal quotes
        self.store, self.claim, self.lease_s, self.expires_at = store, claim, lease_s, expires_at
        self.every_s, self.retry_s, self.say = every_s or min(lease_s / 3, 60.0), retry_s, say
        self.lost, self.why, self.failures = False, "", 0
        self._stop, self._lock, self._target = threading.Event(), threading.Lock(), None
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{claim[0][:8]}")

    def _beat(self) -> None:
        wait, streak = self.every_s, 0
        while not self._stop.wait(wait):
            try:
                expires = self.store.renew(*self.claim, self.lease_s)
            except Exception as exc:
                streak, self.failures = streak + 1, self.failures + 1
                left = self.expires_at - self.store.clock()
                if left <= 0:
                    return self._lose(f"no renewal succeeded before the lease ran out; {streak} failed, "
                                      f"last: {describe(exc)}")
                if streak == 1:
                    self.say(f"  warning: could not renew the lease on {self.claim[0][:8]} ({describe(exc)}); "
                             f"retrying: the claim is lost unless a renewal succeeds within {left:.0f} s")
                wait = min(self.every_s, self.retry_s * 2 ** (streak - 1), left)
                continue
            if expires is None:
                return self._lose("its lease ran out or another scheduler took the run over")
            if streak:
                self.say(f"  lease on {self.claim[0][:8]} renewed again after {streak} failed renewal(s)")
            wait, streak, self.expires_at = self.every_s, 0, expires

    def _lose(self, why: str) -> None:
        with self._lock:
            self.lost, self.why = True, why
            if self._target is not None:
                _raise_in(self._target, LeaseLost)

    @contextmanager
    def interruptible(self):
        """The block (the evaluation) is interrupted with LeaseLost if the claim is lost while it runs."""
        with self._lock:
            if self.lost:
                raise LeaseLost
            self._target = threading.get_ident()
        try:
            yield
        finally:
            with self._lock:
                self._target = None
                _raise_in(threading.get_ident(), None)  # one set but not yet raised: `lost` tells the caller

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


