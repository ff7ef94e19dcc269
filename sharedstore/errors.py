"""The exception tree, and the table that turns kernel status codes into exceptions.

Every exception derives from :class:`SharedStoreError` and from the builtin a caller would catch
anyway, so ``except FileNotFoundError`` still works for a missing store.
"""

from __future__ import annotations

from ._kernels import status as S


class SharedStoreError(Exception):
    """Base of every sharedstore error."""


class StoreNotFoundError(SharedStoreError, FileNotFoundError):
    """No store of that name exists."""


class StoreExistsError(SharedStoreError, FileExistsError):
    """A store of that name exists already."""


class StoreFullError(SharedStoreError, MemoryError):
    """The store's reservation, or the filesystem behind it, has no room left."""


class UseAfterFreeError(SharedStoreError, ReferenceError):
    """A ref was used after its object was dropped."""


class InvalidHandleError(SharedStoreError, ValueError):
    """An id that names no object of the expected kind (never issued, forged, or another kind)."""


class InvalidNameError(SharedStoreError, ValueError):
    """A store name that cannot name a store (empty, too long, or with '/' or NUL)."""


class StoreCorruptError(SharedStoreError):
    """The store's memory is inconsistent (a damaged or foreign file)."""


class UntrustedStoreError(SharedStoreError, PermissionError):
    """The store's file could have been written by another user: it is owned by someone else, or
    its mode lets others write it.  A pickled value read from it would run their code."""


class StoreClosedError(SharedStoreError, ValueError):
    """The store was closed in this process."""


class NodeStoreError(SharedStoreError, RuntimeError):
    """No node store is set up for this process: :func:`sharedstore.dask.node_store` was called
    outside the tasks of a Dask worker whose nanny runs the ``NodeStore`` plugin."""


class SchemaError(SharedStoreError, ValueError):
    """A struct schema is malformed."""


class LockTimeoutError(SharedStoreError, TimeoutError):
    """A lock stayed held by a live process for longer than the timeout."""


def raise_status(status: int, what: str, *, store=None) -> None:
    """Raise the exception for a negative kernel ``status`` returned while doing ``what``."""
    name = f"store {store.name!r}" if store is not None else "the store"
    if status == S.ERR_INVALID:
        raise InvalidHandleError(f"{what}: the id names no object in {name}; use the .id of a live ref")
    if status == S.ERR_FREED:
        raise UseAfterFreeError(f"{what}: the object was dropped; it cannot be used any more")
    if status == S.ERR_KIND:
        raise InvalidHandleError(f"{what}: the id names an object of another kind; use store.ref(id)")
    if status == S.ERR_FULL:
        reserved = store.reserved if store is not None else 0
        raise StoreFullError(
            f"{name} is full (reserved {_human(reserved)}): create it with a larger size= "
            "or drop objects you no longer need"
        )
    if status == S.ERR_CORRUPT:
        raise StoreCorruptError(
            f"{what}: {name} is corrupt (a structure in it is inconsistent); "
            "run `python -m sharedstore check NAME`"
        )
    if status == S.ERR_RETRY:
        raise LockTimeoutError(f"{what}: writers kept changing the object while it was read; retry")
    raise SharedStoreError(f"{what}: unexpected status {status}")


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1024
    return str(n)


human_bytes = _human
