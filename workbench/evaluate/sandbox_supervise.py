"""Supervising sandboxed processes: pipes read up to their caps, the checker's calls relayed to the worker and
the worker's plain-data replies back, deadlines, kills, and the status each run ends with.

    from workbench.evaluate.sandbox_supervise import run_program_process, run_split
    run_split(program, tests, None, "add", SandboxLimits(), "bwrap")   # prelude None, entry point add
    run_program_process("print(1)", SandboxLimits(), "bwrap")

The public API and the pass rule are in workbench.evaluate.sandbox (its docstring says what each status
means); the processes are started by sandbox_launch.py. Tests:
`.venv/bin/python -m pytest -q tests/unit/evaluate/test_sandbox.py`. Standard library only.

A split run has two sandboxes that never share a process: the worker (the untrusted program) and the checker
(the trusted tests). This supervisor holds both ends and relays lines of plain data: the worker's first line
must be its `["ready", names]` (passed on to the checker), then exactly one reply per call the checker makes;
any other line from the worker ends the run as "invalid". Only the checker's `["verdict", "passed"]`, followed
by its exit 0, passes a run; the worker ending before that while the checker waits on it decides the run
(exited_early, killed, memory, failed, timeout), and so does a call outliving its deadline.
"""

import json
import os
import secrets
import selectors
import signal
import time
from dataclasses import dataclass

from workbench.evaluate.sandbox_launch import (BOOTSTRAP_FAILED, BOOTSTRAP_MARK, EXITED_EARLY, Launched,
                                               SandboxLimits, launch, release)

CHANNEL_CAP = 256  # bytes read from run_program's token pipe; the token is 32
GRACE_SECONDS = 5.0  # after a run is decided: for its processes to exit and their pipes to close


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # run_tests: the checker's verdict after the tests returned; run_program: exit status 0 only
    status: str  # "passed" | "failed" | "exited_early" | "timeout" | "memory" | "killed" | "invalid" | "unsupported" | "error"
    returncode: int | None  # exit code of the process that decided, -signal if a signal ended it, None if killed
    stdout: str  # capped; run_tests: the program's, then the tests'
    stderr: str  # capped; run_tests: the program's, then the tests'
    seconds: float
    completed: bool = False  # the program's code (and the tests, if any) returned normally
    mode: str = "program"  # "split": tests in their own sandbox against the program's functions; "program": exit status


class Watched:
    """One launched process, with what has been read from its pipes so far."""

    def __init__(self, process: Launched, limits: SandboxLimits):
        self.process, self.proc, self.limits = process, process.proc, limits
        self.out, self.err, self.partial = bytearray(), bytearray(), bytearray()

    def lines(self, chunk: bytes) -> list[bytes] | None:
        """Complete lines from the channel; None when one outgrows max_message_bytes."""
        done = []
        if b"\n" in chunk:
            *done, rest = (bytes(self.partial) + chunk).split(b"\n")
            self.partial = bytearray(rest)
        else:
            self.partial += chunk  # a long message arrives in many chunks: no rescanning of what came before
        cap = self.limits.max_message_bytes
        return None if len(self.partial) > cap or any(len(line) > cap for line in done) else done


