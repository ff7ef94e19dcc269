"""Zero-copy arrays over pinned data blocks: vector views and map array views.

A data block (``_layout``: ``[state, 0, data...]``) is freed only when it is retired (a vector
grew past it, or a map value was replaced) and no process pins it.  A view pins its block in
this process's pin list in the store (a kernel does it: ``vector_pin``, ``map_pin_array``), and
:func:`pinned_array` watches the array with a weak reference whose callback releases the pin
when the array and every array derived from it are garbage (see ``vectors.py`` for what
happens at exit, on a kill, on fork).  Pins belong to this process's attachment of the store
(``_attachment.py``), shared by all its Store handles.

The attachment keeps each watching weak reference (``Attachment.views``, by ``id``: an
ndarray is unhashable, and so is a weak reference to one) with the block it pins.  What is not
in that table is not released: a view inherited through fork (the child's table starts empty),
and the views left at exit (``_close_all`` released their pins and emptied it).  A weak
reference with a callback costs a third of a ``weakref.finalize``, which a view paid before.
"""

from __future__ import annotations

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
    # (the attachment, not the Store: a view outlives the handle it was taken through)
    ref = weakref.ref(arr, att.view_gone)
    with att.lock:
        att.pins[block] = att.pins.get(block, 0) + 1
        att.views[id(ref)] = (ref, block)
    return arr


def release_pin(att, block: int) -> None:
    """Release one of this process's pins on data block ``block`` (its handles may be closed)."""
    mem, token = att.mem, att.token
    r = KP.pin_release(mem, token, block)
    # (ERR_INVALID: the pin was released already, by a reap or a repair: nothing to do)
    if r < 0 and r != S.ERR_INVALID:
        _calls.settle(att, r, KP.pin_release, mem, token, block, what="view release",
                      accept=(S.ERR_INVALID,))
