"""Zero-copy arrays over pinned data blocks: vector views and map array views.

A data block (``_layout``: ``[state, 0, data...]``) is freed only when it is retired (a vector
grew past it, or a map value was replaced) and no process pins it.  A view pins its block in
this process's pin list in the store (a kernel does it: ``vector_pin``, ``map_pin_array``), and
:func:`pinned_array` gives it a finalizer that releases the pin when the array and every array
derived from it are garbage (see ``vectors.py`` for what happens at exit, on a kill, on fork).
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from ._kernels import status as S
from ._kernels import vector as KV


def pinned_array(store, block: int, dtype, count: int, offset: int, *,
                 readonly: bool = False) -> np.ndarray:
    """The 1-d array of ``count`` items of ``dtype`` at byte ``offset`` of the store's mapping,
    holding the pin this process just took on data block ``block``."""
    arr = np.frombuffer(store._mm, dtype=dtype, count=count, offset=offset)
    if readonly:
        arr.flags.writeable = False
    store._pins[block] = store._pins.get(block, 0) + 1
    weakref.finalize(arr, _unpin, weakref.ref(store), block, os.getpid())
    return arr


def _unpin(store_ref, block: int, pid: int) -> None:
    """Finalizer of a view: release its pin (the store may be closed or gone by then)."""
    store = store_ref()
    if pid != os.getpid() or store is None:
        return  # a view inherited through fork: the pin is the parent's, not ours to release
    n = store._pins.get(block, 0)
    if n == 0:
        return  # released already: at exit, before this finalizer ran (store._close_all)
    if n == 1:
        del store._pins[block]
    else:
        store._pins[block] = n - 1
    release_pin(store, block)
    if store.closed and not store._pins:
        store._detach()  # closed while views were alive: the last one has gone


def release_pin(store, block: int) -> None:
    """Release one of this process's pins on data block ``block`` (the store may be closed)."""
    mem = store._pin_mem
    r = KV.vector_unpin(mem, store._token, block)
    while r == S.ERR_BUSY_ALLOC:
        store._recover(r, "view release")
        r = KV.vector_unpin(mem, store._token, block)
