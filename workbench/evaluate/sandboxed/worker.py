"""The `worker` role (run_tests, check_humaneval, code_tests): runs the UNTRUSTED program and answers calls.

Runs inside the sandbox after sandboxed/bootstrap.py and sandboxed/plain_data.py, in their globals (not
imported; sandbox_launch.py compiles it). The program runs as __main__; then the worker reports the names of
its top-level functions, `["ready", [names]]`, and serves `["call", name, args, kwargs]` requests one at a
time with `["value", v]`, `["raised", builtin exception class, message]` or `["invalid", why]` (a return
value that is not plain data). Nothing here is trusted: the program shares this interpreter and may replace
any of it. That is why nothing here decides anything: all that leaves this process is plain data, and the
verdict is computed by the checker (sandboxed/checker.py), another sandboxed process that never runs it.
"""

def serve(job, exec=exec, compile=compile, SystemExit=SystemExit, BaseException=BaseException):
    namespace = fresh_main(PROGRAM)
    try:
        exec(compile(job["program"], PROGRAM, "exec"), namespace)
    except SystemExit as stop:
        stopped(stop, True)  # before the tests could call anything: exited early
    except BaseException as error:
        crashed(error, {})
    send(["ready", function_names(namespace)])
    requests = Lines(cfg["fds"]["from_parent"])
    while (line := requests.next()) is not None:
        answer(namespace, loads(line))
    flush()
    os._exit(0)

def function_names(namespace):
    """Top-level callables other than classes and modules (those cannot be called across the boundary)."""
    return sorted(name for name, value in list(namespace.items())
                  if type(name) is str and name.isidentifier() and not name.startswith("__") and callable(value)
                  and not isinstance(value, type) and type(value) is not type(sys))

def answer(namespace, request, SystemExit=SystemExit, BaseException=BaseException, Exception=Exception):
    _, name, args, kwargs = request
    try:
        if (function := namespace.get(name)) is None:
            raise NameError(f"name {name!r} is not defined")
        value = function(*args, **kwargs)
    except SystemExit as stop:
        stopped(stop, True)
    except Exception as error:
        send(["raised", builtin_class(error), message_of(error)])
        show(error)
        return
    except BaseException as error:
        crashed(error, {})
    try:
        send(["value", value])  # encoded whole before anything is written
    except NotPlainData as error:
        send(["invalid", f"{name}() returned a value that is not plain data: {error}"])

def builtin_class(error):
    """The nearest built-in exception class (a program's own class would mean nothing to the checker)."""
    builtins = sys.modules["builtins"]
    for cls in type(error).__mro__:
        if getattr(builtins, cls.__name__, None) is cls:
            return cls.__name__
    return "Exception"

def message_of(error):
    try:
        return str(error)[:2000]
    except Exception:
        return "<unprintable>"

def show(error):
    """The program's own traceback on stderr, for whoever reads the result (the tests see only the class)."""
    try:
        import traceback
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in ("<string>", "<bootstrap>"):
            tb = tb.tb_next
        traceback.print_exception(type(error), error, tb)
        sys.stderr.flush()
    except BaseException:
        pass
