"""Starting one sandboxed process: its command line (bwrap, unshare or none), limits, uid, pipes and job.

    from workbench.evaluate.sandbox_launch import SandboxLimits, launch
    process = launch("program", {"program": "print(1)", "token": b"..."}, SandboxLimits(), "bwrap")

The supervisor (sandbox_supervise.py) starts and watches these; the public API is workbench.evaluate.sandbox,
whose docstring describes the methods and what each isolates. Try it through that API:
`.venv/bin/python -c "from workbench.evaluate.sandbox import run_program; print(run_program('print(6 * 7)'))"`.
Tests: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_sandbox.py`. Standard library only (the
tests copy the sandbox modules to where uid 65534 can import them).

A process is `python -I -S` (sys.executable, no site imports) running sandboxed/bootstrap.py with its role
(sandboxed/program.py, worker.py or checker.py), both handed in compiled, in a fresh temp root whose `work`
dir becomes its scratch tmpfs. The environment is built from scratch (PATH, HOME, TMPDIR, LANG); the job
goes in on stdin; a role's pipes to the supervisor are passed by number (`cfg["fds"]`).
"""

import functools
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

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
SANDBOXED = Path(__file__).with_name("sandboxed")  # the programs that run inside (read as text, never imported)
ROLES = {"program": ("program",), "worker": ("plain_data", "worker"), "checker": ("plain_data", "checker")}


@dataclass(frozen=True)
class SandboxLimits:
    wall_seconds: float = 10.0  # the whole run (for run_tests: program, tests and every call)
    cpu_seconds: int = 5  # RLIMIT_CPU of each process
    memory_bytes: int = 512 * 2**20  # RLIMIT_AS, per process
    max_processes: int = 32  # RLIMIT_NPROC; per run where the run has its own uid or user namespace
    max_output_bytes: int = 64 * 1024  # each of stdout and stderr, per process
    max_file_bytes: int = 16 * 2**20  # RLIMIT_FSIZE; the scratch tmpfs holds 4 such files
    call_seconds: float | None = None  # one call of the program's function by the tests; None: the rest of wall_seconds
    max_message_bytes: int = 8 * 2**20  # one call's arguments or one reply, as plain data


@dataclass
class Launched:
    """A started sandbox: its launcher process and the supervisor's ends of its pipes."""
    role: str
    proc: subprocess.Popen
    root: str
    slot: int
    job: bytes  # still to be written to its stdin
    channel: int  # the supervisor reads: the token (program) or messages (worker, checker)
    requests: int | None = None  # the supervisor writes: calls (worker), names and replies (checker)
    closed: set = field(default_factory=set)


_UID_LOCK, _UIDS_IN_USE = threading.Lock(), {}  # slot -> the open lock file that holds it (or None)
SLOT_DIR = "/run/workbench-sandbox-slots"  # root's: one lock file per uid slot, shared by every process on the host


def _acquire_uid_slot() -> int:
    """One uid per concurrent sandboxed process on this host, so RLIMIT_NPROC and kill permissions are per process.
    As root (where the uid is used) a slot is also held by an flock on its file in SLOT_DIR, so two evaluations
    running at once in different processes never hand out the same uid."""
    with _UID_LOCK:
        slot = 0
        while slot in _UIDS_IN_USE or (held := _lock_slot(slot)) is False:
            slot += 1
        _UIDS_IN_USE[slot] = held
    return slot


def _lock_slot(slot: int):
    """The open file holding `slot`'s flock, None where no cross-process lock is needed (not root), False when
    another process holds the slot."""
    if os.geteuid() != 0:
        return None
    import fcntl

    os.makedirs(SLOT_DIR, mode=0o700, exist_ok=True)
    handle = open(os.path.join(SLOT_DIR, f"{slot}.lock"), "a")  # noqa: SIM115 (held until the slot is released)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    return handle


