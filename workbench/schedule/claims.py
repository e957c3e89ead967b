"""The scheduler's claims table (used by workbench.schedule.scheduler; outages: outage.py, the heartbeat: lease.py).

    from workbench.schedule.claims import ClaimStore
    from workbench.schedule.lease import Heartbeat
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

import time
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.schedule.outage import shown

CLAIMS_TABLE = "workbench_eval_claims"
COLUMNS = "run_id, suite, state, owner, expires_at, attempts, last_error, updated_at, generation, result"
KEY = "run_id = :run_id AND suite = :suite"
FENCE = KEY + " AND owner = :owner AND generation = :generation"  # the claim this scheduler holds, no other


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


