"""A node store without Dask: its name, a process's hold on it, and a worker's attachment.

:mod:`sharedstore.dask` is the glue to Dask's plugin API; everything here is plain Python, so
``import sharedstore`` never imports Dask, and what can be tested without a cluster is.

- **Name.**  One store per run and node.  The node is the host name and the device id of
  ``/dev/shm`` (containers with a ``/dev/shm`` of their own are separate nodes;
  ``$SHAREDSTORE_NODE`` overrides both), and the user id keeps two users' stores apart (a
  store is theirs alone, mode 0600).  The name is the run's name cut short plus a hash of the
  three, short enough for macOS, whose shared-memory names hold 31 characters at most, a
  leading ``/`` and sharedstore's ``sharedstore.`` prefix included.
- **Hold.**  A nanny holds its node's store while its plugin is set up.  Nannies of one process
  share one :class:`Store` (one process-table entry).  Across processes, every process holding
  it keeps a shared ``flock`` on the store's file; the last to let go takes the lock exclusively
  and unlinks the store.  A store of the run that no process holds and no live process uses is
  what a crashed cluster left: the next cluster starts afresh instead of reading it.
- **Attachment.**  The nanny tells its worker the name through the worker's environment
  (:data:`ENV_STORES`); :func:`node_store` attaches once per worker process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Hashable, Mapping, MutableMapping

from . import _jit
from . import _segment as seg
from .errors import NodeStoreError, StoreExistsError, StoreNotFoundError
from .store import Store, attach, create

#: overrides the node part of a node store's name (tests run several "nodes" on one machine)
ENV_NODE = "SHAREDSTORE_NODE"
#: set by the nanny for its worker: JSON ``{run: store name}``
ENV_STORES = "SHAREDSTORE_NODE_STORES"
#: the longest node store name: macOS's shared-memory names hold 31 characters (PSHMNAMLEN),
#: the leading "/" and sharedstore's prefix included
NAME_LIMIT = 31 - len("/" + seg.PREFIX)
_HASH_CHARS = 8

REGISTER_HINT = (
    "register the plugin with client.register_plugin(NodeStore('run1', size='4GiB')) "
    "(from sharedstore.dask import NodeStore), or start workers with "
    "`dask worker --preload-nanny sharedstore.dask ...`; the cluster must run its workers in "
    "processes with nannies (LocalCluster(processes=True), the default)"
)


# ---------------------------------------------------------------------- names
def node_id(env: Mapping[str, str] | None = None) -> str:
    """This machine as a node: ``$SHAREDSTORE_NODE`` (from ``env`` first, then the process's
    environment), else the host name and the device id of ``/dev/shm``."""
    override = (env or {}).get(ENV_NODE) or os.environ.get(ENV_NODE)
    if override:
        return override
    try:
        dev = os.stat(seg.SHM_DIR).st_dev
    except FileNotFoundError:
        dev = 0
    return f"{socket.gethostname()}:{dev}"


def store_name(run: str, node: str | None = None) -> str:
    """The name of run ``run``'s store on ``node`` (default: this machine, :func:`node_id`).

    The run's name (its letters, digits, ``_``, ``.`` and ``-``, at most 9 of them), a ``-``
    and 8 hex digits of a hash of the run, the node and the user: at most :data:`NAME_LIMIT`
    (18) characters, so the full shared-memory name fits macOS's 31.

    Raises
    ------
    ValueError
        If ``run`` is not a non-empty str.
    """
    if not isinstance(run, str) or not run:
        raise ValueError(f"a run name must be a non-empty str, not {run!r}")
    node = node_id() if node is None else node
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "", run).lstrip(".")[:NAME_LIMIT - _HASH_CHARS - 1]
    digest = hashlib.sha256(f"{run}\0{node}\0{os.getuid()}".encode()).hexdigest()
    return f"{slug or 'run'}-{digest[:_HASH_CHARS]}"


# ---------------------------------------------------------------------- kernels
_kernel_lock = threading.Lock()


def load_kernels() -> None:
    """Load every kernel into this process: from the shipped cache, or from this machine's,
    compiled first if neither holds it (:func:`sharedstore._jit.load_all`: the missing kernels
    compile in parallel worker processes, under a file lock on the local cache, so the nannies
    of one machine compile once between them and the others wait, then load).

    The nanny calls it (in a thread, off its event loop) before its worker starts, so workers
    load kernels and never compile them."""
    with _kernel_lock:  # (the nannies of a LocalCluster share one process)
        _jit.load_all()


# ---------------------------------------------------------------------- a process's hold
class _Hold:
    """This process's hold on one node store: the Store, the file descriptor carrying the
    process's shared lock, and the keys of the holders (nannies) in this process."""

    def __init__(self, store: Store, fd: int):
        self.store = store
        self.fd = fd
        self.holders: set[Hashable] = set()


_holds: dict[str, _Hold] = {}
_holds_lock = threading.Lock()


def hold(name: str, size: int | None, holder: Hashable) -> Store:
    """Open node store ``name`` (creating it with reservation ``size`` if missing) for
    ``holder`` (any hashable key; a nanny's id), and return it.  Idempotent per holder.
    Blocks (kernel loading, file locks): call it off an event loop."""
    with _holds_lock:
        h = _holds.get(name)
        if h is None:
            load_kernels()
            h = _holds[name] = _open_shared(name, size)
        h.holders.add(holder)
        return h.store


