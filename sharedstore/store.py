"""The Store: create, attach, open, close and unlink a store; its root map; pickling; stats; workers.

A :class:`Store` is this process's handle on one shared segment.  The store itself is a mapping
of named values (its *root map*), and it makes the shared objects: ``store.string(...)``,
``store.number(...)``, ``store.integer(...)``, ``store.map()``.

Every call into the shared memory is one kernel call.  Kernels never block for long: when a lock
stays held past their spin budget they return, and :meth:`Store._slow` decides what to do: wait
for a live owner (up to ``lock_timeout``), or take the lock over from a dead one and repair what
it guards.  The same place commits more memory when the allocator asks for it.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from . import _jit, _pycall
from . import _layout as L
from . import _segment as seg
from ._kernels import hashmap as KM
from ._kernels import heap as KH
from ._kernels import locks as KL
from ._kernels import objects as KO
from ._kernels import status as S
from ._kernels import vector as KV
from ._values import as_float, float_bits
from ._values import as_int64 as _int64
from .errors import (
    LockTimeoutError,
    StoreClosedError,
    StoreCorruptError,
    StoreFullError,
    StoreNotFoundError,
    human_bytes,
    raise_status,
)
from .refs import IntRef, MapRef, NumberRef, Ref, StringRef, ref_class
from .structs import Struct

#: how long an operation waits for a lock held by a *live* process before LockTimeoutError
DEFAULT_LOCK_TIMEOUT = 30.0
_COMMIT_STEP = 4 << 20

# stores open in this process, by path: unpickling a Store reuses the open one
_open: dict[str, Store] = {}
_open_lock = threading.Lock()
# every Store object of this process: re-registered in a forked child, closed at exit
_live: weakref.WeakSet = weakref.WeakSet()


class Store:
    """A shared store mapped into this process.  Make one with :func:`create`, :func:`attach`
    or :func:`open`; it is also a mutable mapping of named values."""

    # _cx and _id, as in a ref (refs.Ref): the entry points of the hot paths read them
    __slots__ = ("_cx", "_id", "__dict__", "__weakref__")

    def __init__(self, name: str, path: Path, fd: int, mm, *, created: bool):
        self.name = name
        self.path = Path(path)
        self._fd = fd
        self._mm = mm
        self._mem = np.frombuffer(mm, dtype=np.int64)
        self._pin_mem = self._mem  # kept after close() until this process's last view goes
        self._words = memoryview(mm).cast("q")  # the same words, read as Python ints (caches)
        self._schema_ids = {}  # type descriptor JSON -> handle of its interned string
        self._structs = {}  # that handle -> the decoded type (Struct, or (dtype, Struct))
        self._lists = {}  # list id -> the MapRef that reads it
        self._pins = {}  # data block -> views of it this process holds (_pins.py)
        self._created = created
        self._insecure = False  # attach(insecure=True) sets it; pickles pass it to workers
        self._creator_pid = os.getpid()
        self._pid = os.getpid()
        self._closed = False
        self._tls = threading.local()
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT
        self.reserved = int(self._mem[L.W_RESERVED])
        self._token = self._register()
        self._context = _pycall.Context(self._mem, self._token)  # read by the hot paths
        self._cx = self._context.address
        self._id = int(self._mem[L.W_ROOT])  # the root map's
        self._root = MapRef._trusted(self, self._id)
        _live.add(self)
        with _open_lock:
            _open.setdefault(str(self.path), self)

    # ------------------------------------------------------------------ lifecycle
    def _register(self) -> int:
        pid = os.getpid()
        token = KH.proc_register(self._mem, pid, seg.proc_start_ticks(pid), time.time_ns())
        if token < 0:
            self.reap()
            token = KH.proc_register(self._mem, pid, seg.proc_start_ticks(pid), time.time_ns())
        if token < 0:
            raise StoreFullError(
                f"store {self.name!r} has {L.PROC_MAX} attached processes already; close some"
            )
        self._pid = pid
        return token

    def _after_fork(self) -> None:
        self._pins = {}  # the parent's pins are not the child's to release
        self._creator_pid = -1  # the child did not create the store: it never unlinks it
        if not self._closed:
            self._token = self._register()
            self._context.set_token(self._token)

    @property
    def mem(self) -> np.ndarray:
        """The whole segment as an int64 array (for kernels; see ``_layout`` for its format)."""
        if self._closed:
            raise StoreClosedError(f"store {self.name!r} is closed in this process")
        return self._mem

    @property
    def token(self) -> int:
        """This process's lock token, for the write functions of :mod:`sharedstore.kernels`."""
        return self._token

    def reserve(self, nbytes: int) -> None:
        """Commit memory now so that at least ``nbytes`` more can be allocated without another
        commit (jitted code using :mod:`sharedstore.kernels` cannot commit memory itself)."""
        mem = self.mem
        while int(mem[L.W_COMMITTED]) - int(mem[L.W_HEAP_TOP]) < nbytes:
            self._grow(nbytes)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Detach this process from the store (it stays for the others).  Idempotent.

        Views of vectors taken in this process stay valid: the process keeps its entry in the
        store's process table (so their memory stays pinned) until the last of them is gone."""
        if self._closed:
            return
        self._closed = True
        self._context.close()  # from here the hot paths hand over: the Python path raises
        with _open_lock:
            if _open.get(str(self.path)) is self:
                del _open[str(self.path)]
        self._mem = None  # a kernel called with None fails with TypeError, never reads
        self._root = None
        if not self._pins:
            self._detach()

    def _detach(self) -> None:
        """Leave the process table and unmap (once no view of this process pins anything)."""
        if self._pin_mem is None:
            return
        mem, self._pin_mem = self._pin_mem, None
        try:
            KH.proc_unregister(mem, self._token, os.getpid())
        finally:
            del mem
            self._words.release()
            try:
                self._mm.close()
            except BufferError:
                pass  # arrays into the store are still alive: the mapping goes with the last
            os.close(self._fd)

    def unlink(self) -> None:
        """Remove the store's file; processes attached keep their mapping until they close."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            raise StoreNotFoundError(f"store {self.name!r} ({self.path}) was removed already") from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        unlink = self._created and self._creator_pid == os.getpid()
        self.close()
        if unlink:
            try:
                self.unlink()
            except StoreNotFoundError:
                pass

    def __reduce__(self):
        # a worker trusts the file as far as the process that sent the store did
        return _unpickle_store, (self.name, str(self.path), self._insecure)

    def _repr_html_(self) -> str:
        if self._closed:
            return f"<b>sharedstore.Store {self.name!r}</b> (closed)"
        from . import _html

        return _html.store(self)

    def __repr__(self) -> str:
        if self._closed:
            return f"<sharedstore.Store {self.name!r} closed>"
        return (
            f"<sharedstore.Store {self.name!r} {len(self)} named values, "
            f"{human_bytes(self._used())} used of {human_bytes(self.reserved)} reserved>"
        )

    # ------------------------------------------------------------------ kernel plumbing
    def _out(self, n: int = 256) -> np.ndarray:
        """This thread's scratch buffer for kernel outputs, at least ``n`` bytes.

        ``self._tls.out`` is the buffer; ``view``, ``words`` and ``floats`` are memoryviews of it
        as bytes, int64 and float64; ``bufs`` is the four of them in that order."""
        out = getattr(self._tls, "out", None)
        if out is None or len(out) < n:
            out = np.empty(max(n, 256) + 7 & ~7, dtype=np.uint8)
            tls = self._tls
            tls.out = out
            tls.view = memoryview(out)  # slices without numpy overhead
            tls.words = tls.view.cast("q")  # the same bytes as Python ints (25 ns a read) ...
            tls.floats = tls.view.cast("d")  # ... and as Python floats
            tls.bufs = (out, tls.view, tls.words, tls.floats)
        return out

    def _slow(self, r: int, fn, args: tuple, what: str, h: int = 0, passthrough=(), hint: int = 0):
        """Handle a negative status ``r`` from ``fn(*args)``: commit memory, wait for or take over
        locks, retry; return the first result that is not negative (or is in ``passthrough``)."""
        deadline = None
        while True:
            if r in passthrough:
                return r
            deadline = self._recover(r, what, h, hint, deadline)
            r = fn(*args)
            if r >= 0 or r in passthrough:
                return r

    def _recover(self, r: int, what: str, h: int = 0, hint: int = 0, deadline=None):
        """Do what a kernel's status ``r`` asks before the call is repeated, or raise.

        Commits more memory (ERR_COMMIT); waits for a live lock owner or takes the lock over
        from a dead one (ERR_BUSY_*); lets an optimistic read try again (ERR_RETRY) once the
        object's writer is done, or mended if it died.  Returns the deadline for the lock waits
        of this operation (pass it back on the next call)."""
        if r == S.ERR_COMMIT:
            self._grow(hint)
            return deadline
        if r not in (S.ERR_BUSY_ALLOC, S.ERR_BUSY_OBJ, S.ERR_BUSY_APPEND, S.ERR_RETRY):
            raise_status(r, what, store=self)
        if deadline is None:
            deadline = time.monotonic() + self.lock_timeout
        if r == S.ERR_BUSY_ALLOC:
            self._unblock(L.W_ALLOC_LOCK, 0, deadline, what)
        elif r == S.ERR_BUSY_OBJ:
            self._unblock(self._lock_word(h), h, deadline, what)
        elif r == S.ERR_BUSY_APPEND:
            self._unblock_append(h, deadline, what)
        elif time.monotonic() > deadline:
            raise_status(r, what, store=self)
        elif h:  # a read kept meeting a write: wait on the writer (mending it if it died)
            w = KH.handle_lock_word(self._mem, h)
            if w >= 0:
                self._unblock(w, h, deadline, what)
        return deadline

    def _lock_word(self, h: int) -> int:
        w = KH.handle_lock_word(self._mem, h)
        if w < 0:
            raise_status(w, "lock", store=self)
        return w

    def _unblock(self, word: int, h: int, deadline: float, what: str) -> None:
        """A lock stayed held: take it over if its owner is dead, else wait (up to ``deadline``)."""
        owner = KL.lock_owner(self._mem, word)
        if owner == 0:
            return
        if owner != self._token and not self._token_alive(owner):
            if KL.lock_takeover(self._mem, word, owner, self._token):
                try:
                    self._repair(word, h)
                finally:
                    KL.lock_release_owned(self._mem, word, self._token)
            self.reap()
            return
        if time.monotonic() > deadline:
            pid = self._token_pid(owner)
            raise LockTimeoutError(
                f"{what}: a lock in store {self.name!r} has been held by process {pid} for over "
                f"{self.lock_timeout:g} s; that process is alive: find out why it is stuck"
            )
        time.sleep(0.0002)

    def _unblock_append(self, h: int, deadline: float, what: str) -> None:
        """An append to vector ``h`` copying outside its lock stayed unfinished: finish it for
        its process if that died (its records are lost, their slots freed), else wait."""
        owner = KV.vector_appender(self._mem, h)
        if owner <= 0:
            return  # done meanwhile (or a status the next call reports)
        if owner != self._token and not self._token_alive(owner):
            args = (self._mem, self._token, h, owner)
            r = KV.vector_reclaim(*args)
            if r < 0:
                self._slow(r, KV.vector_reclaim, args, what, h)
            self.reap()
            return
        if time.monotonic() > deadline:
            raise LockTimeoutError(
                f"{what}: process {self._token_pid(owner)} has been appending to a vector in "
                f"store {self.name!r} for over {self.lock_timeout:g} s; that process is alive: "
                "find out why it is stuck"
            )
        time.sleep(0.0002)

    def _token_entry(self, token: int) -> tuple[int, int, int, int]:
        i = (token & 0xFFFF) - 1
        if not 0 <= i < L.PROC_MAX:
            return (-1, 0, 0, 0)
        w = L.PROC_TABLE // 8 + i * L.PROC_WORDS
        row = self._mem[w:w + L.PROC_WORDS]
        return i, int(row[L.P_PID]), int(row[L.P_GEN]), int(row[L.P_START])

    def _token_pid(self, token: int) -> int:
        return self._token_entry(token)[1]

    def _token_alive(self, token: int) -> bool:
        i, pid, gen, start = self._token_entry(token)
        if i < 0 or pid == 0 or (gen & 0xFFFFFFFFFFFF) != token >> 16:
            return False
        return seg.pid_alive(pid, start)

    def _repair(self, word: int, h: int) -> None:
        """Repair what a lock guards after its owner died holding it (we hold it now)."""
        if word == L.W_ALLOC_LOCK:
            return  # allocator steps publish with single stores: at worst a leaked block
        kind = KH.handle_kind(self._mem, h)
        if kind in (L.KIND_MAP, L.KIND_LIST):
            KM.map_recount(self._mem, h)
        elif kind == L.KIND_VECTOR:
            KV.vector_after_dead_owner(self._mem, h)

    def _grow(self, hint: int = 0) -> None:
        """Commit more of the reservation: usually 50% more, and at least enough for a block
        holding ``hint`` bytes past the heap's top."""
        cur = int(self._mem[L.W_COMMITTED])  # aligned int64 loads are atomic
        if cur >= self.reserved:
            raise_status(S.ERR_FULL, "commit", store=self)
        # The block is up to a quarter bigger than ``hint`` (its size class): committing only
        # ``hint`` more made a big allocation commit twice, a second ``hint`` it did not need.
        need = int(self._mem[L.W_HEAP_TOP]) + _block_span(hint) - cur if hint else 0
        step = max(cur // 2, _COMMIT_STEP, need + L.PAGE)
        new = min(self.reserved, (cur + step + L.PAGE - 1) // L.PAGE * L.PAGE)
        seg.commit(self._fd, cur, new - cur, self.name, self.path)
        KH.heap_commit_max(self._mem, new)

    # ------------------------------------------------------------------ objects
    def string(self, value: str = "") -> StringRef:
        """A new shared string (UTF-8, any length)."""
        data = _utf8(value)
        args = (self.mem, self._token, data)
        h = KO.string_new(*args)
        if h < 0:
            h = self._slow(h, KO.string_new, args, "store.string()", hint=len(data))
        return StringRef._trusted(self, h)

    def number(self, value: float = 0.0) -> NumberRef:
        """A new shared float64 with atomic ``add``."""
        return NumberRef._trusted(self, self._scalar_new(L.KIND_FLOAT, float_bits(as_float(value))))

    def integer(self, value: int = 0) -> IntRef:
        """A new shared int64 with atomic ``add`` and ``compare_exchange``."""
        return IntRef._trusted(self, self._scalar_new(L.KIND_INT, _int64(value)))

    def map(self, items=None, /, **kwargs) -> MapRef:
        """A new shared map (str, bytes or int keys; any values), optionally filled."""
        args = (self.mem, self._token, L.KIND_MAP)
        h = KM.map_new(*args)
        if h < 0:
            h = self._slow(h, KM.map_new, args, "store.map()")
        m = MapRef._trusted(self, h)
        if items is not None or kwargs:
            m.update(items or (), **kwargs)
        return m

    def _scalar_new(self, kind: int, bits: int) -> int:
        args = (self.mem, self._token, kind, bits)
        h = KO.scalar_new(*args)
        if h < 0:
            h = self._slow(h, KO.scalar_new, args, "new object")
        return h

    def ref(self, id: int) -> Ref:
        """The ref of the right class for the object ``id`` names."""
        kind = KH.handle_kind(self.mem, _int64(id))
        if kind < 0:
            raise_status(kind, f"store.ref({id!r})", store=self)
        if kind == L.KIND_VECTOR:
            from .vectors import _vector_or_array

            return _vector_or_array(self, id)
        return ref_class(kind)._trusted(self, id)

    # ------------------------------------------------------------------ struct schemas
    def _intern(self, text: str) -> int:
        """The handle of a string holding ``text`` (a type descriptor), one per store: the
        schema map finds it for every process."""
        h = self._schema_ids.get(text)
        if h is None:
            schemas = MapRef._trusted(self, int(self.mem[L.W_SCHEMAS]))
            ref = schemas.get(text)
            if ref is None:
                ref = self.string(text)
                schemas[text] = ref
            h = self._schema_ids[text] = ref.id
        return h

    def _interned(self, handle: int, decode):
        """``decode(text)`` of the interned string ``handle`` (cached per process)."""
        value = self._structs.get(handle)
        if value is None:
            text = StringRef(self, handle).get()
            try:
                value = decode(text)
            except (ValueError, TypeError, KeyError) as e:  # SchemaError is a ValueError
                raise StoreCorruptError(
                    f"the type descriptor {text[:60]!r} stored in {self.name!r} cannot be read "
                    f"({e}); the store may be damaged: run `python -m sharedstore check NAME`"
                ) from e
            self._structs[handle] = value
        return value

    def _schema_handle(self, struct) -> int:
        h = self._intern(struct.json)
        self._structs.setdefault(h, struct)
        return h

    def _struct_of(self, schema: int):
        """The Struct whose descriptor string is ``schema``."""
        return self._interned(schema, lambda text: Struct.from_descriptor(json.loads(text)))

    def array(self, shape, dtype="float64"):
        """A new zero-filled array of fixed ``shape``: its memory never moves."""
        from .vectors import ArrayRef

        shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
        if any(n < 0 for n in shape):
            raise ValueError(f"bad shape {shape}")
        n = int(np.prod(shape))
        a = ArrayRef._create(self, dtype, n, shape=shape)
        a._call(KV.vector_truncate, n, what="store.array()", hint=n * a.dtype.itemsize)
        return a

    def vector(self, dtype=None, capacity: int = 0):
        """A new growable vector of ``dtype`` (a NumPy dtype, or a :class:`Struct` for a table
        of records), with room for ``capacity`` slots before it first grows.  With no dtype
        (``store.vector(None)`` or ``store.vector()``), a :class:`ListRef` of any values."""
        from .vectors import VectorRef

        if dtype is None:
            from .refs import ListRef

            args = (self.mem, self._token, L.KIND_LIST)
            h = KM.map_new(*args)
            if h < 0:
                h = self._slow(h, KM.map_new, args, "store.vector()")
            return ListRef._trusted(self, h)
        return VectorRef._create(self, dtype, capacity)

    # ------------------------------------------------------------------ root map (named values)
    @property
    def root(self) -> MapRef:
        """The root map: the store's named values."""
        if self._closed:
            raise StoreClosedError(f"store {self.name!r} is closed in this process")
        return self._root

    # The hot paths run as C functions (_pycall.method) reading the root map through _id;
    # the _slow_* methods do what they hand over.
    __getitem__ = _pycall.method("map_getitem", "_slow_getitem", "(key, /)",
                                 "``store[key]``: the named value ``key``.")
    __setitem__ = _pycall.method("map_setitem", "_slow_setitem", "(key, value, /)",
                                 "``store[key] = value``: set a named value.")
    __contains__ = _pycall.method("map_contains", "_slow_contains", "(key, /)",
                                  "``key in store``.")
    get = _pycall.method("map_get", "_slow_get", "(key, default=None)",
                         "``store[key]``, or ``default`` if there is no such named value.")

    def _slow_getitem(self, key):
        return self.root._get(key)

    def _slow_setitem(self, key, value) -> None:
        self.root._set(key, value)

    def _slow_contains(self, key) -> bool:
        return key in self.root

    def _slow_get(self, key, default=None):
        return self.root.get(key, default)

    def __delitem__(self, key) -> None:
        del self.root[key]

    def view(self, key):
        """A zero-copy, read-only view of the array stored as named value ``key``
        (:meth:`MapRef.view`)."""
        return self.root.view(key)

    def __len__(self) -> int:
        return len(self.root)

    def __iter__(self):
        return iter(self.root)

    # ------------------------------------------------------------------ introspection
    def _used(self) -> int:
        return L.HEAP_START + int(self._mem[L.W_USED])

    def stats(self) -> dict:
        """Sizes in bytes and live objects by kind.

        ``reserved``: the reservation; ``committed``: memory backed so far; ``used``: bytes in
        live blocks plus the fixed header; ``free``: ``reserved - used``; ``free_listed``:
        committed bytes on free lists or never handed out."""
        mem = self.mem
        committed = int(mem[L.W_COMMITTED])
        used = self._used()
        objects = {
            name: int(mem[L.W_OBJECTS + kind]) for kind, name in L.KIND_NAMES.items()
        }
        return {
            "name": self.name,
            "path": str(self.path),
            "reserved": self.reserved,
            "committed": committed,
            "used": used,
            "free": self.reserved - used,
            "free_listed": committed - used,
            "handles": int(mem[L.W_HT_COUNT]),
            "named_values": len(self),
            "objects": {k: v for k, v in objects.items() if v},
            "workers": len(self.workers()),
        }

    def check(self, repair: bool = False):
        """Walk the whole store and report every inconsistency; with ``repair``, fix what can be.

        Returns a :class:`sharedstore.check.CheckReport` (``ok``, ``problems``, ``repaired``,
        ``stats``; ``str()`` reads well).  Safe while other processes work: the walk holds the
        allocator lock, so their writes wait for it.  ``repair=True`` frees what killed
        operations leaked, rebuilds free lists and counts, removes damaged map entries and
        drops objects whose own memory is damaged (their ids then raise UseAfterFreeError).
        Also ``python -m sharedstore check NAME [--repair]``."""
        from .check import check

        return check(self, repair)

    def workers(self) -> list[dict]:
        """The processes attached now: ``{"pid", "since", "self"}`` (dead ones are reaped)."""
        self.reap()
        out = []
        me = os.getpid()
        for i in range(L.PROC_MAX):
            w = L.PROC_TABLE // 8 + i * L.PROC_WORDS
            pid = int(self._mem[w + L.P_PID])
            if pid:
                out.append({
                    "pid": pid,
                    "since": int(self._mem[w + L.P_SINCE]) / 1e9,
                    "self": pid == me,
                })
        return out

    def reap(self) -> int:
        """Free the process-table entries of processes that died without closing, releasing
        the views they held; return how many."""
        mem = self.mem
        table = mem[L.PROC_TABLE // 8:L.PROC_TABLE // 8 + L.PROC_MAX * L.PROC_WORDS]
        rows = table.reshape(L.PROC_MAX, L.PROC_WORDS)
        n = 0
        for i in np.flatnonzero(rows[:, L.P_PID]).tolist():
            pid, start = int(rows[i, L.P_PID]), int(rows[i, L.P_START])
            if not seg.pid_alive(pid, start):
                args = (mem, self._token, i, pid)
                r = KV.proc_reap(*args)
                if r < 0:
                    r = self._slow(r, KV.proc_reap, args, "reap")
                n += r
        return n


def _delegate(name: str):
    def method(self, *args, **kwargs):
        return getattr(self.root, name)(*args, **kwargs)

    method.__name__ = name
    method.__qualname__ = f"Store.{name}"
    method.__doc__ = f"Same as ``store.root.{name}(...)``: see :meth:`MapRef.{name}`."
    return method


# the store is a mapping of named values: everything else a map does, its root map does for it
for _name in ("keys", "values", "items", "set", "add", "delete", "pop", "popitem",
              "setdefault", "update", "clear", "get_many", "set_many"):
    setattr(Store, _name, _delegate(_name))


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


def _utf8(value) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"a string value must be a str, not {type(value).__name__}")
    return value.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------- module-level API
def _resolve(name: str, path) -> Path:
    return Path(path) if path is not None else seg.shm_path(name)


def create(name: str, size: int | None = None, *, path: str | os.PathLike | None = None) -> Store:
    """Create a new store called ``name`` and attach to it.

    Parameters
    ----------
    size
        The reservation in bytes: the most the store can ever hold.  Memory is only committed
        as it is used, so the default, the size of the filesystem, costs nothing up front.
    path
        Back the store with this file instead of ``/dev/shm/sharedstore.<name>``.

    Raises
    ------
    StoreExistsError
        If the store exists already: attach to it, or remove it with ``sharedstore.unlink``.
    StoreFullError
        If the filesystem cannot back even the store's header.
    """
    seg.check_name(name)
    _jit.load_all()  # compile here, in the creator, before any worker starts
    p = _resolve(name, path)
    reserved = size if size is not None else seg.default_reservation(p.parent)
    if not isinstance(reserved, int) or isinstance(reserved, bool):
        raise TypeError(f"size must be an int number of bytes, not {type(reserved).__name__}")
    if reserved < L.MIN_RESERVATION:
        raise ValueError(f"size={reserved} is too small: a store needs at least {L.MIN_RESERVATION} bytes")
    reserved = reserved // L.PAGE * L.PAGE
    fd = seg.create_file(p, reserved, name)
    try:
        seg.commit(fd, 0, L.INITIAL_COMMIT, name, p)
        mm = seg.map_file(fd, reserved)
        mem = np.frombuffer(mm, dtype=np.int64)
        KH.heap_init(mem, reserved, secrets.randbits(63))
        mem[L.W_COMMITTED] = L.INITIAL_COMMIT
        mem[L.W_CREATED_NS] = time.time_ns()
        root = KM.map_new(mem, 1 << 16 | 1, L.KIND_MAP)  # nobody else can see the store yet
        if root < 0:
            raise_status(root, "create root map")
        mem[L.W_ROOT] = root
        schemas = KM.map_new(mem, 1 << 16 | 1, L.KIND_MAP)
        if schemas < 0:
            raise_status(schemas, "create schema map")
        mem[L.W_SCHEMAS] = schemas
        mem[L.W_READY] = 1
        mem[L.W_MAGIC] = L.MAGIC  # last: attach accepts the store from here
        del mem
        store = Store(name, p, fd, mm, created=True)
    except BaseException:
        try:
            os.unlink(p)
        finally:
            os.close(fd)
        raise
    return store


def attach(name: str, *, path: str | os.PathLike | None = None, insecure: bool = False) -> Store:
    """Attach to the existing store ``name``.

    Parameters
    ----------
    insecure
        Attach even if the file is owned by another user or its mode lets others write it.
        Only for a store whose other writers you trust: a pickled value read from it runs
        whatever code its writer put in it.

    Raises
    ------
    StoreNotFoundError
        If no store called ``name`` exists.  Create it with ``sharedstore.create(name)``.
    UntrustedStoreError
        If another user could have written the file (and ``insecure`` is false).
    StoreCorruptError
        If the file is not a sharedstore store, or is truncated or damaged.
    """
    seg.check_name(name)
    p = _resolve(name, path)
    fd = seg.open_file(p, name)
    try:
        if not insecure:
            seg.check_trusted(fd, name, p)
        size = os.fstat(fd).st_size
        if size < L.HEAP_START:
            raise StoreCorruptError(
                f"store {name!r} ({p}) is truncated: {size} bytes, less than its header; remove it "
                f"with sharedstore.unlink({name!r})"
            )
        mm = seg.map_file(fd, size)
        mem = np.frombuffer(mm, dtype=np.int64)
        try:
            _check_header(mem, name, p, size)
        finally:
            del mem
    except BaseException:
        os.close(fd)
        raise
    store = Store(name, p, fd, mm, created=False)
    store._insecure = insecure
    return store


def _check_header(mem, name, p, size) -> None:
    deadline = time.monotonic() + 2.0
    while int(mem[L.W_MAGIC]) == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # its creator is still initialising it
    fix = f"remove it with sharedstore.unlink({name!r})"
    if int(mem[L.W_MAGIC]) != L.MAGIC:
        raise StoreCorruptError(f"{p} is not a sharedstore store (bad magic number); {fix}")
    if int(mem[L.W_VERSION]) != L.FORMAT_VERSION:
        raise StoreCorruptError(
            f"store {name!r} has format version {int(mem[L.W_VERSION])}; this sharedstore reads "
            f"version {L.FORMAT_VERSION}: use the sharedstore that made it, or {fix}"
        )
    reserved, committed = int(mem[L.W_RESERVED]), int(mem[L.W_COMMITTED])
    top = int(mem[L.W_HEAP_TOP])
    if reserved != size or not (L.INITIAL_COMMIT <= committed <= reserved) or not (
        L.HEAP_START <= top <= committed
    ):
        raise StoreCorruptError(
            f"store {name!r} ({p}) has an inconsistent header (size {size}, reserved {reserved}, "
            f"committed {committed}, heap top {top}); {fix}"
        )


def open(name: str, size: int | None = None, *, path=None, insecure: bool = False) -> Store:  # noqa: A001
    """Attach to store ``name``, or create it if it does not exist (``insecure``: see
    :func:`attach`)."""
    for _ in range(10):
        try:
            return attach(name, path=path, insecure=insecure)
        except StoreNotFoundError:
            pass
        try:
            return create(name, size, path=path)
        except FileExistsError:
            pass  # created by someone else meanwhile: attach to it
    raise StoreNotFoundError(f"store {name!r} kept appearing and disappearing; try again")


def unlink(name: str, *, path=None) -> None:
    """Remove store ``name``; processes attached to it keep their mapping until they close."""
    p = _resolve(seg.check_name(name), path)
    try:
        os.unlink(p)
    except FileNotFoundError:
        raise StoreNotFoundError(f"no store named {name!r} ({p})") from None


def list_stores() -> list[str]:
    """Names of the stores in /dev/shm."""
    return seg.list_names()


def _unpickle_store(name: str, path: str, insecure: bool = False) -> Store:
    with _open_lock:
        s = _open.get(path)
        if s is not None and not s.closed and s._pid == os.getpid():
            return s
    s = attach(name, path=path, insecure=insecure)
    with _open_lock:
        _open[path] = s
    return s


def _after_fork_in_child() -> None:
    global _open_lock
    _open_lock = threading.Lock()
    for s in list(_live):
        s._after_fork()


def _close_all() -> None:
    """At exit: release the pins of views still alive (no user code runs any more), detach."""
    from ._pins import release_pin

    for s in list(_live):
        try:
            if s._pid == os.getpid() and s._pin_mem is not None:
                for block, n in list(s._pins.items()):
                    for _ in range(n):
                        release_pin(s, block)
                s._pins.clear()
            s.close()
            s._detach()
        except Exception:
            pass


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_all)
