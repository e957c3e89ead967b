"""The sandbox bootstrap, run as `python -I -S -c <loader> <this file, compiled> <config>` (workbench/evaluate/sandbox.py).

Not imported: sandbox.py compiles this text once per process and hands the code object to every sandbox.
See the comment above `BOOTSTRAP` in sandbox.py for what it does.
"""
import _ctypes, marshal, os, resource, sys
cfg = marshal.loads(bytes.fromhex(sys.argv[2]))
PROGRAM, TESTS = os.path.join(cfg["work"], "program.py"), "<tests>"

class c_uint(_ctypes._SimpleCData):
    _type_ = "I"

class c_int(_ctypes._SimpleCData):
    _type_ = "i"

class c_ulong(_ctypes._SimpleCData):
    _type_ = "L"

class CapHeader(_ctypes.Array):  # version 3, pid 0 (this process)
    _type_, _length_ = c_uint, 2

class CapData(_ctypes.Array):  # (effective, permitted, inheritable) x 2 words
    _type_, _length_ = c_uint, 6

class LibcFunction(_ctypes.CFuncPtr):
    _flags_, _restype_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO, c_int

class libc:
    _handle = _ctypes.dlopen(None, 0)

def call(name, *args):
    result = LibcFunction((name, libc))(*args)
    if result < 0:
        errno = _ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")
    return result

def prctl(option, arg=0):
    return call("prctl", c_ulong(option), c_ulong(arg), c_ulong(0), c_ulong(0), c_ulong(0))

RDONLY, NOSUID, NODEV, REMOUNT, BIND, REC, PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
KEPT = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21}

def mount(source, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None
    try:
        call("mount", enc(source), enc(target), enc(fstype), c_ulong(flags), enc(data))
    except OSError as error:
        raise OSError(error.errno, error.strerror, target) from None

def make_readonly(writable):
    with open("/proc/self/mountinfo") as f:
        rows = [line.split() for line in f]
    for target, options in [(r[4].encode().decode("unicode_escape"), r[5].split(",")) for r in rows]:
        # A bind remount must repeat locked flags (nosuid, atime...) or user namespaces refuse it.
        try:
            if target != writable:
                mount(None, target, None, BIND | REMOUNT | RDONLY | sum(KEPT.get(o, 0) for o in options))
        except OSError:
            if target == "/":
                raise

def build_filesystem():
    mount(None, "/", None, REC | PRIVATE)
    kept = [(path, os.open(path, os.O_PATH)) for path in cfg["keep"]]  # opened before they are covered
    for hidden in cfg["hide"]:
        mount("tmpfs", hidden, "tmpfs", NOSUID | NODEV, "size=1m,mode=0755")
    for path, fd in kept:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, BIND | REC)
        os.close(fd)
    os.makedirs(cfg["work"], exist_ok=True)
    owner = f",uid={cfg['uid']},gid={cfg['uid']}" if cfg["uid"] else ""
    mount("tmpfs", cfg["work"], "tmpfs", NOSUID | NODEV, f"size={cfg['scratch_bytes']},mode=0700{owner}")
    make_readonly(cfg["work"])

def drop_privileges(uid):
    # The bounding set first: uid 0 would otherwise regain every capability by exec'ing any file.
    cap = 0
    while True:
        try:
            held = prctl(23, cap)  # PR_CAPBSET_READ; EINVAL past the kernel's last capability
        except OSError:
            break
        if held and os.geteuid() == 0:  # others lack CAP_SETPCAP, and no_new_privs keeps exec from granting any
            prctl(24, cap)  # PR_CAPBSET_DROP
        cap += 1
    try:
        call("prctl", c_ulong(47), c_ulong(4), c_ulong(0), c_ulong(0), c_ulong(0))  # PR_CAP_AMBIENT_CLEAR_ALL
    except OSError:
        pass  # kernels without ambient capabilities
    if uid:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    call("capset", CapHeader(0x20080522, 0), CapData(0, 0, 0, 0, 0, 0))
    prctl(38, 1)  # PR_SET_NO_NEW_PRIVS: setuid binaries cannot give root back

