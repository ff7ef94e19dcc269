"""The one protocol for calling a kernel: call it; if it returns a status, do what the status
asks and call again, or raise the status's exception (``errors.STATUS``).

Kernels never block for long and never raise: when a lock stays held past their spin budget,
or the allocator needs memory committed, they return a negative status and change nothing.
:func:`call` resolves those here, in Python, where time and the process table can be read:

===================  =========================================================================
status               what is done before the call is repeated
===================  =========================================================================
``ERR_COMMIT``       commit more of the reservation (``Attachment.grow``)
``ERR_BUSY_ALLOC``   the allocator lock: take it over if its owner died (nothing to repair:
                     allocator steps publish with single stores), else wait
``ERR_BUSY_OBJ``     an object's lock: take it over if its owner died and repair what it
                     guards (recount a map; finish or undo a vector's write), else wait
``ERR_BUSY_APPEND``  an append copying outside a vector's lock: reclaim its slots if its
                     process died, else wait
``ERR_RETRY``        an optimistic read kept meeting a write: wait on the writer (mending the
                     object if the writer died)
anything else        raise ``errors.error_for(status)`` (the exception carries ``.status``)
===================  =========================================================================

Waits end after the caller's ``lock_timeout`` with :class:`LockTimeoutError` naming the live
process that holds the lock.  Some statuses are answers, not failures (``ERR_NOT_FOUND`` for a
missing key): the caller lists them in ``accept`` and gets them back.
"""

from __future__ import annotations

import time

from . import _layout as L
from ._kernels import hashmap as KM
from ._kernels import heap as KH
from ._kernels import locks as KL
from ._kernels import status as S
from ._kernels import vector as KV
from .errors import LockTimeoutError, error_for

#: how long an operation waits for a lock held by a *live* process before LockTimeoutError
DEFAULT_LOCK_TIMEOUT = 30.0


def call(att, kernel, *args, what: str, h: int = 0, hint: int = 0, accept=(),
         timeout: float = DEFAULT_LOCK_TIMEOUT) -> int:
    """``kernel(*args)``, its statuses resolved (see the module doc): the first result that is
    not negative or is in ``accept``.  ``h`` is the object the call works on (its lock),
    ``hint`` the bytes it may allocate, ``att`` the store's ``Attachment``."""
    r = kernel(*args)
    if r >= 0 or r in accept:
        return r
    return settle(att, r, kernel, *args, what=what, h=h, hint=hint, accept=accept,
                  timeout=timeout)


def call_pair(att, kernel, *args, what: str, h: int = 0, hint: int = 0, accept=(),
              timeout: float = DEFAULT_LOCK_TIMEOUT) -> tuple:
    """:func:`call` of a kernel that returns ``(status, value...)``: the first result whose
    status is not negative or is in ``accept``."""
    res = kernel(*args)
    deadline = None
    while res[0] < 0 and res[0] not in accept:
        deadline = recover(att, res[0], what, h, hint, deadline, timeout)
        res = kernel(*args)
    return res


def settle(att, r: int, kernel, *args, what: str, h: int = 0, hint: int = 0, accept=(),
           timeout: float = DEFAULT_LOCK_TIMEOUT) -> int:
    """:func:`call` from status ``r``, which a first ``kernel(*args)`` the caller made itself
    returned (a hot path that calls its kernel directly and comes here only on a status)."""
    deadline = None
    while True:
        deadline = recover(att, r, what, h, hint, deadline, timeout)
        r = kernel(*args)
        if r >= 0 or r in accept:
            return r


def recover(att, r: int, what: str, h: int = 0, hint: int = 0, deadline=None,
            timeout: float = DEFAULT_LOCK_TIMEOUT):
    """Do what status ``r`` asks before a call is repeated, or raise.  Returns the deadline
    of this operation's lock waits: pass it back on the next call."""
    if r == S.ERR_COMMIT:
        att.grow(hint)
        return deadline
    if r not in (S.ERR_BUSY_ALLOC, S.ERR_BUSY_OBJ, S.ERR_BUSY_APPEND, S.ERR_RETRY):
        raise error_for(r, what, store=att)
    if deadline is None:
        deadline = time.monotonic() + timeout
    if r == S.ERR_BUSY_ALLOC:
        unblock(att, L.W_ALLOC_LOCK, 0, deadline, what, timeout)
    elif r == S.ERR_BUSY_OBJ:
        unblock(att, lock_word(att, h), h, deadline, what, timeout)
    elif r == S.ERR_BUSY_APPEND:
        _unblock_append(att, h, deadline, what, timeout)
    elif time.monotonic() > deadline:
        raise error_for(r, what, store=att)
    elif h:  # a read kept meeting a write: wait on the writer (mending it if it died)
        w = KH.handle_lock_word(att.mem, h)
        if w >= 0:
            unblock(att, w, h, deadline, what, timeout)
    return deadline


