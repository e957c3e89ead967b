"""The `program` role (run_program): the program runs as __main__ and is judged by its exit status.

Runs inside the sandbox after sandboxed/bootstrap.py, in its globals (not imported; sandbox_launch.py compiles
it). When the program's code returns, a fresh random token goes on a pipe only the supervisor reads: that is
`completed` (its code returned rather than exiting). The token is never in the program's text, file, argv
or environment, nor in any file: it arrives on stdin (drained before the program's first line runs) and lives
only on serve()'s evaluation stack while the program runs.
"""

# Everything serve calls once the program has run is bound here, before it: the program may rebind any name
# in builtins, sys or os, and the names below would otherwise be looked up there.
def serve(job, exec=exec, compile=compile, SystemExit=SystemExit, BaseException=BaseException):
    namespace = fresh_main(PROGRAM)
    try:
        # While exec runs, the token exists only on this frame's evaluation stack.
        finish(job.pop("token"), exec(compile(job["program"], PROGRAM, "exec"), namespace))
    except SystemExit as stop:
        stopped(stop, False)
    except BaseException as error:
        crashed(error, {})

def finish(token, _, write=os.write, exit=os._exit, channel=cfg["fds"]["token"]):
    flush()
    write(channel, token)
    exit(0)