def enter_sandbox():
    os.environ.clear()  # launchers add their own (bwrap: PWD); the program gets exactly cfg["env"]
    os.environ.update(cfg["env"])
    for name, value in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), value)
    if cfg["chown_work"]:
        os.chown(cfg["work"], cfg["uid"], cfg["uid"])
    drop_privileges(cfg["uid"])
    os.chdir(cfg["work"])

def read_job():
    # Drained to EOF before any of the program's code runs: the token is then nowhere in the kernel.
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    job = marshal.loads(b"".join(chunks))
    with open(PROGRAM, "w", encoding="utf-8", errors="replace") as f:
        f.write(job["program"])  # for tracebacks and __file__; it holds only the program's own text
    return job

# Everything the harness calls once the program has run is bound here, before it: the program may rebind
# any name in builtins, sys or os, and the names below would otherwise be looked up there.
def serve(job, exec=exec, compile=compile, SystemExit=SystemExit, BaseException=BaseException,
          builtins=sys.modules["builtins"], settrace=sys.settrace, setprofile=sys.setprofile):
    def quit(code=None):  # what `site` would add (-S leaves exit and quit out)
        raise SystemExit(code)

    builtins.exit = builtins.quit = quit
    main = type(sys)("__main__")
    main.__file__, main.__builtins__ = PROGRAM, builtins
    sys.modules["__main__"], sys.argv = main, [PROGRAM]
    namespace, current, saved = main.__dict__, builtins.__dict__, dict(builtins.__dict__)
    tests = job["tests"]

    def run(program, tests):
        exec(program, namespace)
        if tests is not None:
            current.clear()
            current.update(saved)
            namespace["__builtins__"] = builtins
            settrace(None)
            setprofile(None)
            exec(tests, namespace)

    try:
        # While run() executes, the token exists only on this frame's evaluation stack.
        finish(job.pop("token"), run(compile(job["program"], PROGRAM, "exec"),
                                     None if tests is None else compile(tests, TESTS, "exec")))
    except SystemExit as stop:
        stopped(stop, tests is not None)
    except BaseException as error:
        crashed(error, tests)

def flush(streams=(sys.stdout, sys.stderr), BaseException=BaseException):
    for stream in streams:
        try:
            stream.flush()
        except BaseException:
            pass

def finish(token, _, write=os.write, exit=os._exit, channel=cfg["token_fd"]):
    flush()
    write(channel, token)
    exit(0)

def stopped(stop, testing, write=os.write, exit=os._exit, stderr=sys.stderr):
    flush()
    code = stop.code
    if testing:
        write(2, f"{cfg['exited_early']}: SystemExit({code!r})\n".encode())
    if code is None or isinstance(code, int):
        exit((code or 0) & 0xFF)
    print(code, file=stderr, flush=True)
    exit(1)

def crashed(error, tests, write=os.write, exit=os._exit, stderr=sys.stderr):
    flush()
    try:
        import linecache, traceback
        if tests is not None:
            linecache.cache[TESTS] = (len(tests), None, tests.splitlines(True), TESTS)
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in ("<string>", "<bootstrap>"):
            tb = tb.tb_next  # the bootstrap's own frames
        traceback.print_exception(type(error), error, tb, file=stderr)
        stderr.flush()
    except BaseException:
        write(2, f"{type(error).__name__}: {error}\n".encode(errors="replace"))
    exit(1)

def fail(stage, error):
    print(f"{cfg['mark']} {stage} failed: {error!r}", file=sys.stderr, flush=True)
    os._exit(cfg["bootstrap_failed"])

def reap(child):
    import _signal
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)  # Python's handler would let SIGINT through to pid 1
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(cfg["token_fd"])
    while True:  # as pid 1 we also inherit and must reap orphans
        pid, status = os.wait()
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)

try:
    if cfg["mount"]:
        build_filesystem()
except BaseException as error:
    fail("filesystem setup", error)
child = os.fork()
if child:
    reap(child)
try:
    enter_sandbox()
    job = read_job()
except BaseException as error:
    fail("program start", error)
serve(job)
