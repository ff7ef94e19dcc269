"""The backing file of a store: name checks, create/open, map once, commit, unlink, processes.

A store is one file sized with ``ftruncate`` to its reservation and mapped once per process with
``MAP_SHARED``; it is never re-mapped, so views into it never move.  On tmpfs (``/dev/shm``) a
sparse file costs nothing until its pages are touched.  Memory is *committed* with
``posix_fallocate`` before the allocator hands it out: if the filesystem is full that call fails
with ``ENOSPC`` (a :class:`StoreFullError`), where a write to an unbacked page would be a SIGBUS.

We do not use ``multiprocessing.shared_memory``: before Python 3.13 its resource tracker unlinks
segments that a child merely attached to.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import struct
from pathlib import Path

from . import _layout as L
from .errors import (
    InvalidNameError,
    StoreExistsError,
    StoreFullError,
    StoreNotFoundError,
    UntrustedStoreError,
    human_bytes,
)

SHM_DIR = Path("/dev/shm")
PREFIX = "sharedstore."
NAME_MAX = 200


def check_name(name: str) -> str:
    """Return ``name`` if it can name a store, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a store name must be a str, not {type(name).__name__}")
    if not name or len(name) > NAME_MAX or "/" in name or "\0" in name or name in (".", ".."):
        raise InvalidNameError(
            f"invalid store name {name!r}: use 1 to {NAME_MAX} characters, without '/' or NUL"
        )
    return name


def shm_path(name: str) -> Path:
    return SHM_DIR / (PREFIX + check_name(name))


def list_names() -> list[str]:
    """Names of the stores in ``/dev/shm``, sorted."""
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(e[len(PREFIX):] for e in entries if e.startswith(PREFIX))


def default_reservation(directory: Path) -> int:
    """As large as the filesystem holding ``directory``: its total size, whole pages."""
    st = os.statvfs(directory)
    size = st.f_blocks * st.f_frsize
    return max(L.MIN_RESERVATION, size - size % L.PAGE)


def create_file(path: Path, reserved: int, name: str) -> int:
    """Create ``path`` exclusively with mode 0600 and size ``reserved``; return its fd."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise StoreExistsError(
            f"store {name!r} exists already ({path}); attach to it with "
            f"sharedstore.attach({name!r}) or remove it with sharedstore.unlink({name!r})"
        ) from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.ftruncate(fd, reserved)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def open_file(path: Path, name: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StoreNotFoundError(
            f"no store named {name!r} ({path}); create it with sharedstore.create({name!r})"
        ) from None


def check_trusted(st: os.stat_result, name: str, path: Path) -> None:
    """Refuse a file another user could have written (pickled values in it would run their
    code here): owned by another user, or writable by its group or by others (``st``: its
    ``os.stat``)."""
    why = None
    if st.st_uid != os.geteuid():
        why = f"it is owned by uid {st.st_uid}, not by this process's uid {os.geteuid()}"
    elif st.st_mode & 0o022:
        why = f"its mode {st.st_mode & 0o777:04o} lets other users write it"
    if why:
        raise UntrustedStoreError(
            f"store {name!r} ({path}): {why}, so a value in it could run their code when read. "
            f"If you trust them, attach with insecure=True; else remove it "
            f"(sharedstore.unlink({name!r}))"
        )


def map_file(fd: int, size: int) -> mmap.mmap:
    return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def commit(fd: int, start: int, length: int, name: str, path: Path) -> None:
    """Back ``start .. start+length`` of the file with memory, or raise :class:`StoreFullError`."""
    try:
        os.posix_fallocate(fd, start, length)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.ENOMEM):
            fs = "/dev/shm" if str(path).startswith(str(SHM_DIR)) else str(path.parent)
            try:
                st = os.statvfs(path.parent)
                avail = (f"{human_bytes(st.f_bavail * st.f_frsize)} free of "
                         f"{human_bytes(st.f_blocks * st.f_frsize)}")
            except OSError:
                avail = "size unknown"
            raise StoreFullError(
                f"store {name!r} is full: {fs} has no room for {human_bytes(length)} more "
                f"({avail}); give the container a larger --shm-size, free space there, or create "
                "the store with path= on a larger filesystem"
            ) from None
        raise


# ---------------------------------------------------------------------- liveness
# A process proves it is alive to the others by an OFD (open file description) record lock
# it holds on one byte of the store file, the first byte of its process-table entry
# (``_layout.PROC_TABLE``), taken with ``F_OFD_SETLK`` on a descriptor of its own.  The kernel
# drops the lock when the process dies, whatever killed it, and shows it to every process that
# opens the file, in any pid namespace (containers sharing /dev/shm).  Pids are compared only
# where the file system has no such locks.
_FLOCK = struct.Struct("hhqqi4x")  # struct flock on 64-bit Linux: type, whence, start, len, pid


def _live_byte(index: int) -> int:
    return L.PROC_TABLE + index * L.PROC_WORDS * 8


def _ofd(fd: int, cmd_name: str, ltype: int, index: int) -> bytes | None:
    cmd = getattr(fcntl, cmd_name, None)
    if cmd is None:
        return None
    try:
        return fcntl.fcntl(fd, cmd, _FLOCK.pack(ltype, os.SEEK_SET, _live_byte(index), 1, 0))
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return b""
        if e.errno in (errno.EINVAL, errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
            return None  # no OFD locks on this file system
        raise


def live_lock(fd: int, index: int) -> bool | None:
    """Take the liveness lock of process-table entry ``index`` on ``fd`` (an open file
    description of this process alone): True if taken, False if another process holds it,
    None if the file system has no OFD locks."""
    r = _ofd(fd, "F_OFD_SETLK", fcntl.F_WRLCK, index)
    return None if r is None else r != b""


def live_unlock(fd: int, index: int) -> None:
    """Release the liveness lock of entry ``index`` held through ``fd``."""
    _ofd(fd, "F_OFD_SETLK", fcntl.F_UNLCK, index)


def live_held(fd: int, index: int) -> bool | None:
    """Whether a process holds the liveness lock of entry ``index`` (asked through ``fd``, a
    descriptor that holds no liveness lock itself); None if the file system has no OFD locks."""
    r = _ofd(fd, "F_OFD_GETLK", fcntl.F_WRLCK, index)
    if r is None:
        return None
    return r == b"" or _FLOCK.unpack(r)[0] != fcntl.F_UNLCK


def reopen(fd: int, path: Path) -> int:
    """A new descriptor of the file open as ``fd``, with an open file description of its own
    (so that locks taken through it are this process's alone), even if the file was unlinked;
    -1 if there is no way to open one (no /proc, and the file gone from its path)."""
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        pass
    try:
        new = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return -1
    a, b = os.fstat(fd), os.fstat(new)
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
        return new
    os.close(new)  # (another file under the same name)
    return -1


def proc_start_ticks(pid: int) -> int:
    """Start time of process ``pid`` in clock ticks since boot (0 if it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    # the command name (field 2) may contain spaces and ')': split after its last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])  # field 22 of proc(5)
    except (IndexError, ValueError):
        return 0


def pid_alive(pid: int, start: int) -> bool:
    """True if ``pid`` runs and (when ``start`` is known) is the process that started then."""
    if not 0 < pid < 1 << 22:  # PID_MAX_LIMIT: a bigger number is no pid (a damaged table)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if start:
        now = proc_start_ticks(pid)
        if now and now != start:
            return False  # the pid was reused by another process
        if _is_zombie(pid):
            return False
    return True


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2:].split()
    return bool(fields) and fields[0] in (b"Z", b"X")
