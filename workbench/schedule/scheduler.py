"""Scheduled evals: every tick, score the finished runs that have no results for a suite yet.

    workbench schedule --suite legal --once --limit 20         # one tick now (for cron / Kubernetes)
    workbench schedule --suite standard --every 600            # a tick every 10 minutes, forever
    workbench schedule --suite standard --cron "*/30 * * * *"  # ticks on a cron expression (croniter)
    workbench schedule --suite legal --reset 1a2b3c4d          # put a given-up run back (or --reset all)
    make schedule SUITE=legal ONCE=1

A run needs the suite when it is FINISHED, has a `final_dir` tag and lacks the tags `eval.<suite>.source`
(set with the scores, by this scheduler or by `workbench eval <run> --suite <suite>`) and `eval.<suite>.gave_up`.

Claims. MLflow tags are not compare-and-set, so schedulers sharing a tracking store agree through a claims
table in a SQL database, one row per (run_id, suite):
  - claiming is one transaction (an INSERT, or an UPDATE taking over an expired lease): exactly one scheduler
    wins. Every successful claim bumps the row's `generation`; the holder quotes owner + generation on every
    later write, so a scheduler that lost the claim cannot write over its successor (a fence);
  - a heartbeat renews the lease (every lease/3, at most 60 s). A refused renewal, or no successful one before
    the lease ran out, loses the claim: the evaluation is interrupted (LeaseLost, raised in its thread) and
    its result discarded. Renewal errors are printed once per streak and counted;
  - commit, then publish: the result is committed to the row (state `publishing`, scores stored) by one UPDATE
    that checks owner, generation, state and a live lease; only then is anything logged to MLflow, then the
    row is `done`. At most one result per (run, suite) is logged, whatever the interleaving. Publishing
    uploads the samples, then logs the metrics, then the tags (`source` last). A publisher that stops before
    its tags leaves its committed scores; when its lease runs out a tick re-publishes exactly those: the same
    metric entries (value, timestamp, step 0; entries already there are skipped, so each history stays at
    length 1) and the same tags, plus `eval.<suite>.republished`. The samples are not kept in the row: they
    are what the first publisher uploaded. (One that stops after its tags has logged everything; its row
    stays `publishing`, harmless: the `source` tag keeps the run off every list);
  - a failed evaluation (the model does not load, lm-eval raises) is an attempt: retried after backoff *
    2**(attempts-1), `gave_up` after `max_attempts` (a scheduler that crashed mid-evaluation counts too);
    every tick lists the given-up runs, `--reset` puts them back;
  - a store outage is not an attempt: connection errors, OperationalError (sqlite "database is locked"),
    MLflow's 5xx / TEMPORARILY_UNAVAILABLE during search, claim, renewal, logging or finish are retried with
    exponential backoff (1 s doubling, at most 30 s apart, up to --store-retry seconds, default 300); past
    that the tick stops (exit code 75 with --once) and what it held goes back to the queue uncounted, unless
    the claims database itself is the store that is down: then its lease runs out and the next claim counts it.
Where the claims live (`--claims-db` or $WORKBENCH_CLAIMS_DB, a SQLAlchemy URL or a file path):
  - default, for a `sqlite:///<dir>/<name>.db` tracking store: `<dir>/<name>.eval-claims.db` next to it;
  - another SQLite file: schedulers on one machine, or on shared storage whose file locks work;
  - PostgreSQL (`postgresql://user:pw@host/db`, driver psycopg from the `postgres` extra, in `all`): for
    schedulers on several machines. Any other tracking store (http://, file:) needs `--claims-db`.
Leases use each scheduler's wall clock: keep clocks in sync (NTP) and leases far above any skew.
"""

import gc
import inspect
import json
import os
import re
import signal
import socket
import tempfile
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from workbench.schedule.claims import Claim, ClaimStore, claims_url
from workbench.track.store import tracking_client
from workbench.schedule.lease import Heartbeat, LeaseLost
from workbench.schedule.outage import StoreRetry, StoreUnavailable, _one_line, _say, shown, store_outage
from workbench.errors import WorkbenchError


