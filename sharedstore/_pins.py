"""Zero-copy arrays over pinned data blocks: vector views and map array views.

A data block (``_layout``: ``[state, 0, data...]``) is freed only when it is retired (a vector
grew past it, or a map value was replaced) and no process pins it.  A view pins its block in
this process's pin list in the store (a kernel does it: ``vector_pin``, ``map_pin_array``), and
:func:`pinned_array` gives it a finalizer that releases the pin when the array and every array
derived from it are garbage (see ``vectors.py`` for what happens at exit, on a kill, on
fork).  Pins belong to this process's attachment of the store (``_attachment.py``), shared by
all its Store handles.
"""

from __future__ import annotations

import os
import weakref

import numpy as np

from . import _calls
from ._kernels import pins as KP
from ._kernels import status as S


def pinned_array(store, block: int, dtype, count: int, offset: int, *,
                 readonly: bool = False) -> np.ndarray:
    """The 1-d array of ``count`` items of ``dtype`` at byte ``offset`` of the store's mapping,
    holding the pin this process just took on data block ``block``."""
    att = store._att
    arr = np.frombuffer(att.mm, dtype=dtype, count=count, offset=offset)
    if readonly:
        arr.flags.writeable = False
    with att.lock:
        att.pins[block] = att.pins.get(block, 0) + 1
    # (the attachment, not the Store: a view outlives the handle it was taken through)
    weakref.finalize(arr, _unpin, att, block, os.getpid()).atexit = False  # _close_all does it
    return arr


def _unpin(att, block: int, pid: int) -> None:
    """Finalizer of a view: release its pin, and detach if it was the process's last hold."""
    if pid != os.getpid():
        return  # a view inherited through fork: the pin is the parent's, not ours to release
    with att.lock:
        n = att.pins.get(block, 0)
        if n == 0 or att.detached:
            return  # released already (at exit, or the parent's pins after a fork)
        if n == 1:
            del att.pins[block]
        else:
            att.pins[block] = n - 1
        release_pin(att, block)
        if att.handles <= 0 and not att.pins:
            att.detach()  # every handle was closed while views were alive: the last one went


def release_pin(att, block: int) -> None:
    """Release one of this process's pins on data block ``block`` (its handles may be closed)."""
    # (ERR_INVALID: the pin was released already, by a reap or a repair: nothing to do)
    _calls.call(att, KP.pin_release, att.mem, att.token, block, what="view release",
                accept=(S.ERR_INVALID,))
