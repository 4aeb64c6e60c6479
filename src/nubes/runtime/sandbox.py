"""Inside an instance: a private /tmp and a read-only code directory, where Linux allows.

On AWS each execution environment has its own ``/tmp`` and a read-only
``/var/task``. Without containers the closest thing is a mount namespace: the
instance (a single-threaded process, just forked) unshares its mounts, binds its
own tmp directory over ``/tmp`` and re-binds its code and layer directories
read-only. That needs ``CAP_SYS_ADMIN`` (nubes running as root) or unprivileged
user namespaces (most Linux distributions); where neither is available the
instance keeps the shared ``/tmp`` and only ``TMPDIR`` points at its own
directory.

``/tmp`` is left alone when the code, a layer or the interpreter's own files
live under it (binding over it would hide them).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Libc:
    def __init__(self) -> None:
        self.lib = ctypes.CDLL(None, use_errno=True)

    def unshare(self, flags: int) -> bool:
        return bool(self.lib.unshare(flags) == 0)

    def mount(self, source: str | None, target: str, flags: int) -> bool:
        src = source.encode() if source is not None else None
        return bool(self.lib.mount(src, target.encode(), None, flags, None) == 0)


def _enter_namespace(libc: _Libc) -> bool:
    if libc.unshare(_CLONE_NEWNS):
        return True
    uid, gid = os.getuid(), os.getgid()
    if not libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS):
        return False
    try:
        # map our own ids: files keep their owners, and we hold CAP_SYS_ADMIN here
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        return False
    return True


_prepared = False


def prepare() -> bool:
    """The generic half, done while the process is still a spare: own mount namespace.

    Unsharing copies the whole mount table and marking it private walks it, which
    is most of the cost; only the binds in :func:`isolate` depend on the function.
    """
    global _prepared
    try:
        libc = _Libc()
    except OSError:
        return False
    # our mounts must not propagate back to the host's namespace
    _prepared = _enter_namespace(libc) and libc.mount(None, "/", _MS_REC | _MS_PRIVATE)
    return _prepared


def isolate(tmp_dir: str, read_only: Sequence[str], keep_visible: Sequence[str]) -> dict[str, bool]:
    """Private /tmp (``tmp_dir`` bound over it) and read-only ``read_only`` dirs.

    Needs :func:`prepare` first. ``keep_visible`` are paths the process still needs
    (code, layers, the interpreter's path): /tmp is not replaced when one of them
    lies under it. Returns which parts took effect: ``{"tmp": bool, "read_only": bool}``.
    """
    done = {"tmp": False, "read_only": False}
    if not _prepared:
        return done
    libc = _Libc()
    ok = True
    for path in read_only:
        if os.path.isdir(path):
            ok = (
                libc.mount(path, path, _MS_BIND | _MS_REC)
                and libc.mount(
                    None, path, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
                )
                and ok
            )
    done["read_only"] = ok
    if not any(_under(os.path.realpath(p), "/tmp") for p in keep_visible if p):
        done["tmp"] = libc.mount(tmp_dir, "/tmp", _MS_BIND)
    return done


def probe() -> bool:
    """Can instances on this machine be isolated? Tried once, in a throwaway child.

    Entering a user namespace cannot be undone, so a real instance must not be the
    one to find out that, say, mounts are refused there afterwards.
    """
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nubes-probe-") as probe_dir:
        pid = os.fork()
        if pid == 0:
            ok = False
            try:
                ok = prepare() and isolate(probe_dir, [probe_dir], ["/tmp"])["read_only"]
            finally:
                os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