def lock_word(att, h: int) -> int:
    """The word index of object ``h``'s lock."""
    w = KH.handle_lock_word(att.mem, h)
    if w < 0:
        raise error_for(w, "lock", store=att)
    return w


def unblock(att, word: int, h: int, deadline: float, what: str, timeout: float) -> None:
    """A lock stayed held: take it over if its owner is dead, else wait (up to ``deadline``)."""
    owner = KL.lock_owner(att.mem, word)
    if owner == 0:
        return
    if owner != att.token and not token_alive(att, owner):
        if KL.lock_takeover(att.mem, word, owner, att.token):
            try:
                _repair(att, word, h)
            finally:
                KL.lock_release_owned(att.mem, word, att.token)
        att.reap()
        return
    if time.monotonic() > deadline:
        err = LockTimeoutError(
            f"{what}: a lock in store {att.name!r} has been held by process "
            f"{token_pid(att, owner)} for over {timeout:g} s; that process is alive: find out "
            "why it is stuck"
        )
        err.status = S.ERR_BUSY_ALLOC if word == L.W_ALLOC_LOCK else S.ERR_BUSY_OBJ
        raise err
    time.sleep(0.0002)


def _unblock_append(att, h: int, deadline: float, what: str, timeout: float) -> None:
    """An append to vector ``h`` copying outside its lock stayed unfinished: finish it for its
    process if that died (its records are lost, their slots freed), else wait."""
    owner = KV.vector_appender(att.mem, h)
    if owner <= 0:
        return  # done meanwhile (or a status the next call reports)
    if owner != att.token and not token_alive(att, owner):
        call(att, KV.vector_reclaim, att.mem, att.token, h, owner, what=what, h=h,
             timeout=timeout)
        att.reap()
        return
    if time.monotonic() > deadline:
        err = LockTimeoutError(
            f"{what}: process {token_pid(att, owner)} has been appending to a vector in store "
            f"{att.name!r} for over {timeout:g} s; that process is alive: find out why it is "
            "stuck"
        )
        err.status = S.ERR_BUSY_APPEND
        raise err
    time.sleep(0.0002)


def _repair(att, word: int, h: int) -> None:
    """Repair what a lock guards after its owner died holding it (we hold it now)."""
    if word == L.W_ALLOC_LOCK:
        return  # allocator steps publish with single stores: at worst a leaked block
    kind = KH.handle_kind(att.mem, h)
    if kind in (L.KIND_MAP, L.KIND_LIST):
        KM.map_recount(att.mem, h)
    elif kind in (L.KIND_VECTOR, L.KIND_ARRAY):
        KV.vector_after_dead_owner(att.mem, h)


def _token_entry(att, token: int) -> tuple[int, int, int, int]:
    i = (token & 0xFFFF) - 1
    if not 0 <= i < L.PROC_MAX:
        return (-1, 0, 0, 0)
    w = L.PROC_TABLE // 8 + i * L.PROC_WORDS
    row = att.mem[w:w + L.PROC_WORDS]
    return i, int(row[L.P_PID]), int(row[L.P_GEN]), int(row[L.P_START])


def token_pid(att, token: int) -> int:
    """The pid of the process whose lock token is ``token``."""
    return _token_entry(att, token)[1]


def token_alive(att, token: int) -> bool:
    """Whether the process that holds lock token ``token`` is alive (and is still that one):
    its process-table entry is still its registration, and the entry's liveness lock is held
    (``_attachment``: the kernel keeps it across pid namespaces)."""
    i, pid, gen, start = _token_entry(att, token)
    if i < 0 or pid == 0 or (gen & 0xFFFFFFFFFFFF) != token >> 16:
        return False
    return att.alive(i, pid, start)