def launch(role: str, job: dict, limits: SandboxLimits, method: str) -> Launched:
    """Start `role` under `method`; the job (marshal) still has to be written to proc.stdin by the caller."""
    root = tempfile.mkdtemp(prefix="wb-sandbox-", dir="/tmp" if os.path.isdir("/tmp") else None)
    slot = _acquire_uid_slot()
    parent_ends, child_ends = [], []
    try:
        os.chmod(root, 0o755)  # the program's uid must reach its cwd below
        for _ in range(1 if role == "program" else 2):
            read, write = os.pipe()
            parent_ends.append(read if not parent_ends else write)
            child_ends.append(write if not child_ends else read)
        fds = ({"token": child_ends[0]} if role == "program"
               else {"to_parent": child_ends[0], "from_parent": child_ends[1]})
        uid = UID_BASE + slot if method in ("bwrap", "unshare") and os.geteuid() == 0 else 0
        command, env = _command(role, limits, method, root, uid, fds)
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=root, start_new_session=True, pass_fds=child_ends)
    except BaseException:
        for fd in parent_ends:
            os.close(fd)
        release_slot(slot)
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        for fd in child_ends:  # the sandbox's own ends: EOF on ours must mean the sandbox let go of them
            os.close(fd)
    return Launched(role, proc, root, slot, marshal.dumps(job), parent_ends[0], (parent_ends[1:] or [None])[0])


def release(process: Launched) -> None:
    for fd in (process.channel, process.requests):
        if fd is not None and fd not in process.closed:
            os.close(fd)
            process.closed.add(fd)
    release_slot(process.slot)
    shutil.rmtree(process.root, ignore_errors=True)


def release_slot(slot: int) -> None:
    with _UID_LOCK:
        handle = _UIDS_IN_USE.pop(slot, None)
    if handle:
        handle.close()  # closing the file releases its flock


def _command(role: str, limits: SandboxLimits, method: str, root: str, uid: int, fds: dict) -> tuple[list[str], dict]:
    work = os.path.join(root, "work")
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8"}
    hide = hidden_dirs() if method != "none" else []
    scratch_bytes = 4 * limits.max_file_bytes
    if method == "none":
        os.mkdir(work)
    cfg = {"mount": method in UNSHARE, "hide": hide, "keep": kept_paths(hide), "work": work, "uid": uid,
           "chown_work": method == "bwrap" and bool(uid), "scratch_bytes": scratch_bytes,
           "rlimits": _rlimits(limits), "fds": fds, "mark": BOOTSTRAP_MARK, "role": _role_code(role),
           "bootstrap_failed": BOOTSTRAP_FAILED, "exited_early": EXITED_EARLY, "env": env}
    launcher = _bwrap(hide, kept_paths(hide), work, scratch_bytes, bool(uid)) if method == "bwrap" else UNSHARE.get(method, [])
    return [*launcher, sys.executable, "-I", "-S", "-c", _LOADER, _bootstrap_code(), marshal.dumps(cfg).hex()], env


# The bootstrap and roles go in compiled (marshal of the same interpreter's code objects): compiling them in
# every sandbox would cost about 4 ms of CPU each, some 15% of a HumanEval program's total.
_LOADER = "import marshal, sys; exec(marshal.loads(bytes.fromhex(sys.argv[1])))"


@functools.cache
def _bootstrap_code() -> str:
    return marshal.dumps(_compiled("bootstrap")).hex()


@functools.cache
def _role_code(role: str) -> tuple:
    return tuple(_compiled(name) for name in ROLES[role])


def _compiled(name: str):
    return compile((SANDBOXED / f"{name}.py").read_text(encoding="utf-8"), "<bootstrap>", "exec")


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
    top = next((d for d in hide if is_within(path, d) and path != d), None)
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
def hidden_dirs() -> list[str]:
    # A directory inside the interpreter's own tree (a prefix of "/" or "/tmp") cannot be covered; the
    # interpreter's directories under a covered one are bound back in (see kept_paths).
    interpreter = _interpreter_paths()
    return [d for d in HIDDEN_DIRS if os.path.isdir(d) and not os.path.islink(d)
            and not any(is_within(d, path) for path in interpreter)]


def kept_paths(hide: list[str]) -> list[str]:
    return [p for p in _interpreter_paths() if any(is_within(p, d) for d in hide)]


@functools.lru_cache(maxsize=None)
def _interpreter_paths() -> list[str]:
    paths = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
             os.path.dirname(os.path.realpath(sys.executable))}
    return sorted(p for p in paths if not any(p != q and is_within(p, q) for q in paths))


def is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")
