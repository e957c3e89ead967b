"""What the sandbox isolates here, VERIFIED from inside: which methods start, the probe's findings, the minimum.

    from workbench.evaluate.sandbox_isolation import isolation, isolation_summary, require_minimum
    isolation_summary()     # "bwrap: own network, mount and pid namespaces; uid 190000 (one per concurrent run); ..."
    require_minimum()       # WorkbenchError below the minimum, unless allow_weak

Re-exported by workbench.evaluate.sandbox, whose docstring describes the methods. Try it:
`.venv/bin/python -c "from workbench.evaluate.sandbox import isolation_summary; print(isolation_summary())"`.
Tests: `.venv/bin/python -m pytest -q tests/unit/evaluate/test_sandbox.py`. Standard library only (plus
workbench.errors).

`probe(method)` runs sandboxed/probe.py as a program under that method and reports what it found: writes to /
and to the project dir refused, remount of / refused, /home and /root empty, a connect to a host listener on
127.0.0.1 refused, uid, CapEff/CapPrm/CapBnd, NoNewPrivs. Every run_tests starts two processes (worker and
checker) the same way the probe's one was started, so the report holds for both.
"""

import functools
import json
import os
import secrets
import shutil
import socket

from workbench.errors import WorkbenchError
from workbench.evaluate.sandbox_launch import METHODS, SANDBOXED, SandboxLimits, hidden_dirs, is_within, kept_paths
from workbench.evaluate.sandbox_supervise import run_program_process

WRITABLE = "writes outside the scratch dir succeed"
PROBE = SANDBOXED / "probe.py"  # run inside the sandbox by `probe`
PROBE_ERRORS: dict[str, str] = {}  # method -> why its probe did not run


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
            raise WorkbenchError(f"WORKBENCH_SANDBOX={forced!r} cannot start here: {PROBE_ERRORS.get(forced, 'not usable by this user')}")
        return report
    for method in candidate_methods():
        if (report := probe(method)) is not None:
            return report
    raise RuntimeError(f"sandbox cannot start a program even without namespaces: {PROBE_ERRORS.get('none')}")


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


@functools.lru_cache(maxsize=None)
def probe(method: str) -> dict | None:
    """Run a probe program under `method` and report what it found from inside; None if it cannot start."""
    if method not in candidate_methods():
        return None
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        source = (f"NONCE, HOST_DIR, PORT = {secrets.token_hex(8)!r}, {_project_dir()!r}, {listener.getsockname()[1]}\n"
                  + PROBE.read_text(encoding="utf-8"))
        result = run_program_process(source, SandboxLimits(wall_seconds=20), method)
        try:
            listener.accept()[0].close()
            reached = True
        except BlockingIOError:
            reached = False
    if not result.passed:
        PROBE_ERRORS[method] = f"{result.status}: {result.stderr.strip()[-300:]}"
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
    allowed = {os.path.relpath(kept, path).split("/")[0] for kept in kept_paths(hidden_dirs()) if is_within(kept, path)}
    return set(entries) <= allowed


def _project_dir() -> str:
    """The checkout holding this file (workbench/evaluate/sandbox_isolation.py): no sandboxed program may write there."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
