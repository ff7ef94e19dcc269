"""This process's attachment to one store file: its mapping, its process-table entry, its pins,
and what it does for the store: commit memory, reap dead processes.

A process maps a store file once, however many :class:`~sharedstore.Store` objects it opens on
it (``attach`` in every task of a pool, ``pickle.loads`` of many refs...): every Store of the
same file in this process is a *handle* on one :class:`Attachment`, which holds the mapping and
the process's one entry in the store's process table (its lock token).  The attachment counts
its open handles; when the last is closed or garbage-collected, and no view of the store is
alive in this process, it leaves the process table and unmaps the file (:meth:`release`).

Attachments are found by path and told apart by the file's identity (device, inode): a store
removed and created again under the same name is another file, so attaching to it maps it anew,
while handles on the old one keep their mapping until they go.

A process's entry is proved alive by a lock the kernel keeps for it: an OFD record lock on the
entry's first byte of the store file, held through a descriptor of the process's own
(``_segment.live_lock``).  The kernel drops it when the process dies, and every process that maps
the store sees it, in any pid namespace: a lock owner or an entry is judged dead only when its
liveness lock is free (by pid and start time only on a file system without OFD locks).  An entry
is claimed with its liveness lock held first, and reaped with it held by the reaper, so a reaper
never frees the entry of a process that is alive or registering.

A forked child re-registers each attachment it inherited with open handles (its own entry and
token and liveness lock, never the parent's) and drops the parent's pins, which are not its to
release.  At exit every attachment of this process releases its pins and leaves the table.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _calls
from . import _layout as L
from . import _segment as seg
from ._kernels import heap as KH
from ._kernels import pins as KP
from ._kernels import status as S
from ._pins import release_pin
from .errors import StoreCorruptError, StoreFullError, StoreVersionError, raise_status

if TYPE_CHECKING:
    import mmap

    from .store import Store

_COMMIT_STEP = 4 << 20

# the attachment of each path in this process, for attach() and unpickling to reuse; a store
# file replaced under its path gets a new attachment here, and the old one lives on in _live
_by_path: dict[str, Attachment] = {}
_live: set[Attachment] = set()  # every attachment of this process not yet detached
_registry_lock = threading.Lock()


class Attachment:
    """One store file mapped into this process (see the module doc)."""

    def __init__(self, name: str, path: Path, fd: int, mm: mmap.mmap, st: os.stat_result):
        self.name = name
        self.path = Path(path)
        self.key = str(path)  # (how the registry finds it)
        self.identity = (st.st_dev, st.st_ino)
        self.fd = fd
        self.mm = mm
        self.mem = np.frombuffer(mm, dtype=np.int64)
        self.words = memoryview(mm).cast("q")  # the same words, read as Python ints (caches)
        self.reserved = int(self.mem[L.W_RESERVED])
        self.created_ns = int(self.mem[L.W_CREATED_NS])  # tells this store from a successor
        self.pins: dict[int, int] = {}  # data block -> views of it this process holds (_pins.py)
        self.views: dict[int, tuple[weakref.ref, int]] = {}  # id -> (a view's watcher, its block)
        self.schema_ids: dict[str, int] = {}  # type descriptor JSON -> its interned string
        self.structs: dict[int, Any] = {}  # that handle -> the decoded type (per file: shared)
        self.handles = 0  # open Store handles of this process
        # those, by id (forks update them; a Store is a mapping: unhashable, and equal to
        # another handle on the same store)
        self.stores: weakref.WeakValueDictionary[int, Store] = weakref.WeakValueDictionary()
        self.default: weakref.ref[Store] | None = None  # the handle unpickling reuses
        self.lock = threading.RLock()
        self.pid = os.getpid()
        self.detached = False
        self.live_fd = -1  # this process's own descriptor of the file: its liveness lock
        self.live_index = -1  # the process-table entry that lock is on (-1: none held)
        self.reaping: set[int] = set()  # entries of dead processes whose liveness lock we hold
        self.token = self._register()

    # ------------------------------------------------------------------ the process table
    def _register(self) -> int:
        pid = os.getpid()
        start, since = seg.proc_start_ticks(pid), time.time_ns()
        if self.live_fd < 0:
            self.live_fd = seg.reopen(self.fd, self.path)
        for _ in range(2):
            token = self._claim(pid, start, since)
            if token > 0:
                return token
            self.reap()  # (full: dead processes' entries are freed, then one is tried again)
        raise StoreFullError(
            f"store {self.name!r} has {L.PROC_MAX} attached processes already: close the "
            "stores of processes that no longer use it"
        )

    def _claim(self, pid: int, start: int, since: int) -> int:
        """Claim a free entry, its liveness lock taken first: the token, or 0 if none is free."""
        rows = self._rows()
        for i in np.flatnonzero(rows[:, L.P_PID] == 0).tolist():
            locked = seg.live_lock(self.live_fd, i) if self.live_fd >= 0 else None
            if locked is False:
                continue  # (another process is claiming it, or reaping it)
            token = KH.proc_claim(self.mem, i, pid, start, since)
            if token > 0:
                self.live_index = i if locked else -1
                if locked is None and self.live_fd >= 0:
                    os.close(self.live_fd)  # no OFD locks here: liveness is judged by pid
                    self.live_fd = -1
                return token
            if locked:
                seg.live_unlock(self.live_fd, i)
        return 0

    def _rows(self) -> np.ndarray:
        """The process table, a row of ``PROC_WORDS`` words per entry (a view)."""
        table = self.mem[L.PROC_TABLE // 8:L.PROC_TABLE // 8 + L.PROC_MAX * L.PROC_WORDS]
        return table.reshape(L.PROC_MAX, L.PROC_WORDS)

    def alive(self, index: int, pid: int, start: int) -> bool:
        """Whether the process of entry ``index`` (``pid``, started at ``start``) is alive:
        its liveness lock is held (or, where there are no OFD locks, the pid runs).  An entry
        this process is reaping is dead: the liveness lock held on it is ours."""
        if index in self.reaping:
            return False
        held = seg.live_held(self.fd, index)
        if held is not None:
            return held
        return seg.pid_alive(pid, start)

    def hold(self) -> bool:
        """Count a new open handle; False if this attachment has detached meanwhile."""
        with self.lock:
            if self.detached:
                return False
            self.handles += 1
            return True

    def default_store(self) -> Store | None:
        """The open handle that unpickling in this process reuses, if it is still alive."""
        s = self.default() if self.default is not None else None
        return s if s is not None and not s.closed else None

    def release(self) -> None:
        """One handle was closed or collected: detach if it was the last and no view is left."""
        with self.lock:
            self.handles -= 1
            if self.handles <= 0 and not self.pins:
                self.detach()

    def view_gone(self, ref: weakref.ref) -> None:
        """A view's array and every array derived from it are garbage: release its pin, and
        detach if it was the process's last hold (``_pins.py``)."""
        with self.lock:
            entry = self.views.pop(id(ref), None)
            if entry is None or self.detached:
                return  # inherited through fork, or released at exit
            block = entry[1]
            n = self.pins.get(block, 0)
            if n == 0:
                return  # (cannot happen: a watched view holds a pin)
            if n == 1:
                del self.pins[block]
            else:
                self.pins[block] = n - 1
            release_pin(self, block)
            if self.handles <= 0 and not self.pins:
                self.detach()  # every handle was closed while views were alive: the last one

    def detach(self) -> None:
        """Leave the process table and unmap (the caller checked no handle or view is left)."""
        with self.lock:
            if self.detached:
                return
            self.detached = True
            with _registry_lock:
                _live.discard(self)
                if _by_path.get(self.key) is self:
                    del _by_path[self.key]
            # (a kernel called with the mem of a detached attachment fails with TypeError
            # instead of reading unmapped memory; no handle is left to call one)
            mem, self.mem = self.mem, None  # type: ignore[assignment]
            try:
                if self.pid == os.getpid():
                    KH.proc_unregister(mem, self.token, self.pid)
            finally:
                del mem
                self._drop_liveness()
                self.words.release()
                try:
                    self.mm.close()
                except BufferError:
                    pass  # arrays into the store are still alive: the mapping goes with the last
                os.close(self.fd)

    def _drop_liveness(self) -> None:
        """Close this process's liveness descriptor (its lock goes with it)."""
        fd, self.live_fd, self.live_index = self.live_fd, -1, -1
        if fd >= 0:
            os.close(fd)

    def after_fork(self) -> None:
        """In a forked child: the parent's pins and liveness lock are not ours; open handles get
        our own entry.  (Closing the inherited liveness descriptor leaves the parent's lock: the
        parent has the descriptor open too.)"""
        self.lock = threading.RLock()
        self.pins.clear()
        self.views.clear()  # (the parent's views: their pins are the parent's to release)
        self.reaping = set()
        self.pid = os.getpid()
        self._drop_liveness()
        if self.handles > 0 and not self.detached:
            self.token = self._register()
            for store in list(self.stores.values()):
                store._set_token(self.token)

    # ------------------------------------------------------------------ memory and processes
    def grow(self, hint: int = 0) -> None:
        """Commit more of the reservation: usually 50% more, and at least enough for a block
        holding ``hint`` bytes past the heap's top."""
        cur = int(self.mem[L.W_COMMITTED])  # aligned int64 loads are atomic
        if cur >= self.reserved:
            raise_status(S.ERR_FULL, "commit", store=self)
        # The block is up to a quarter bigger than ``hint`` (its size class): committing only
        # ``hint`` more made a big allocation commit twice, a second ``hint`` it did not need.
        need = int(self.mem[L.W_HEAP_TOP]) + _block_span(hint) - cur if hint else 0
        step = max(cur // 2, _COMMIT_STEP, need + L.PAGE)
        new = min(self.reserved, (cur + step + L.PAGE - 1) // L.PAGE * L.PAGE)
        seg.commit(self.fd, cur, new - cur, self.name, self.path)
        KH.heap_commit_max(self.mem, new)

    def reap(self) -> int:
        """Free the process-table entries of processes that died without closing, releasing
        the views they held; return how many."""
        mem = self.mem
        rows = self._rows()
        n = 0
        for i in np.flatnonzero(rows[:, L.P_PID]).tolist():
            pid, gen, start = (int(x) for x in rows[i, [L.P_PID, L.P_GEN, L.P_START]])
            if pid == 0 or i in self.reaping or self.alive(i, pid, start):
                continue  # (an entry being reaped: by this very call, further up the stack)
            # hold the dead entry's liveness lock while it is freed: no process can claim it
            # meanwhile, and a process that holds it (registering there) is not reaped.  While
            # it is held, the dead process's own locks (which freeing its entry may wait for)
            # are judged by ``reaping``, not by that lock
            locked = seg.live_lock(self.live_fd, i) if self.live_fd >= 0 else None
            if locked is False:
                continue
            self.reaping.add(i)
            try:
                n += _calls.call(self, KP.proc_reap, mem, self.token, i, pid, gen, what="reap")
            finally:
                self.reaping.discard(i)
                if locked:
                    seg.live_unlock(self.live_fd, i)
        return n


def _block_span(nbytes: int) -> int:
    """Bytes spanned by a block whose data holds ``nbytes``: its size class, header word
    included (as ``_kernels/heap.py`` ``alloc_locked`` rounds it)."""
    need = nbytes + 8
    lo, hi = 0, L.N_CLASSES  # the smallest class that spans ``need``
    while lo < hi:
        mid = (lo + hi) // 2
        if L.class_size(mid) < need:
            lo = mid + 1
        else:
            hi = mid
    return L.class_size(lo) if lo < L.N_CLASSES else need


# ---------------------------------------------------------------------- finding and mapping
def find(path: Path, st: os.stat_result | None = None,
         created_ns: int | None = None) -> Attachment | None:
    """This process's live attachment of the store at ``path``, one handle held on it, or None.

    With ``st``, only an attachment of that very file (device and inode) qualifies; with
    ``created_ns``, only one of the store created then (even if a new file replaced it)."""
    me = os.getpid()
    key = str(path)
    with _registry_lock:
        current = _by_path.get(key)
        # (the others only when that is not the one: a store replaced under the path)
        candidates = [current] + [a for a in _live if a is not current]
    for att in candidates:
        if att is None or att.pid != me or att.key != key:
            continue
        if st is not None and att.identity != (st.st_dev, st.st_ino):
            continue
        if created_ns is not None and att.created_ns != created_ns:
            continue
        if att.hold():
            return att
    return None


def adopt(name: str, path: Path, fd: int, mm: mmap.mmap) -> Attachment:
    """Make the attachment of a store file this process mapped (one handle held on it)."""
    att = Attachment(name, path, fd, mm, os.fstat(fd))
    att.hold()
    with _registry_lock:
        _by_path[att.key] = att
        _live.add(att)
    return att


def map_store(name: str, path: Path, fd: int) -> Attachment:
    """Map the store file open as ``fd`` (its header checked) and register this process."""
    _check_format(os.pread(fd, 16, 0), name, path)  # (before anything of this format is read)
    size = os.fstat(fd).st_size
    if size < L.HEAP_START:
        raise StoreCorruptError(
            f"store {name!r} ({path}) is truncated: {size} bytes, less than its header; "
            f"remove it with sharedstore.unlink({name!r})"
        )
    mm = seg.map_file(fd, size)
    mem = np.frombuffer(mm, dtype=np.int64)
    try:
        _check_header(mem, name, path, size)
        if int(mem[L.W_VALUE_KINDS]) & L.V_KNOWN != L.V_KNOWN:  # (this library's first attach)
            from ._kernels.check import value_kinds_add

            value_kinds_add(mem, L.V_KNOWN)  # the value kinds it may write from now on
    finally:
        del mem  # (on an error the mapping goes with the traceback that still shows it)
    return adopt(name, path, fd, mm)


def _check_format(head: bytes, name: str, p: Path) -> None:
    """Raise StoreVersionError if the header words ``head`` (magic, version) are of a store of
    another format version; anything else is for :func:`_check_header` to judge."""
    if len(head) < 16 or int.from_bytes(head[:8], "little") != L.MAGIC:
        return
    version = int.from_bytes(head[8:16], "little", signed=True)
    if version > L.FORMAT_VERSION:
        raise StoreVersionError(
            f"store {name!r} ({p}) was made by a newer sharedstore (format version {version}); "
            f"this sharedstore reads format version {L.FORMAT_VERSION}: upgrade sharedstore "
            "(pip install -U sharedstore) in every process that uses it")
    if version != L.FORMAT_VERSION:
        raise StoreVersionError(
            f"store {name!r} ({p}) was made by an older sharedstore (format version {version}); "
            f"this sharedstore reads format version {L.FORMAT_VERSION}: use the sharedstore "
            f"that made it, or remove it with sharedstore.unlink({name!r}) and create it again")


def _check_header(mem: np.ndarray, name: str, p: Path, size: int) -> None:
    deadline = time.monotonic() + 2.0
    while int(mem[L.W_MAGIC]) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # its creator is still initialising it
    fix = f"remove it with sharedstore.unlink({name!r})"
    if int(mem[L.W_MAGIC]) != L.MAGIC:
        raise StoreCorruptError(f"{p} is not a sharedstore store (bad magic number); {fix}")
    _check_format(mem[:2].tobytes(), name, p)
    reserved, committed = int(mem[L.W_RESERVED]), int(mem[L.W_COMMITTED])
    top = int(mem[L.W_HEAP_TOP])
    if reserved != size or not (L.INITIAL_COMMIT <= committed <= reserved) or not (
        L.HEAP_START <= top <= committed
    ):
        raise StoreCorruptError(
            f"store {name!r} ({p}) has an inconsistent header (size {size}, reserved {reserved}, "
            f"committed {committed}, heap top {top}); {fix}"
        )


# ---------------------------------------------------------------------- fork and exit
def _after_fork_in_child() -> None:
    global _registry_lock
    _registry_lock = threading.Lock()
    for att in list(_live):
        att.after_fork()


def _close_all() -> None:
    """At exit: release the pins of views still alive (no user code runs any more), detach."""
    for att in list(_live):
        try:
            if att.pid == os.getpid() and not att.detached:
                for block, n in list(att.pins.items()):
                    for _ in range(n):
                        release_pin(att, block)
                att.pins.clear()
                att.views.clear()
                for store in list(att.stores.values()):
                    store._context.close()
                att.detach()
        except Exception:
            pass  # never raise at interpreter exit; the store's reaping covers what is left


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
