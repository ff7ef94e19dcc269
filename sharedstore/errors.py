"""The exception tree, and the table that turns kernel status codes into exceptions.

Every exception derives from :class:`SharedStoreError` and from the builtin a caller would catch
anyway, so ``except FileNotFoundError`` still works for a missing store.
"""

from __future__ import annotations

from typing import NoReturn, Protocol

from ._kernels import status as S


class SharedStoreError(Exception):
    """Base of every sharedstore error.

    Attributes
    ----------
    status : int or None
        The kernel status it was raised for (``sharedstore._kernels.status``), or None for an
        error raised by the Python layer itself.
    """

    status: int | None = None


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


class StoreVersionError(StoreCorruptError):
    """The store, or a value in it, was written by a sharedstore this one cannot read: a newer
    one (upgrade sharedstore to read it) or, for a whole store, an older one.  A
    :class:`StoreCorruptError` to code that catches those: to this library it is unreadable."""


class UntrustedStoreError(SharedStoreError, PermissionError):
    """The store's file could have been written by another user: it is owned by someone else, or
    its mode lets others write it.  A pickled value read from it would run their code."""


class StoreClosedError(SharedStoreError, ValueError):
    """The store was closed in this process."""


class NodeStoreError(SharedStoreError, RuntimeError):
    """No node store is set up for this process: :func:`sharedstore.dask.node_store` was called
    outside the tasks of a Dask worker whose nanny runs the ``NodeStore`` plugin."""


class KindError(InvalidHandleError, TypeError):
    """A method of one ref class was called on a ref of another kind
    (``NumberRef.get(int_ref)``): refused, as CPython refuses ``float.hex(1)``.  Also an
    :class:`InvalidHandleError`."""


class SchemaError(SharedStoreError, ValueError):
    """A struct schema is malformed."""


class LockTimeoutError(SharedStoreError, TimeoutError):
    """A lock stayed held by a live process for longer than the timeout."""


#: status -> (exception class, message template, the fix).  The template's fields: ``what``
#: (the operation), ``store`` ("store 'name'"), ``name`` and ``reserved`` (the store's).
#: Statuses the call protocol resolves itself (commit memory, wait for or take over a lock,
#: retry a read: ``sharedstore._calls``) reach this table only when they cannot be resolved.
STATUS: dict[int, tuple[type[SharedStoreError], str, str]] = {
    S.ERR_INVALID: (InvalidHandleError, "{what}: the id names no object in {store}",
                    "use the .id of a live ref"),
    S.ERR_FREED: (UseAfterFreeError, "{what}: the object was dropped",
                  "it cannot be used any more; make a new one"),
    S.ERR_KIND: (KindError, "{what}: the id names an object of another kind",
                 "use store.ref(id) to get a ref of the right class"),
    S.ERR_VALUE_TYPE: (KindError, "{what}: the value there is of another type",
                       "the operation applies to numbers only"),
    S.ERR_FULL: (StoreFullError, "{store} is full (reserved {reserved})",
                 "create it with a larger size= or drop objects you no longer need"),
    S.ERR_CORRUPT: (StoreCorruptError,
                    "{what}: {store} is corrupt (a structure in it is inconsistent)",
                    "run `python -m sharedstore check {name}`"),
    S.ERR_RETRY: (LockTimeoutError, "{what}: writers kept changing the object while it was read",
                  "retry"),
    S.ERR_BUSY_ALLOC: (LockTimeoutError, "{what}: the allocator lock of {store} stayed busy",
                       "retry; see store.workers() for who holds it"),
    S.ERR_BUSY_OBJ: (LockTimeoutError, "{what}: the object's lock stayed busy",
                     "retry; see store.workers() for who holds it"),
    S.ERR_BUSY_APPEND: (LockTimeoutError, "{what}: another process's append stayed unfinished",
                        "retry"),
    S.ERR_NOT_FOUND: (SharedStoreError, "{what}: not found", "check the key or index"),
}


class _Named(Protocol):
    """What an error message names: a store (a Store, or this process's attachment of one)."""

    name: str
    reserved: int


def error_for(status: int, what: str, *, store: _Named | None = None) -> SharedStoreError:
    """The exception (not raised) for a negative kernel ``status`` returned while doing
    ``what``; it carries the status as ``.status``.

    Parameters
    ----------
    status
        A negative status of ``sharedstore._kernels.status``; one :data:`STATUS` does not
        list gets a :class:`SharedStoreError` asking for a bug report.
    what
        The operation, as the message starts (``"map get"``, ``"StringRef.set()"``).
    store
        The store it happened in (a Store or an attachment), named in the message.
    """
    cls, template, fix = STATUS.get(
        status, (SharedStoreError, "{what}: unexpected status " + str(status),
                 "report this as a bug of sharedstore"))
    name = store.name if store is not None else "NAME"
    fields = {"what": what, "store": f"store {name!r}" if store is not None else "the store",
              "name": name, "reserved": _human(store.reserved if store is not None else 0)}
    err = cls(f"{template.format(**fields)}: {fix.format(**fields)}")
    err.status = status
    return err


def raise_status(status: int, what: str, *, store: _Named | None = None) -> NoReturn:
    """Raise the exception for a negative kernel ``status`` returned while doing ``what``
    (:func:`error_for`)."""
    raise error_for(status, what, store=store)


def _human(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    x = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if x < 1024:
            return f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} TiB"


human_bytes = _human