def release(name: str, holder: Hashable) -> bool:
    """``holder`` lets go of node store ``name``.  When it was this process's last holder, the
    process closes the store, and unlinks it if no other process holds it.  Returns whether
    the store was unlinked."""
    with _holds_lock:
        h = _holds.get(name)
        if h is None or holder not in h.holders:
            return False
        h.holders.discard(holder)
        if h.holders:
            return False
        del _holds[name]
    try:
        # Let go of the shared lock first, then try for the exclusive one: of processes letting
        # go at the same time, the last to try always gets it (a conversion SH -> EX could fail
        # for both).
        fcntl.flock(h.fd, fcntl.LOCK_UN)
        try:
            fcntl.flock(h.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # another process still holds it: the last one unlinks
        return _unlink_if_same(h.store, h.fd)
    finally:
        os.close(h.fd)
        h.store.close()


def is_holder(name: str, holder: Hashable) -> bool:
    """Whether ``holder`` holds node store ``name`` (its ``hold`` succeeded)."""
    with _holds_lock:
        h = _holds.get(name)
        return h is not None and holder in h.holders


def _open_shared(name: str, size: int | None) -> _Hold:
    for _ in range(20):
        store = _create_or_attach(name, size)
        if store is None:
            continue  # removed meanwhile
        h = _lock_shared(store)
        if h is not None:
            return h
    raise NodeStoreError(f"node store {name!r} kept appearing and disappearing; try again")


def _create_or_attach(name: str, size: int | None) -> Store | None:
    try:
        return create(name, size)
    except StoreExistsError:
        pass
    try:
        store = attach(name)
    except StoreNotFoundError:
        return None
    try:
        fd = os.open(store.path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        store.close()
        return None
    try:
        if _abandoned(store, fd):
            # what a crashed cluster left (no process holds it, none uses it): start afresh
            _unlink_if_same(store, fd)
            store.close()
            return None
    finally:
        os.close(fd)
    return store


def _lock_shared(store: Store) -> _Hold | None:
    """This process's shared lock on the store's file, or None (and the store closed) if the
    file was unlinked meanwhile: the last holder of another process let go of it."""
    try:
        fd = os.open(store.path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        store.close()
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    if not _same_file(store, fd):
        os.close(fd)
        store.close()
        return None
    return _Hold(store, fd)


def _abandoned(store: Store, fd: int) -> bool:
    """No process holds the store (we get its lock exclusively) and no other live process is
    attached to it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    me = os.getpid()
    return not [w for w in store.workers() if w["pid"] != me]


def _same_file(store: Store, fd: int) -> bool:
    try:
        return os.stat(store.path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _unlink_if_same(store: Store, fd: int) -> bool:
    """Unlink the store's file if it is still the file ``fd`` has open (not a new store made
    under the same name since)."""
    if not _same_file(store, fd):
        return False
    try:
        store.unlink()
    except StoreNotFoundError:
        return False
    return True


# ---------------------------------------------------------------------- the worker's side
_attached: dict[str, Store] = {}
_attach_lock = threading.Lock()


def stores_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{run: store name}`` of the node stores the nanny set up for this process."""
    text = (os.environ if environ is None else environ).get(ENV_STORES)
    if not text:
        return {}
    try:
        stores = json.loads(text)
    except ValueError:
        stores = None
    if not isinstance(stores, dict):
        raise NodeStoreError(f"${ENV_STORES} holds {text!r}, not a JSON object of run names")
    return stores


def set_env_store(env: MutableMapping[str, str], run: str, name: str | None) -> None:
    """Add (or with ``name=None`` remove) run ``run``'s store in the environment ``env`` (the
    nanny's ``env``, which its worker process starts with)."""
    stores = stores_from_env(env)
    if name is None:
        stores.pop(run, None)
    else:
        stores[run] = name
    if stores:
        env[ENV_STORES] = json.dumps(stores, sort_keys=True)
    else:
        env.pop(ENV_STORES, None)


def store_name_here(run: str | None = None) -> str:
    """The name of the node store of this worker process (of run ``run``: needed when the
    nanny set up several)."""
    stores = stores_from_env()
    if not stores:
        raise NodeStoreError(f"no node store is set up for this process (pid {os.getpid()}): "
                             f"node_store() runs in the tasks of Dask workers; {REGISTER_HINT}")
    if run is None:
        if len(stores) > 1:
            raise NodeStoreError(f"this worker has node stores of several runs ({sorted(stores)}): "
                                 "say which, node_store(run=...)")
        return next(iter(stores.values()))
    try:
        return stores[run]
    except KeyError:
        raise NodeStoreError(f"this worker has no node store of run {run!r} (it has "
                             f"{sorted(stores)}); {REGISTER_HINT}") from None


def node_store(run: str | None = None) -> Store:
    """This worker's node store: attached on the first call in a process, the same
    :class:`Store` for every later call (every task of the process).

    Parameters
    ----------
    run
        The run's name; needed only if the nanny set up node stores of several runs.

    Raises
    ------
    NodeStoreError
        Outside a Dask worker whose nanny runs the ``NodeStore`` plugin; the message says how to
        register it.
    """
    name = store_name_here(run)
    store = _attached.get(name)
    if store is None or store.closed:
        with _attach_lock:
            store = _attached.get(name)
            if store is None or store.closed:
                store = _attached[name] = _attach_node_store(name)
    return store


def _attach_node_store(name: str) -> Store:
    try:
        return attach(name)
    except StoreNotFoundError:
        # the nanny makes the store before it starts its worker: it is gone since
        raise NodeStoreError(
            f"node store {name!r} of this worker is gone: its nanny removed it (the cluster is "
            "closing, or the NodeStore plugin was unregistered)") from None
