"""The Store: create, attach, open, close and unlink a store; its root map; pickling; stats and
workers.

A :class:`Store` is a handle on one shared segment, which this process maps once however many
handles it opens (``_attachment.py``).  The store itself is a mapping of named values (its *root
map*), and it makes the shared objects: ``store.string(...)``, ``store.number(...)``,
``store.integer(...)``, ``store.map()``.

Every call into the shared memory is one kernel call.  Kernels never block for long: when a lock
stays held past their spin budget they return, and :meth:`Store._call` decides what to do: wait
for a live owner (up to ``lock_timeout``), or take the lock over from a dead one and repair what
it guards (``_calls.py``).  The same place commits more memory when the allocator asks
for it.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import weakref
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, SupportsIndex, TypeVar, overload

import numpy as np

from . import _attachment, _calls, _jit
from . import _layout as L
from . import _segment as seg
from ._fastpath.cpython import Context
from ._kernels import hashmap as KM
from ._kernels import heap as KH
from ._kernels import objects as KO
from ._values import Key, as_float, float_bits, kind_name
from ._values import as_int64 as _int64
from .errors import (
    InvalidHandleError,
    StoreClosedError,
    StoreCorruptError,
    StoreNotFoundError,
    human_bytes,
    raise_status,
)
from .maps import ListRef, MapRef
from .refs import IntRef, NumberRef, Ref, StringRef, ref_class
from .structs import Struct, StructProxy

if TYPE_CHECKING:
    from .check import CheckReport
    from .vectors import ArrayRef, DTypeLike, VectorRef

DEFAULT_LOCK_TIMEOUT = _calls.DEFAULT_LOCK_TIMEOUT

_T = TypeVar("_T")


class Store(MutableMapping[Key, Any]):
    """A shared store mapped into this process.  Make one with :func:`create`, :func:`attach`
    or :func:`open`; it is also a mutable mapping of named values.

    A Store is a *handle*: every Store of the same store in one process shares one mapping and
    one entry in the store's process table (``sharedstore._attachment``), so attaching once per
    task costs no memory and no table entry.  Closing (or garbage-collecting) a handle closes
    only it; the process detaches when its last handle and its last view are gone."""

    # _cx and _id, as in a ref (refs.Ref): the entry points of the hot paths read them (the
    # mapping ABCs have no slots of their own: the layout is a plain object's)
    __slots__ = ("_cx", "_id", "__dict__", "__weakref__")
    _cx: int  # (set through _SET_CX and _SET_ID: read-only from Python)
    _id: int

    def __init__(self, att: _attachment.Attachment, name: str, *, created: bool,
                 insecure: bool = False):
        """Not for users: a Store comes from :func:`create`, :func:`attach` or :func:`open`."""
        self.name = name
        self.path = att.path
        self._att = att
        self._mm = att.mm
        self._mem: np.ndarray | None = att.mem
        self._words = att.words
        self._pins = att.pins  # (shared by the handles: the process's views)
        self._schema_ids = att.schema_ids
        self._structs = att.structs
        self._created = created
        self._insecure = insecure  # attach(insecure=True) sets it; pickles pass it to workers
        self._creator_pid = os.getpid()
        self._closed = False
        self._tls = threading.local()
        self.lock_timeout = DEFAULT_LOCK_TIMEOUT
        self.reserved = att.reserved
        self._token = att.token
        self._context = Context(att.mem, att.token)  # read by the C entry points
        _SET_CX(self, self._context.address)  # (read-only from Python: the entry points read them)
        _SET_ID(self, int(att.mem[L.W_ROOT]))  # the root map's
        att.stores[id(self)] = self  # (the caller holds one handle on att for this Store)
        if att.default_store() is None:
            att.default = weakref.ref(self)  # what unpickling a Store in this process gives
        # Closing or collecting the handle releases it; at exit _attachment._close_all does.
        self._release = weakref.finalize(self, _release_handle, att, self._context)
        self._release.atexit = False

    # ------------------------------------------------------------------ lifecycle
    def _set_token(self, token: int) -> None:
        """A forked child registered itself: its handles lock with its own token."""
        self._token = token
        self._context.set_token(token)
        self._creator_pid = -1  # the child did not create the store: it never unlinks it

    @property
    def mem(self) -> np.ndarray:
        """The store's whole reservation as one int64 array, for kernels and the functions of
        :mod:`sharedstore.kernels` (``_layout`` documents the format).

        It spans ``store.reserved`` bytes (by default the size of the filesystem: often
        hundreds of GiB), of which only the first ``store.stats()["committed"]`` are backed by
        memory.  Never read it whole (``mem.sum()``, ``bytes(mem)``, ``mem.copy()``...): on
        tmpfs every page read past the committed bytes allocates a page of memory, until the
        OOM killer ends the process or the file system is full (SIGBUS).  Slice it first:
        ``mem[:store.stats()["committed"] // 8]``.
        """
        mem = self._mem
        if mem is None:  # (closed)
            raise self._closed_error()
        return mem

    def _check_open(self) -> None:
        """Raise StoreClosedError if this handle was closed."""
        if self._mem is None:
            raise self._closed_error()

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(
            f"store {self.name!r} was closed in this process: attach to it again "
            f"(sharedstore.attach({self.name!r})) to use it"
        )

    @property
    def token(self) -> int:
        """This process's lock token, for the write functions of :mod:`sharedstore.kernels`."""
        return self._token

    def reserve(self, nbytes: int) -> None:
        """Commit memory now so that at least ``nbytes`` more can be allocated without another
        commit (jitted code using :mod:`sharedstore.kernels` cannot commit memory itself).

        Raises
        ------
        StoreFullError
            If the reservation, or the filesystem behind it, has no room for that much.
        """
        mem = self.mem
        while int(mem[L.W_COMMITTED]) - int(mem[L.W_HEAP_TOP]) < nbytes:
            self._att.grow(nbytes)

    @property
    def closed(self) -> bool:
        """Whether this handle was closed."""
        return self._closed

    def close(self) -> None:
        """Close this handle.  Idempotent; other handles on the store in this process, and
        other processes, are not affected.

        The process detaches from the store (leaves its process table and unmaps it) when its
        last handle is closed or garbage-collected and no view it took is alive: views of
        vectors stay valid after ``close()``, their memory pinned until they are gone."""
        if self._closed:
            return
        self._closed = True
        self._mem = None  # a kernel called with None fails with TypeError, never reads
        self._release()  # (closes the context: from here the hot paths hand over, and raise)

    def unlink(self) -> None:
        """Remove the store's file; processes attached keep their mapping until they close.

        Raises
        ------
        StoreNotFoundError
            If the file was removed already.
        """
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            raise StoreNotFoundError(
                f"store {self.name!r} ({self.path}) was removed already") from None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Close the handle; unlink the store too if this process created it."""
        unlink = self._created and self._creator_pid == os.getpid()
        self.close()
        if unlink:
            try:
                self.unlink()
            except StoreNotFoundError:
                pass

    def __reduce__(self) -> tuple[Callable[..., Store], tuple[str, str, bool, int]]:
        # a worker trusts the file as far as the process that sent the store did; the creation
        # time tells the store from another created under the same name since
        return _unpickle_store, (self.name, str(self.path), self._insecure, self._att.created_ns)

    def _repr_html_(self) -> str:
        if self._closed:
            return f"<b>sharedstore.Store {self.name!r}</b> (closed)"
        from . import _html

        return _html.store(self)

    def __eq__(self, other: object) -> bool:
        """A mapping's equality: equal to any mapping with the same named values (a dict, a
        MapRef, another handle on this store...)."""
        if not isinstance(other, Mapping):
            return NotImplemented
        return dict(self.items()) == dict(other.items())

    # a mutable mapping is unhashable, as a dict (type checkers hold every object hashable)
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._closed:
            return f"<sharedstore.Store {self.name!r} closed>"
        return (
            f"<sharedstore.Store {self.name!r} {len(self)} named values, "
            f"{human_bytes(self._used())} used of {human_bytes(self.reserved)} reserved>"
        )

    def _same_store(self, other: Store) -> bool:
        """Whether ``other`` is a handle on this same store (the same file, created at the
        same time), whichever mapping of this process it goes through."""
        a, b = self._att, other._att
        return a is b or (a.identity, a.created_ns) == (b.identity, b.created_ns)

    def _handle_of(self, value: object) -> int | None:
        """The handle to store for ``value`` if it is a ref (or a StructProxy) of this store,
        None if it is no ref; InvalidHandleError for a ref of another store."""
        if isinstance(value, StructProxy):
            value = value._ref
        if not isinstance(value, Ref):
            return None
        if not self._same_store(value._store):
            raise InvalidHandleError(
                f"{value!r} belongs to store {value._store.name!r}, not to {self.name!r}: its id "
                f"means nothing here; store a copy of its value, or a ref made in {self.name!r}"
            )
        return value._id

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
            tls.view = out.data  # a memoryview: slices without numpy overhead
            tls.words = tls.view.cast("q")  # the same bytes as Python ints (25 ns a read) ...
            tls.floats = tls.view.cast("d")  # ... and as Python floats
            tls.bufs = (out, tls.view, tls.words, tls.floats)
        return out

    def _call(self, kernel: Callable[..., int], *args: Any, what: str, h: int = 0,
              hint: int = 0, accept: tuple[int, ...] = ()) -> int:
        """``kernel(*args)`` with its statuses resolved (``_calls.call``: commit memory, wait
        for or take over locks, retry, or raise), waiting up to this handle's
        ``lock_timeout``: the first result that is not negative or is in ``accept``."""
        return _calls.call(self._att, kernel, *args, what=what, h=h, hint=hint, accept=accept,
                           timeout=self.lock_timeout)

    def _call_pair(self, kernel: Callable[..., tuple], *args: Any, what: str, h: int = 0,
                   hint: int = 0, accept: tuple[int, ...] = ()) -> tuple:
        """``_call`` of a kernel that returns ``(status, value...)`` (``_calls.call_pair``)."""
        return _calls.call_pair(self._att, kernel, *args, what=what, h=h, hint=hint,
                                accept=accept, timeout=self.lock_timeout)

    def _recover(self, r: int, what: str, h: int = 0, hint: int = 0,
                 deadline: float | None = None) -> float | None:
        """For calls that loop themselves: do what status ``r`` asks before the call is
        repeated, or raise (``_calls.recover``); returns the deadline to pass back."""
        return _calls.recover(self._att, r, what, h, hint, deadline, self.lock_timeout)

    # ------------------------------------------------------------------ objects
    def string(self, value: str = "") -> StringRef:
        """A new shared string (UTF-8, any length).

        Raises
        ------
        TypeError
            If ``value`` is not a str.
        StoreFullError
            If the store has no room for it.
        """
        data = _utf8(value)
        h = self._call(KO.string_new, self.mem, self._token, data, what="store.string()",
                       hint=len(data))
        return StringRef._trusted(self, h)

    def number(self, value: float = 0.0) -> NumberRef:
        """A new shared float64 with atomic ``add``.

        Raises
        ------
        TypeError
            If ``value`` is not a real number.
        """
        return NumberRef._trusted(self, self._scalar_new(L.KIND_FLOAT, float_bits(as_float(value))))

    def integer(self, value: int = 0) -> IntRef:
        """A new shared int64 with atomic ``add`` and ``compare_exchange``.

        Raises
        ------
        TypeError, OverflowError
            If ``value`` is not an int of int64's range.
        """
        return IntRef._trusted(self, self._scalar_new(L.KIND_INT, _int64(value)))

    def map(self, items: Any = None, /, **kwargs: Any) -> MapRef:
        """A new shared map (str, bytes or int keys; any values), optionally filled as
        ``dict(items, **kwargs)`` would be (in one kernel call: :meth:`MapRef.update`)."""
        h = self._call(KM.map_new, self.mem, self._token, L.KIND_MAP, what="store.map()")
        m = MapRef._trusted(self, h)
        if items is not None or kwargs:
            m.update(items or (), **kwargs)
        return m

    def _scalar_new(self, kind: int, bits: int) -> int:
        return self._call(KO.scalar_new, self.mem, self._token, kind, bits, what="new object")

    def ref(self, id: int) -> Ref:
        """The ref of the right class for the object ``id`` names (a :class:`StringRef`,
        :class:`MapRef`, :class:`VectorRef`...): how any process reconnects to an object whose
        id it was given.

        Raises
        ------
        InvalidHandleError
            If ``id`` names no object (never issued, or forged).
        UseAfterFreeError
            If the object was dropped.
        """
        kind = KH.handle_kind(self.mem, _int64(id))
        if kind < 0:
            raise_status(kind, f"store.ref({id!r})", store=self)
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

    def _interned(self, handle: int, decode: Callable[[str], _T]) -> _T:
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

    def _schema_handle(self, struct: Struct) -> int:
        h = self._intern(struct.json)
        self._structs.setdefault(h, struct)
        return h

    def _struct_of(self, schema: int) -> Struct:
        """The Struct whose descriptor string is ``schema``."""
        return self._interned(schema, lambda text: Struct.from_descriptor(json.loads(text)))

    def array(self, shape: int | Iterable[SupportsIndex],
              dtype: DTypeLike = "float64") -> ArrayRef:
        """A new zero-filled array of fixed ``shape``: its memory never moves.

        Parameters
        ----------
        shape
            An int, or a tuple of ints.
        dtype
            A NumPy dtype (or anything ``numpy.dtype()`` takes), or a :class:`Struct`.

        Raises
        ------
        ValueError
            For a negative size.
        TypeError
            For a dtype of no fixed size (objects, unsized str).
        StoreFullError
            If the store has no room for it.
        """
        from .vectors import ArrayRef

        dims = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
        if any(n < 0 for n in dims):
            raise ValueError(f"bad shape {dims}")
        n = int(np.prod(dims))
        return ArrayRef._create(self, dtype, n, shape=dims, length=n)

    @overload
    def vector(self, dtype: None = None, capacity: int = 0) -> ListRef: ...

    @overload
    def vector(self, dtype: DTypeLike, capacity: int = 0) -> VectorRef: ...

    def vector(self, dtype: DTypeLike | None = None, capacity: int = 0) -> VectorRef | ListRef:
        """A new growable vector.

        Parameters
        ----------
        dtype
            The type of a slot: a NumPy dtype (or anything ``numpy.dtype()`` takes, such as
            ``"float64"``), or a :class:`Struct` for a table of records.  With none
            (``store.vector()``), a :class:`ListRef` of any values.
        capacity
            Room for this many slots before the vector first grows.

        Returns
        -------
        VectorRef or ListRef

        Raises
        ------
        TypeError
            For a dtype of no fixed size (objects, unsized str): use a map or a ListRef.
        StoreFullError
            If the store has no room for it.
        """
        from .vectors import VectorRef

        if dtype is None:
            h = self._call(KM.map_new, self.mem, self._token, L.KIND_LIST, what="store.vector()")
            return ListRef._trusted(self, h)
        return VectorRef._create(self, dtype, capacity)

    # ------------------------------------------------------------------ root map (named values)
    @property
    def root(self) -> MapRef:
        """The root map: the store's named values."""
        self._check_open()
        # a new ref each time: a ref holds its store, and a cycle would keep a handle (and so
        # the process's registration) alive until the cyclic garbage collector runs
        return MapRef._trusted(self, self._id)

    # (the c backend runs __getitem__, __setitem__, __contains__ and get on the root map as
    # C functions, reading its handle from _id: sharedstore._fastpath)
    def __getitem__(self, key: Key) -> Any:
        """``store[key]``: the named value ``key``.

        Raises
        ------
        KeyError
            If there is no named value ``key``.
        TypeError
            If ``key`` is not a str, bytes or int.
        """
        return self.root._get(key)

    def __setitem__(self, key: Key, value: Any) -> None:
        """``store[key] = value``: set the named value ``key`` (any value, stored as a map
        stores it: :meth:`MapRef.__setitem__`)."""
        self.root._set(key, value)

    def __contains__(self, key: object) -> bool:
        """``key in store``: whether there is a named value ``key``."""
        return key in self.root

    def get(self, key: Key, default: Any = None) -> Any:
        """``store[key]``, or ``default`` if there is no named value ``key``."""
        return self.root.get(key, default)

    def __delitem__(self, key: Key) -> None:
        """``del store[key]``; KeyError if there is no named value ``key``."""
        del self.root[key]

    def view(self, key: Key) -> np.ndarray:
        """A zero-copy, read-only view of the array stored as named value ``key``
        (:meth:`MapRef.view`)."""
        return self.root.view(key)

    def __len__(self) -> int:
        """How many named values the store holds."""
        return len(self.root)

    def __iter__(self) -> Iterator[Key]:
        """The names, from one consistent snapshot."""
        return iter(self.root)

    # the rest of a mapping's methods, on the root map (see MapRef for each)
    def keys(self) -> KeysView[Key]:
        """A view of the names (:meth:`MapRef.keys`)."""
        return self.root.keys()

    def values(self) -> ValuesView[Any]:
        """A view of the named values (:meth:`MapRef.values`)."""
        return self.root.values()

    def items(self) -> ItemsView[Key, Any]:
        """A view of the ``(name, value)`` pairs (:meth:`MapRef.items`)."""
        return self.root.items()

    def set(self, key: Key, value: Any) -> None:
        """``store[key] = value`` (also ``add``)."""
        self.root._set(key, value)

    add = set

    def delete(self, key: Key) -> bool:
        """Remove the named value ``key`` (``del store[key]`` that says whether it was there).

        Returns
        -------
        bool
            True if it was there.
        """
        return self.root.delete(key)

    def pop(self, key: Key, *default: Any) -> Any:
        """Remove ``key`` and return its value, or ``default`` if given and there is none.

        Raises
        ------
        KeyError
            If there is no named value ``key`` and no default is given.
        """
        return self.root.pop(key, *default)

    def popitem(self) -> tuple[Key, Any]:
        """Remove and return some ``(name, value)``; KeyError if the store has none."""
        return self.root.popitem()

    def setdefault(self, key: Key, default: Any = None) -> Any:
        """``store[key]`` if it exists, else set it to ``default`` and return that."""
        return self.root.setdefault(key, default)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Set many named values in one kernel call, as ``dict.update`` takes them
        (:meth:`MapRef.update`)."""
        self.root.update(other, **kwargs)

    def clear(self) -> None:
        """Remove every named value, in one kernel call."""
        self.root.clear()

    def get_many(self, keys: Iterable[Key], default: Any = None) -> list[Any]:
        """The values of ``keys`` (``default`` for missing ones) in one call
        (:meth:`MapRef.get_many`)."""
        return self.root.get_many(keys, default)

    def set_many(self, keys: Iterable[Key], values: Iterable[Any]) -> int:
        """Set ``keys[i]`` to ``values[i]`` in one kernel call; return how many were new
        (:meth:`MapRef.set_many`)."""
        return self.root.set_many(keys, values)

    # ------------------------------------------------------------------ introspection
    def _used(self) -> int:
        return L.HEAP_START + int(self.mem[L.W_USED])

    def stats(self) -> dict[str, Any]:
        """Sizes in bytes and live objects by kind.

        Returns
        -------
        dict
            ``name`` and ``path``; ``reserved``: the reservation; ``committed``: memory
            backed so far; ``used``: bytes in live blocks plus the fixed header; ``free``:
            ``reserved - used``; ``free_listed``: committed bytes on free lists or never
            handed out; ``handles``: entries of the handle table; ``named_values``:
            ``len(store)``; ``objects``: live objects by kind (``{"map": 3, ...}``, kinds with
            none left out); ``workers``: attached processes; ``format_version``: the store's
            binary format; ``value_kinds``: the kinds of values it may hold, by name
            (``"kind <tag>"`` for one only a newer sharedstore reads).
        """
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
            "format_version": int(mem[L.W_VERSION]),
            "value_kinds": [kind_name(t) for t in range(1, 64)
                            if int(mem[L.W_VALUE_KINDS]) >> t & 1],
        }

    def check(self, repair: bool = False) -> CheckReport:
        """Walk the whole store and report every inconsistency; with ``repair``, fix what can be.

        Safe while other processes work: the walk holds the allocator lock, so their writes
        wait for it.  Also ``python -m sharedstore check NAME [--repair]``.

        Parameters
        ----------
        repair
            Free what killed operations leaked, rebuild free lists and counts, remove damaged
            map entries and drop objects whose own memory is damaged (their ids then raise
            UseAfterFreeError).

        Returns
        -------
        sharedstore.check.CheckReport
            ``ok``, ``problems``, ``repaired``, ``stats``; ``str()`` reads well.
        """
        from .check import check

        return check(self, repair)

    def workers(self) -> list[dict[str, Any]]:
        """The processes attached now, each once: ``{"pid", "since" (seconds since the epoch),
        "self" (whether it is this process)}``.  Dead ones are reaped first."""
        self.reap()
        mem = self.mem
        out = []
        me = (self._token & 0xFFFF) - 1  # (this process's entry: its pid may repeat in another
        for i in range(L.PROC_MAX):      # pid namespace sharing the store)
            w = L.PROC_TABLE // 8 + i * L.PROC_WORDS
            pid = int(mem[w + L.P_PID])
            if pid:
                out.append({
                    "pid": pid,
                    "since": int(mem[w + L.P_SINCE]) / 1e9,
                    "self": i == me,
                })
        return out

    def reap(self) -> int:
        """Free the process-table entries of processes that died without closing, releasing
        the views they held.

        Returns
        -------
        int
            How many entries were freed.
        """
        self._check_open()
        return self._att.reap()


# the writable descriptors of the slots the entry points read (``_fastpath.cpython.protect``
# makes them read-only from Python once sharedstore is imported)
_SET_CX = Store.__dict__["_cx"].__set__
_SET_ID = Store.__dict__["_id"].__set__


def _utf8(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"a string value must be a str, not {type(value).__name__}")
    return value.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------- module-level API
def _resolve(name: str, path: str | os.PathLike[str] | None) -> Path:
    return Path(path) if path is not None else seg.shm_path(name)


def create(name: str, size: int | None = None, *,
           path: str | os.PathLike[str] | None = None) -> Store:
    """Create a new store called ``name`` and attach to it.

    Used as a context manager (``with ss.create(name) as store:``), the store is closed and
    unlinked when the block ends.

    Parameters
    ----------
    name
        The store's name: what other processes attach by (no ``/``, no NUL, at most 200
        characters).
    size
        The reservation in bytes: the most the store can ever hold.  Memory is only committed
        as it is used, so the default, the size of the filesystem, costs nothing up front.
    path
        Back the store with this file instead of ``/dev/shm/sharedstore.<name>``.

    Raises
    ------
    StoreExistsError
        If the store exists already: attach to it, or remove it with ``sharedstore.unlink``.
    InvalidNameError
        If ``name`` cannot name a store.
    ValueError
        If ``size`` is too small for a store.
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
        raise ValueError(f"size={reserved} is too small: a store needs at least "
                         f"{L.MIN_RESERVATION} bytes")
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
        mem[L.W_VALUE_KINDS] = L.V_KNOWN  # the value kinds this library writes
        mem[L.W_READY] = 1
        mem[L.W_MAGIC] = L.MAGIC  # last: attach accepts the store from here
        del mem
        att = _attachment.adopt(name, p, fd, mm)
    except BaseException:
        try:
            os.unlink(p)
        finally:
            os.close(fd)
        raise
    return Store(att, name, created=True)


