"""The lease heartbeat: renews a claim while its run is evaluated, and interrupts the evaluation once it is lost.

    with Heartbeat(store, (run_id, "legal", owner, claim.generation), 900, claim.expires_at) as beat:
        with beat.interruptible():
            result = evaluate(run_id)       # LeaseLost is raised in this thread if the claim is lost meanwhile
"""

import ctypes
import threading
from contextlib import contextmanager

from workbench.schedule.outage import _say, describe


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

    def __init__(self, store, claim: tuple, lease_s: float, expires_at: float,
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
