"""sharedstore: one shared store for the worker processes of a machine.

Structs as NumPy structured dtypes, maps, strings, numbers and atomics in shared memory; workers
attach by name and get zero-copy views.  See README.md.
"""

import numba as _numba

# (the kernels' atomics and the fast path exist only compiled; numba.config sets its options at
# run time, out of type checkers' sight)
if _numba.config.DISABLE_JIT:  # type: ignore[attr-defined]
    raise ImportError("sharedstore needs numba's JIT: unset NUMBA_DISABLE_JIT to use it")

from . import _fastpath
from ._fastpath import info as fastpath
from ._resolved import Record
from .errors import (
    InvalidHandleError,
    InvalidNameError,
    KindError,
    LockTimeoutError,
    NodeStoreError,
    SchemaError,
    SharedStoreError,
    StoreClosedError,
    StoreCorruptError,
    StoreExistsError,
    StoreFullError,
    StoreNotFoundError,
    StoreVersionError,
    UntrustedStoreError,
    UseAfterFreeError,
)
from .maps import ListRef, MapRef
from .refs import IntRef, NumberRef, Ref, StringRef
from .store import Store, attach, create, list_stores, open, unlink
from .structs import Struct, StructProxy, StructRef, load_schema
from .vectors import ArrayRef, VectorRef

__version__ = "0.1.0"

_fastpath.protect_slots()  # (the slots the C entry points read: read-only from Python)
_fastpath.choose()  # the hot methods' backend, once (SHAREDSTORE_FASTPATH: see _fastpath)

__all__ = [
    "ArrayRef",
    "IntRef",
    "InvalidHandleError",
    "InvalidNameError",
    "KindError",
    "ListRef",
    "LockTimeoutError",
    "MapRef",
    "NodeStoreError",
    "NumberRef",
    "Record",
    "Ref",
    "SchemaError",
    "SharedStoreError",
    "Store",
    "StoreClosedError",
    "StoreCorruptError",
    "StoreExistsError",
    "StoreFullError",
    "StoreNotFoundError",
    "StoreVersionError",
    "StringRef",
    "Struct",
    "StructProxy",
    "StructRef",
    "UntrustedStoreError",
    "UseAfterFreeError",
    "VectorRef",
    "attach",
    "create",
    "fastpath",
    "list_stores",
    "load_schema",
    "open",
    "unlink",
]