class Session:
    """A selector over the supervisor's ends of every pipe: reads up to caps, writes without blocking."""

    def __init__(self, deadline: float, limits: SandboxLimits):
        self.deadline, self.limits, self.selector, self.outgoing = deadline, limits, selectors.DefaultSelector(), {}
        self.watched: list[Watched] = []
        self.ended: tuple[str, str | None, str | None] | None = None  # (decided by, why, detail)

    def end(self, by: str, why: str | None = None, detail: str | None = None) -> None:
        if self.ended is None:
            self.ended = (by, why, detail)

    def watch(self, watched: Watched, on_channel) -> None:
        self.watched.append(watched)
        proc = watched.proc
        self._read(proc.stdout.fileno(), lambda chunk: self._capped(watched.out, chunk))
        self._read(proc.stderr.fileno(), lambda chunk: self._capped(watched.err, chunk))
        self._read(watched.process.channel, on_channel)
        self.send(proc.stdin.fileno(), watched.process.job, then=proc.stdin.close)

    def _read(self, fd: int, callback) -> None:
        self.selector.register(fd, selectors.EVENT_READ, callback)

    def _capped(self, buffer: bytearray, chunk: bytes) -> None:
        room = self.limits.max_output_bytes - len(buffer)
        buffer += chunk[:max(room, 0)]
        if len(chunk) > room:
            self.end("supervisor", "output")

    def send(self, fd: int, data: bytes, then=None) -> None:
        """Queue `data` for `fd` (a pipe into a sandbox); `then` runs once it is all written."""
        if fd in self.outgoing:
            self.outgoing[fd][0].extend(data)
            return
        os.set_blocking(fd, False)
        self.outgoing[fd] = [bytearray(data), then]
        self.selector.register(fd, selectors.EVENT_WRITE, None)

    def poll(self, until: float) -> bool:
        """One round of I/O; False once `until` has passed."""
        remaining = until - time.monotonic()
        if remaining <= 0:
            return False
        for key, _ in self.selector.select(remaining):
            if key.data is None:
                self._write(key.fd)
            else:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    self.selector.unregister(key.fd)
                key.data(chunk)
        return True

    def _write(self, fd: int) -> None:
        buffer, then = self.outgoing[fd]
        try:
            del buffer[: os.write(fd, buffer)]
        except BlockingIOError:
            return
        except OSError:  # the sandbox is gone; its own pipes will say so
            buffer.clear()
        if not buffer:
            self.selector.unregister(fd)
            del self.outgoing[fd]
            if then is not None:
                then()

    def drain(self, until: float) -> None:
        """Read what is left on stdout and stderr (channels no longer matter) until EOF or `until`."""
        for key in list(self.selector.get_map().values()):
            if key.data is None or any(key.fd == w.process.channel for w in self.watched):
                self.selector.unregister(key.fd)
        while self.selector.get_map() and self.poll(until):
            pass

    def close(self) -> None:
        """Kill and reap whatever is left (a run that raised), close every pipe, free uids and temp dirs."""
        self.selector.close()
        for watched in self.watched:
            if watched.proc.returncode is None:
                _stop(watched, kill=True)
            for stream in (watched.proc.stdin, watched.proc.stdout, watched.proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
            release(watched.process)


# ---- run_program: one process, judged by exit status --------------------------------------------------------

def run_program_process(program: str, limits: SandboxLimits, method: str) -> SandboxResult:
    start = time.monotonic()
    token = secrets.token_hex(16).encode()
    session = Session(start + limits.wall_seconds, limits)
    said = bytearray()
    try:
        watched = Watched(launch("program", {"program": program, "token": token}, limits, method), limits)

        def on_token(chunk: bytes) -> None:
            said.extend(chunk[: CHANNEL_CAP - len(said)])

        session.watch(watched, on_token)
        while session.selector.get_map() and session.ended is None and session.poll(session.deadline):
            pass
        killed_for = session.ended[1] if session.ended else None
        if killed_for is None and not _exited(watched.proc.pid, session.deadline):
            killed_for = "timeout"
        _stop(watched, kill=bool(killed_for))
    finally:
        session.close()
    code = _exit_code(watched.proc.returncode)
    return _result(code, killed_for, watched.out, watched.err, bytes(said) == token, time.monotonic() - start)


# ---- run_tests: the program in a worker, the tests in a checker ---------------------------------------------

def run_split(program: str, tests: str, prelude: str | None, entry_point: str | None, limits: SandboxLimits,
              method: str) -> SandboxResult:
    start = time.monotonic()
    run = SplitRun(start + limits.wall_seconds, limits)
    try:
        run.worker = Watched(launch("worker", {"program": program}, limits, method), limits)
        run.session.watch(run.worker, run.from_worker)
        run.checker = Watched(launch("checker", {"tests": tests, "prelude": prelude, "entry_point": entry_point},
                                     limits, method), limits)
        run.session.watch(run.checker, run.from_checker)
        run.relay()
        run.finish()
    finally:
        run.session.close()
    return run.result(time.monotonic() - start)


class SplitRun:
    def __init__(self, deadline: float, limits: SandboxLimits):
        self.session, self.limits = Session(deadline, limits), limits
        self.worker = self.checker = None
        self.ready = self.pending = self.verdict = self.worker_gone = False
        self.call_deadline = deadline

    def relay(self) -> None:
        session = self.session
        while session.ended is None:
            if not session.poll(min(session.deadline, self.call_deadline)):
                late = "a call to the program" if self.pending and self.call_deadline < session.deadline else "the run"
                session.end("supervisor", "timeout", f"{late} outlived its time limit")

    def from_worker(self, chunk: bytes) -> None:
        if not chunk:
            self.worker_gone = True
            if not self.ready or self.pending:
                self.session.end("worker")  # the tests were waiting on it
            return
        lines = self.worker.lines(chunk)
        if lines is None:
            return self.session.end("supervisor", "invalid", "a reply from the program outgrew max_message_bytes")
        for line in lines:
            if not self.ready and line.startswith(b'["ready",'):
                self.ready = True
            elif self.pending:
                self.pending, self.call_deadline = False, self.session.deadline
            else:
                return self.session.end("supervisor", "invalid", "the program wrote on the harness's pipe unasked")
            self.session.send(self.checker.process.requests, line + b"\n")

    def from_checker(self, chunk: bytes) -> None:
        if not chunk:
            return self.session.end("checker")
        lines = self.checker.lines(chunk)
        if lines is None:
            return self.session.end("supervisor", "unsupported", "the tests' arguments outgrew max_message_bytes")
        for line in lines:
            if line.startswith(b'["call",'):
                if self.worker_gone:
                    return self.session.end("worker")
                self.pending = True
                call_seconds = self.limits.call_seconds
                self.call_deadline = (time.monotonic() + call_seconds if call_seconds is not None
                                      else self.session.deadline)
                self.session.send(self.worker.process.requests, line + b"\n")
            elif line == b'["verdict","passed"]':
                self.verdict = True
            else:  # the checker runs trusted code only: this is its own word that the run failed
                try:
                    kind, detail = json.loads(line)
                except (ValueError, TypeError):
                    kind, detail = "error", f"the checker wrote {line[:200]!r}"
                return self.session.end("supervisor", kind if kind in ("invalid", "unsupported") else "error", detail)

    def finish(self) -> None:
        """Stop whatever still runs, collect what is left of its output, and reap both."""
        by = self.session.ended[0]
        deciding = {"worker": self.worker, "checker": self.checker}.get(by)
        for watched in (self.worker, self.checker):
            if watched is not deciding:
                _kill_children(watched.proc.pid)
        if deciding is not None and not _exited(deciding.proc.pid, time.monotonic() + 1.0):
            _kill_children(deciding.proc.pid)  # closed its pipe but lives on
        self.session.drain(time.monotonic() + GRACE_SECONDS)
        for watched in (self.worker, self.checker):
            _stop(watched, kill=True)

    def result(self, seconds: float) -> SandboxResult:
        by, why, detail = self.session.ended
        worker, checker = self.worker, self.checker
        out = bytes(worker.out + checker.out).decode("utf-8", "replace")
        err = bytes(worker.err + checker.err).decode("utf-8", "replace")
        code = None
        if why == "output":
            status, err = "killed", err + f"\n{BOOTSTRAP_MARK} killed: output exceeded the cap"
        elif why is not None:
            status, err = why, err + f"\n{BOOTSTRAP_MARK} {why}: {detail}"
        else:
            decider = worker if by == "worker" else checker
            code = _exit_code(decider.proc.returncode)
            stderr = decider.err.decode("utf-8", "replace")
            status = "passed" if by == "checker" and self.verdict and code == 0 else _status(None, code, stderr, False, True)
        return SandboxResult(status == "passed", status, code, out, err, seconds, status == "passed", "split")


# ---- processes: stopping, reaping, statuses -----------------------------------------------------------------

def _stop(watched: Watched, kill: bool) -> None:
    pid = watched.proc.pid
    if kill:
        _kill_children(pid)
        _exited(pid, time.monotonic() + GRACE_SECONDS)  # the launcher exits once the kernel has emptied the namespace
    # Killing before reaping: the unreaped leader keeps its pid (= the group id) from being reused.
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    watched.proc.wait()


def _kill_children(pid: int) -> None:
    """SIGKILL the launcher's children, i.e. the namespace's pid 1: the kernel then kills every process in
    the namespace, and the launcher waits for that, so no fork-bomb survivor outlives the run (or its uid)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
    except OSError:
        children = []
    for child in children:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _exited(pid: int, deadline: float) -> bool:
    """Wait for exit without reaping (WNOWAIT), so the group can still be killed safely afterwards."""
    pause = 0.0005
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.02)


def _exit_code(raw: int | None) -> int | None:
    # The bootstrap reports a signal death as 128 + signal, the shell convention.
    return None if raw is None else 128 - raw if 128 < raw < 128 + 65 else raw


def _result(code: int | None, killed_for: str | None, stdout: bytes, stderr: bytes, completed: bool,
            seconds: float) -> SandboxResult:
    out, err = bytes(stdout).decode("utf-8", "replace"), bytes(stderr).decode("utf-8", "replace")
    code = None if killed_for else code
    if killed_for == "output":
        err += f"\n{BOOTSTRAP_MARK} killed: output exceeded the cap"
    status = _status(killed_for, code, err, completed, False)
    return SandboxResult(status == "passed", status, code, out, err, seconds, completed and not killed_for)


def _status(killed_for: str | None, code: int | None, stderr: str, completed: bool, testing: bool) -> str:
    if killed_for:
        return "timeout" if killed_for == "timeout" else "killed"
    if code == BOOTSTRAP_FAILED and BOOTSTRAP_MARK in stderr:
        return "error"
    if code == 0 and (completed or not testing):
        return "passed"
    if code == -signal.SIGXCPU:
        return "timeout"
    if code < 0:
        return "killed"
    if "MemoryError" in stderr[-2000:]:
        return "memory"
    if testing and (code == 0 or EXITED_EARLY in stderr[-2000:] or code != 1):
        return "exited_early"  # exit 0 without a verdict, SystemExit, or os._exit(n != 1)
    return "failed"
