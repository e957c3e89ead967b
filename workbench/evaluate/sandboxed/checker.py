"""The `checker` role: runs the TRUSTED tests against proxies of the program's functions, and alone says "passed".

Runs inside its own sandbox after sandboxed/bootstrap.py and sandboxed/plain_data.py, in their globals (not
imported; sandbox_launch.py compiles it). Only trusted code ever runs in this interpreter: the task's prelude
(e.g. a HumanEval prompt with its helper functions), the tests, and this file. The program runs in another
sandboxed process (sandboxed/worker.py); each name the tests call on it is a proxy here that sends the
arguments as plain data through the supervisor and returns the plain data that comes back, rebuilt from
built-in types. So nothing the program does in its own interpreter (frames, builtins, exec, tracers, exits,
objects with a lying __eq__) reaches the tests or the verdict.

Proxied: the `entry_point` alone where the task names one; else every top-level function the worker reports,
except names the prelude defines, names of builtins (a program's `def abs` would otherwise answer the tests'
own abs calls) and dunder names. `["verdict", "passed"]` is written only after the tests have returned; a
reply that is not plain data ends the run at once as "invalid" (the supervisor is told before any test code
could catch the exception), an argument the tests pass that is not plain data as "unsupported".
"""
import _thread

TESTS, PRELUDE = "<tests>", "<prelude>"


class Forfeit(BaseException):
    """Raised into the tests after the supervisor has been told the run failed (not an Exception: a test's
    `except Exception` does not swallow it, and a bare `except` cannot undo what the supervisor was told)."""


def serve(job, exec=exec, compile=compile, SystemExit=SystemExit, BaseException=BaseException):
    namespace = fresh_main(TESTS)
    sources = {TESTS: job["tests"], PRELUDE: job["prelude"] or ""}
    try:
        tests = compile(job["tests"], TESTS, "exec")
        if job["prelude"]:
            exec(compile(job["prelude"], PRELUDE, "exec"), namespace)
        replies = Lines(cfg["fds"]["from_parent"])
        names = reported_names(replies.next())
        trusted = set(namespace)
        for name in proxied(names, job["entry_point"], trusted):
            namespace[name] = proxy(name, replies)
        exec(tests, namespace)
    except SystemExit as stop:
        stopped(stop, True)
    except BaseException as error:
        crashed(error, sources)
    send(["verdict", "passed"])  # the tests returned
    flush()
    os._exit(0)


def forfeit(kind, reason):
    send([kind, reason])
    raise Forfeit(reason)


def reported_names(line):
    try:
        message = loads(line) if line is not None else None
    except NotPlainData:
        message = None
    if not (type(message) is list and len(message) == 2 and message[0] == "ready" and type(message[1]) is list
            and all(type(name) is str and name.isidentifier() for name in message[1])):
        forfeit("invalid", "the program's first message was not the list of its functions")
    return message[1]


def proxied(names, entry_point, trusted):
    if entry_point is not None:
        return [entry_point]
    builtins = sys.modules["builtins"]
    return [name for name in names if name not in trusted and not hasattr(builtins, name)
            and not (name.startswith("__") and name.endswith("__"))]


def proxy(name, replies, lock=_thread.allocate_lock()):
    def call(*args, **kwargs):
        with lock:  # one call in flight: the supervisor relays exactly one reply per call
            try:
                send(["call", name, args, kwargs])  # encoded whole before anything is written
            except NotPlainData as error:
                forfeit("unsupported", f"the tests passed {name}() a value that is not plain data ({error})")
            return answer(name, replies.next())

    call.__name__ = call.__qualname__ = name
    return call


def answer(name, line):
    if line is None:
        os._exit(cfg["bootstrap_failed"])  # the supervisor closed the pipe: it is ending the run itself
    try:
        message = loads(line)
    except NotPlainData as error:
        forfeit("invalid", f"{name}() answered with something that is not plain data ({error})")
    kind = message[0] if type(message) is list and message else None
    if kind == "value" and len(message) == 2:
        return message[1]
    if kind == "raised" and len(message) == 3 and type(message[1]) is str and type(message[2]) is str:
        raise rebuilt(message[1], message[2])
    if kind == "invalid" and len(message) == 2 and type(message[1]) is str:
        forfeit("invalid", message[1])
    forfeit("invalid", f"{name}() answered out of protocol")


def rebuilt(class_name, message):
    """The built-in Exception subclass the program raised, with its message (only Exception subclasses:
    SystemExit, KeyboardInterrupt and the like stay the checker's own business)."""
    cls = getattr(sys.modules["builtins"], class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        cls = RuntimeError
    try:
        return cls(message)
    except Exception:  # UnicodeDecodeError and others take more than a message
        return RuntimeError(f"{class_name}: {message}")