def attach(name: str, *, path: str | os.PathLike[str] | None = None,
           insecure: bool = False) -> Store:
    """Attach to the existing store ``name``.

    A process maps a store once, however often it attaches: every Store of it is a handle on
    one mapping and one entry in the store's process table.

    Parameters
    ----------
    path
        The file backing the store, if it was created with one.
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
    # a store this process has mapped already is reused: one mapping and one process-table
    # entry per process, however many times it attaches (once per task, say)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        pass  # (open_file below says so)
    else:
        att = _attachment.find(p, st)
        if att is not None:
            try:
                if not insecure:
                    seg.check_trusted(st, name, p)
            except BaseException:
                att.release()
                raise
            return Store(att, name, created=False, insecure=insecure)
    fd = seg.open_file(p, name)
    try:
        if not insecure:
            seg.check_trusted(os.fstat(fd), name, p)
        att = _attachment.map_store(name, p, fd)
    except BaseException:
        os.close(fd)
        raise
    return Store(att, name, created=False, insecure=insecure)


# (the builtin's name on purpose: ss.open, next to ss.create and ss.attach)
def open(name: str, size: int | None = None, *, path: str | os.PathLike[str] | None = None,
         insecure: bool = False) -> Store:
    """Attach to store ``name``, or create it (with reservation ``size``) if it does not
    exist; ``path`` and ``insecure`` as for :func:`create` and :func:`attach`.

    Used as a context manager, the store is unlinked at the end of the block only if this
    call created it.

    Raises
    ------
    StoreNotFoundError
        If the store kept being removed and created by others between the attempts.
    UntrustedStoreError, StoreCorruptError
        As :func:`attach`.
    """
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


def unlink(name: str, *, path: str | os.PathLike[str] | None = None) -> None:
    """Remove store ``name``; processes attached to it keep their mapping until they close.

    Raises
    ------
    StoreNotFoundError
        If there is no such store.
    InvalidNameError
        If ``name`` cannot name a store.
    """
    p = _resolve(seg.check_name(name), path)
    try:
        os.unlink(p)
    except FileNotFoundError:
        raise StoreNotFoundError(f"no store named {name!r} ({p})") from None


def list_stores() -> list[str]:
    """Names of the stores in ``/dev/shm`` (not those backed by a ``path=`` of their own)."""
    return seg.list_names()


def _unpickle_store(name: str, path: str, insecure: bool = False,
                    created_ns: int | None = None) -> Store:
    """A Store (or a ref's store) arriving in a process: this process's open handle on that
    store if it has one, else a new attachment, checked to be the store that was pickled."""
    att = _attachment.find(Path(path), created_ns=created_ns) if created_ns else None
    if att is not None:
        s = att.default_store()
        if s is not None:
            att.release()  # (find held a handle for a new Store: not needed)
            return s
        s = Store(att, name, created=False, insecure=insecure)
    else:
        s = attach(name, path=path, insecure=insecure)
        if created_ns and s._att.created_ns != created_ns:
            s.close()
            raise StoreNotFoundError(
                f"store {name!r} ({path}) was removed and created again since this was "
                "pickled: the objects it named are gone; send the new store's objects instead"
            )
    s._att.default = weakref.ref(s)
    return s


def _release_handle(att: _attachment.Attachment, context: Context) -> None:
    """A Store handle was closed or collected: its refs' hot paths hand over (and raise)."""
    context.close()
    att.release()