# --- one tick -------------------------------------------------------------------------------------------


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
    store_retry_s: float = 300.0  # a store outage is ridden out this long (backoff waits) before the tick stops
    store_backoff_s: float = 1.0  # first wait after a store error; doubles, at most 30 s apart
    heartbeat_s: float | None = None  # lease renewals apart; default lease/3, at most 60 s
    unsafe_weak_sandbox: bool = False  # run code tasks under a sandbox below the minimum isolation (run_suite's opt-in)


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
            raise WorkbenchError(f"schedule: no experiment named {', '.join(missing)} in {shown(client.tracking_uri)}")
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


def _attempts(n: int) -> str:
    return f"{n} attempt{'s' * (n != 1)}"


def _has_results(tags: dict, suite: str) -> bool:
    return f"eval.{suite}.source" in tags or f"eval.{suite}.gave_up" in tags


def evaluate_run(run_id: str, cfg: ScheduleConfig) -> dict:
    """Load the run's final model and score it: `run_suite`'s result."""
    from workbench.evaluate.harness import load_target, run_suite

    options = {}
    if "unsafe_weak_sandbox" in inspect.signature(run_suite).parameters:  # a run_suite without it has no minimum
        options["unsafe_weak_sandbox"] = cfg.unsafe_weak_sandbox  # isolation to opt out of
    model, tokenizer, _ = load_target(run_id)
    try:
        return run_suite(model, tokenizer, cfg.suite, limit=cfg.limit, batch_size=cfg.batch_size, **options)
    finally:
        del model
        gc.collect()


def committed_result(result: dict, attempt: int) -> dict:
    """What is committed to the claim before publishing: everything a re-publish must write identically."""
    return {"scores": result["scores"], "source": str(result.get("source")),
            "limit": str(result["results"].get("workbench", {}).get("limit")), "attempts": str(attempt),
            "done": _utc_now(), "timestamp_ms": int(time.time() * 1000)}


def publish(client, run_id: str, suite: str, committed: dict, retry, result: dict | None = None) -> None:
    """Log committed scores as `workbench eval` does (metrics eval/<task>/<metric> at step 0, tags
    eval.<suite>.source/limit, samples under eval/<suite>/) plus eval.<suite>.done/attempts, stamped with the
    committed time (log_to_run stamps the time of the call: a re-publish must write the very same entries).
    `result`, with the samples, is there only the first time: a re-publish (None) uploads no artifacts."""
    from mlflow.entities import Metric, RunTag

    if result is not None:  # artifacts first: once the scores are in, nothing re-uploads them
        from workbench.evaluate.harness import _write_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            _write_artifacts(Path(tmp), result)
            retry("uploading the eval artifacts", client.log_artifacts, run_id, tmp, artifact_path=f"eval/{suite}")
    metrics = [Metric(key=f"eval/{name}", value=value, timestamp=committed["timestamp_ms"], step=0)
               for name, value in sorted(committed["scores"].items())]
    tags = {"done": committed["done"], "attempts": committed["attempts"], "limit": committed["limit"]}
    if result is None:
        metrics = [m for m in metrics if not _logged(client, run_id, m, retry)]
        tags["republished"] = f"{_utc_now()}; artifacts as the first publisher left them"
    tags["source"] = committed["source"]  # last: it takes the run off every scheduler's list
    retry("logging the scores", client.log_batch, run_id, metrics=metrics)
    retry("tagging the run", client.log_batch, run_id, tags=[RunTag(f"eval.{suite}.{k}", v) for k, v in tags.items()])


def _logged(client, run_id: str, metric, retry) -> bool:
    history = retry("reading a metric history", client.get_metric_history, run_id, metric.key)
    return any((m.timestamp, m.step, m.value) == (metric.timestamp, metric.step, metric.value) for m in history)


def tick(cfg: ScheduleConfig, store: ClaimStore, client, owner: str, evaluate=evaluate_run, say=_say,
         sleep=time.sleep) -> list[str]:
    """One pass: claim and evaluate the runs needing the suite, then list the given-up ones. Returns the run
    ids this tick evaluated. `sleep` (the store-retry backoff) is injectable for tests."""
    return _Tick(cfg, store, client, owner, evaluate, say, sleep).run()


