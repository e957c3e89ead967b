"""The sandbox bootstrap, run as `python -I -S -c <loader> <this file, compiled> <config>` (workbench/evaluate/sandbox_launch.py).

Not imported: sandbox_launch.py compiles this text once per process and hands the code object to every
sandboxed process, with its role (sandboxed/program.py, worker.py or checker.py, compiled the same way) in
the config. It builds the filesystem view where no bwrap did ("unshare" methods), then forks: the parent
stays as the namespace's pid 1 and reaps (as pid 1 with default signal dispositions, nothing inside can
signal it); the child takes the limits, drops every privilege, drains its job from stdin and runs its role's
`serve(job)` in these globals (no second exec: that would double the ~25 ms interpreter start, and root's
interpreter may sit where the sandbox uid cannot reach it). Imports are kept to fast builtins: libc's mount,
prctl and capset are called through the bare _ctypes types that ctypes itself is built on (ctypes costs ~10 ms).
"""
import _ctypes, marshal, os, resource, sys
cfg = marshal.loads(bytes.fromhex(sys.argv[2]))
PROGRAM = os.path.join(cfg["work"], "program.py")

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
    # Drained to EOF before any of the program's code runs (a run_program token is then nowhere in the kernel).
    chunks = []
    while chunk := os.read(0, 1 << 16):
        chunks.append(chunk)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    job = marshal.loads(b"".join(chunks))
    if "program" in job:
        with open(PROGRAM, "w", encoding="utf-8", errors="replace") as f:
            f.write(job["program"])  # for tracebacks and __file__; it holds only the program's own text
    return job

def fresh_main(path):
    """A new __main__ module (with the exit and quit that `site` would add: -S leaves them out)."""
    builtins = sys.modules["builtins"]

    def quit(code=None):
        raise SystemExit(code)

    builtins.exit = builtins.quit = quit
    main = type(sys)("__main__")
    main.__file__, main.__builtins__ = path, builtins
    sys.modules["__main__"], sys.argv = main, [path]
    return main.__dict__

def flush(streams=(sys.stdout, sys.stderr), BaseException=BaseException):
    for stream in streams:
        try:
            stream.flush()
        except BaseException:
            pass

def stopped(stop, testing, write=os.write, exit=os._exit, stderr=sys.stderr):
    flush()
    code = stop.code
    if testing:
        write(2, f"{cfg['exited_early']}: SystemExit({code!r})\n".encode())
    if code is None or isinstance(code, int):
        exit((code or 0) & 0xFF)
    print(code, file=stderr, flush=True)
    exit(1)

def crashed(error, sources, write=os.write, exit=os._exit, stderr=sys.stderr):
    """Print the traceback without the bootstrap's own frames; `sources`: {filename: text} for linecache."""
    flush()
    try:
        import linecache, traceback
        for name, text in sources.items():
            linecache.cache[name] = (len(text), None, text.splitlines(True), name)
        tb = error.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename in ("<string>", "<bootstrap>"):
            tb = tb.tb_next
        traceback.print_exception(type(error), error, tb, file=stderr)
        stderr.flush()
    except BaseException:
        write(2, f"{type(error).__name__}: {error}\n".encode(errors="replace"))
    exit(1)

def send(message, write=os.write):
    """One line of plain data (sandboxed/plain_data.py) to the supervisor."""
    data = (dumps(message) + "\n").encode()
    while data:
        data = data[write(cfg["fds"]["to_parent"], data):]

class Lines:
    """Lines from the supervisor (requests for a worker; the names, then replies, for a checker)."""
    def __init__(self, fd):
        self.fd, self.buffer = fd, bytearray()

    def next(self):
        while (end := self.buffer.find(b"\n")) < 0:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line = self.buffer[:end].decode()
        del self.buffer[: end + 1]
        return line

def fail(stage, error):
    print(f"{cfg['mark']} {stage} failed: {error!r}", file=sys.stderr, flush=True)
    os._exit(cfg["bootstrap_failed"])

def reap(child):
    import _signal
    _signal.signal(_signal.SIGINT, _signal.SIG_DFL)  # Python's handler would let SIGINT through to pid 1
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd in cfg["fds"].values():  # the child's alone: EOF on them must mean the child is gone
        os.close(fd)
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
    for code in cfg["role"]:  # plain_data (worker, checker), then the role's own file: each defines serve(job)
        exec(code, globals())
except BaseException as error:
    fail("program start", error)
serve(job)
