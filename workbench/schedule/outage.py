"""Tracking-store and claims-database outages: recognised, retried, and reported in one line (the scheduler's).

    from workbench.schedule.outage import StoreRetry, store_outage
    retry = StoreRetry(budget_s=300, say=print)
    value = retry(lambda: client.search_runs(...), "listing runs")   # rides out an outage, else StoreUnavailable

An outage (`store_outage`: a refused or dropped connection, a database that is locked or restarting, an MLflow
server answering 5xx) is retried with backoff for up to the budget and never counts as a failed attempt of the
run being evaluated.
"""

import re
import time
from dataclasses import dataclass

from workbench.errors import WorkbenchError


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