CLAIM_WORDS = {"held": "another scheduler is evaluating it", "waiting": "waiting out the backoff after a failure",
               "done": "already evaluated", "gave_up": "given up after too many failed attempts",
               "exhausted": "its last attempt was lost with a stopped scheduler; giving up"}


class _Tick:
    def __init__(self, cfg, store, client, owner, evaluate, say, sleep):
        self.cfg, self.store, self.client, self.owner = cfg, store, client, owner
        self.evaluate_fn, self.say = evaluate, say
        self.retry = StoreRetry(cfg.store_retry_s, cfg.store_backoff_s, sleep=sleep, say=say)

    def run(self) -> list[str]:
        cfg, say = self.cfg, self.say
        pending = self.retry("searching for runs", runs_needing, self.client, cfg)
        n = len(pending)
        say(f"{n} run{'s' * (n != 1)} need{'s' * (n == 1)} '{cfg.suite}'" if n else f"no runs need '{cfg.suite}'")
        evaluated, attempted = [], 0
        for run in pending:
            if cfg.max_runs is not None and attempted >= cfg.max_runs:
                say(f"stopping at --max-runs {cfg.max_runs}; the rest wait for the next tick")
                break
            outcome = self.visit(run)
            attempted += outcome in ("evaluated", "failed", "lost")
            if outcome == "evaluated":
                evaluated.append(run.info.run_id)
        self.say_given_up()
        return evaluated

    def visit(self, run) -> str:
        cfg, run_id, short = self.cfg, run.info.run_id, run.info.run_id[:8]
        claim = self.retry("claiming a run", self.store.claim, run_id, cfg.suite, self.owner, cfg.lease_s,
                           cfg.max_attempts)
        if claim.outcome in ("exhausted", "gave_up"):  # the tag keeps it off the list of runs needing the suite
            why = f"{_attempts(claim.attempts)}; last: {claim.last_error or 'unknown'}"[:5000]
            self.retry("tagging a given-up run", self.client.set_tag, run_id, f"eval.{cfg.suite}.gave_up", why)
        if claim.outcome not in ("claimed", "republish"):
            self.say(f"skipping {short}: {CLAIM_WORDS[claim.outcome]}")
            return "skipped"
        if f"eval.{cfg.suite}.source" in self.retry("reading a run", self.client.get_run, run_id).data.tags:
            self.retry("closing a claim", self.store.finish, run_id, cfg.suite, self.owner, claim.generation)
            self.say(f"skipping {short}: {CLAIM_WORDS['done']}")  # scored elsewhere since the search
            return "skipped"
        try:
            return self.republish(run, claim) if claim.outcome == "republish" else self.evaluate(run, claim)
        except (KeyboardInterrupt, StoreUnavailable):  # stopped, or a store is down for good: back to the queue
            self.hand_back(claim, run_id)
            raise

    def heartbeat(self, run_id: str, claim: Claim) -> Heartbeat:
        return Heartbeat(self.store, (run_id, self.cfg.suite, self.owner, claim.generation), self.cfg.lease_s,
                         claim.expires_at, self.cfg.heartbeat_s, self.cfg.store_backoff_s, self.say)

    def evaluate(self, run, claim: Claim) -> str:
        cfg, run_id, short = self.cfg, run.info.run_id, run.info.run_id[:8]
        what = f"{short} ({run.data.tags.get('mlflow.runName', '')}) on '{cfg.suite}', attempt {claim.attempts} of " \
               f"{cfg.max_attempts}"
        print(f"evaluating {what} ...", file=sys.stderr, flush=True)  # the log (and the terminal with -v)
        start = time.perf_counter()
        with self.heartbeat(run_id, claim) as heartbeat:
            outcome, result = self.run_evaluation(run_id, claim, heartbeat)
            if outcome != "ok":
                return outcome
            committed = committed_result(result, claim.attempts)
            if not self.retry("committing a result", self.store.commit, run_id, cfg.suite, self.owner,
                              claim.generation, json.dumps(committed), cfg.lease_s):
                self.say(f"  {short}: the claim was lost before the result was committed (its lease ran out or "
                         "another scheduler took the run over); result discarded, nothing logged")
                return "lost"
            publish(self.client, run_id, cfg.suite, committed, self.retry, result)
        self.finish(run_id, claim)
        scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result["scores"].items()))
        self.say(f"evaluated {what} in {time.perf_counter() - start:.1f} s: {scores}")  # the run's one line
        return "evaluated"

    def run_evaluation(self, run_id: str, claim: Claim, heartbeat: Heartbeat) -> tuple[str, dict | None]:
        try:
            with heartbeat.interruptible():
                result = self.evaluate_fn(run_id, self.cfg)
        except LeaseLost:
            result = None
        except Exception as exc:  # any failure of one run must not stop the tick
            return self.failed(run_id, claim, exc), None
        if heartbeat.lost or result is None:
            self.say(f"  {run_id[:8]}: lost the claim while evaluating ({heartbeat.why}); evaluation abandoned, "
                     "result discarded, nothing logged")
            return "lost", None
        return "ok", result

    def failed(self, run_id: str, claim: Claim, exc: Exception) -> str:
        cfg, short, error = self.cfg, run_id[:8], f"{type(exc).__name__}: {exc}"
        if store_outage(exc, network=False):  # e.g. MLflow down while the run's model was looked up
            self.retry("handing a run back", self.store.hand_back, run_id, cfg.suite, self.owner, claim.generation)
            self.say(f"  {short}: a store failed during the evaluation ({_one_line(error, 200)}); handed back, "
                     "not counted as an attempt")
            return "outage"
        state = self.retry("recording a failure", self.store.release, run_id, cfg.suite, self.owner, claim.generation,
                           claim.attempts, error, cfg.backoff_s, cfg.max_attempts)
        if state is None:
            self.say(f"  {short} failed ({_one_line(error)}), but its claim had already passed to another scheduler")
            return "lost"
        self.retry("tagging a failure", self.client.set_tag, run_id, f"eval.{cfg.suite}.attempts", str(claim.attempts))
        if state == "gave_up":
            self.retry("tagging a given-up run", self.client.set_tag, run_id, f"eval.{cfg.suite}.gave_up",
                       f"{_attempts(claim.attempts)}; last: {error}"[:5000])
        then = "giving up" if state == "gave_up" else "will retry later"
        self.say(f"  {short} failed ({_one_line(error)}); {then}")
        return "failed"

    def republish(self, run, claim: Claim) -> str:
        run_id, short, committed = run.info.run_id, run.info.run_id[:8], json.loads(claim.result)
        self.say(f"re-publishing {short}: a scheduler committed its scores (attempt {committed['attempts']}) but "
                 "stopped before finishing; writing the same entries again")
        with self.heartbeat(run_id, claim):
            publish(self.client, run_id, self.cfg.suite, committed, self.retry)
        self.finish(run_id, claim)
        return "republished"

    def finish(self, run_id: str, claim: Claim) -> None:
        if not self.retry("closing a claim", self.store.finish, run_id, self.cfg.suite, self.owner, claim.generation):
            self.say(f"  {run_id[:8]}: published, but the claim had passed to another scheduler meanwhile; it "
                     "re-publishes the same committed entries")

    def hand_back(self, claim: Claim, run_id: str) -> None:
        try:
            self.store.hand_back(run_id, self.cfg.suite, self.owner, claim.generation)
        except Exception:  # the claims database is the store that is down: the lease runs out instead
            pass

    def say_given_up(self) -> None:
        suite, rows = self.cfg.suite, self.retry("listing given-up runs", self.store.given_up, self.cfg.suite)
        if rows:
            self.say(f"given up on {len(rows)} run{'s' * (len(rows) != 1)} for '{suite}' "
                     f"(workbench schedule --suite {suite} --reset RUN_ID|all puts them back):")
        for row in rows:
            last = _one_line(row["last_error"] or "?", 200)
            self.say(f"  {row['run_id'][:8]}: {_attempts(row['attempts'])}; last: {last}")


