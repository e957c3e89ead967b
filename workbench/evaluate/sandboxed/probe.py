"""The isolation probe: run inside the sandbox by `workbench.evaluate.sandbox.probe`; everything it reports is what a
program would find. sandbox.py puts `NONCE, HOST_DIR, PORT = ...` in front of this text. Not imported.
"""
import ctypes, json, os, socket

def created(path):  # a write that works is undone at once
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return False
    os.unlink(path)
    return True

def remounted():  # / read-write again, its other flags kept so that where this works nothing else changes
    flags = os.statvfs("/").f_flag
    keep = sum(bit for bit in (2, 4, 8, 1024, 2048) if flags & bit) | ((1 << 21) if flags & 4096 else 0)
    return ctypes.CDLL(None, use_errno=True).mount(None, b"/", None, ctypes.c_ulong(32 | 4096 | keep), None) == 0

def listing(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []
    except PermissionError:
        return None

def connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False

status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
print(json.dumps({
    "uid": os.getuid(), "caps": {key: int(status[key], 16) for key in ("CapEff", "CapPrm", "CapBnd")},
    "no_new_privs": status.get("NoNewPrivs", "0").strip() == "1",
    "readonly_root": bool(os.statvfs("/").f_flag & os.ST_RDONLY),
    "wrote_root": created(f"/.wb-sandbox-probe-{NONCE}"),
    "wrote_host": created(os.path.join(HOST_DIR, f".wb-sandbox-probe-{NONCE}")),
    "remounted": remounted(), "listings": {path: listing(path) for path in ("/home", "/root")},
    "connected": connects(PORT),
    "ns": {name: os.readlink(f"/proc/self/ns/{name}") for name in ("user", "net", "mnt", "pid")},
}))