# --- reset, and the schedule itself ---------------------------------------------------------------------

STATE_WORDS = {"running": "another scheduler is evaluating it", "publishing": "its scores are being logged",
               "retry": "it is waiting for its next attempt", "done": "it is already evaluated"}


def reset_runs(store: ClaimStore, client, suite: str, which: str, say=_say, retry=None) -> list[str]:
    """Put given-up runs back in the queue: claim reopened with attempts from zero, `eval.<suite>.gave_up`
    removed. `which`: a run id, a unique prefix of one (ticks print 8 digits), or 'all'."""
    retry = retry or StoreRetry(say=say)
    if which == "all":
        run_ids = [row["run_id"] for row in retry("listing given-up runs", store.given_up, suite)]
        if not run_ids:
            say(f"no runs are given up on '{suite}'")
    else:
        if not re.fullmatch(r"[0-9a-f]{1,32}", which):  # also keeps LIKE wildcards out of the lookup
            raise WorkbenchError(f"schedule: --reset {which!r}: expected a run id (hex digits, at least the 8 a "
                                 "tick prints) or 'all'")
        run_ids = [_given_up_run(retry("finding a claim", store.matching, suite, which), suite, which)]
    for run_id in run_ids:
        retry("resetting a claim", store.reset, run_id, suite)
        if f"eval.{suite}.gave_up" in retry("reading a run", client.get_run, run_id).data.tags:
            retry("removing the gave_up tag", client.delete_tag, run_id, f"eval.{suite}.gave_up")
        say(f"reset {run_id[:8]} on '{suite}': the next tick evaluates it again, attempts counted from 1")
    return run_ids


def _given_up_run(rows: list[dict], suite: str, which: str) -> str:
    if not rows:
        raise WorkbenchError(f"schedule: --reset {which}: no run with that id has been scheduled on '{suite}'")
    if len(rows) > 1:
        raise WorkbenchError(f"schedule: --reset {which}: {len(rows)} runs start with that; give more digits")
    if rows[0]["state"] != "gave_up":
        raise WorkbenchError(f"schedule: --reset {which}: run {rows[0]['run_id'][:8]} is not given up on '{suite}' "
                             f"({STATE_WORDS.get(rows[0]['state'], rows[0]['state'])}); only given-up runs are reset")
    return rows[0]["run_id"]


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
                 claims_db: str | None = None, say=_say, reset: str | None = None) -> int:
    """Reset given-up runs (`reset`), then tick once (`once`), or forever on `every` seconds / the `cron`
    expression; a reset alone exits after resetting. Returns the number of runs evaluated."""

    from workbench.evaluate.tasks import suite_tasks
    from workbench.paths import default_tracking_uri

    suite_tasks(cfg.suite)  # a bad suite fails before anything else
    if cron:
        check_cron(cron)
    uri = default_tracking_uri()
    retry = StoreRetry(cfg.store_retry_s, cfg.store_backoff_s, say=say)
    url = claims_url(claims_db or os.environ.get("WORKBENCH_CLAIMS_DB"), uri)
    store = retry("opening the claims database", ClaimStore, url)
    client, owner = retry("opening the tracking store", tracking_client, uri), owner_id()
    say(f"scheduler {owner}: suite '{cfg.suite}', store {shown(uri)}, claims {shown(store.url)}")
    if reset:
        reset_runs(store, client, cfg.suite, reset, say, retry)
        if not (once or every is not None or cron):
            return 0
    if threading.current_thread() is threading.main_thread():  # Kubernetes stops pods with SIGTERM
        signal.signal(signal.SIGTERM, _interrupt)
    total = 0
    try:
        while True:
            try:
                total += len(tick(cfg, store, client, owner, say=lambda line: say(f"[{_utc_now()}] {line}")))
            except StoreUnavailable as exc:
                if once:
                    raise
                say(f"[{_utc_now()}] tick stopped: {exc}")
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
