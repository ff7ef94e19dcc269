"""Spin locks on int64 words: test-and-test-and-set with ``pause``, yielding after a few dozen spins.

A lock word is 0 (free) or the owner's token (see ``_layout``).  A kernel takes a lock with
:func:`lock_try`, does its work and releases it before returning, so a lock is never held across
Python bytecode.  When the spin budget runs out the kernel gives up with a BUSY status; the Python
layer then checks whether the owner is alive and, if not, takes the lock over with
:func:`lock_takeover` and repairs what it guards.
"""

from .._jit import helper, kernel
from .atomics import atomic_cas, cpu_pause, load_acquire, sched_yield, store_release

#: spins before a kernel gives up with a BUSY status (a few milliseconds with the yields)
SPIN_BUDGET = 4096


@helper
def lock_try(mem, w, token):
    """Take lock word ``mem[w]`` for ``token``; True on success, False when the budget ran out."""
    for i in range(SPIN_BUDGET):
        cur = load_acquire(mem, w)  # test before test-and-set: no bus lock while it is held
        if cur == 0 and atomic_cas(mem, w, 0, token) == 0:
            return True
        cpu_pause()
        if i % 32 == 31:
            sched_yield()
    return False


@helper
def lock_release(mem, w):
    store_release(mem, w, 0)


@kernel("int64(int64[::1], int64)")
def lock_owner(mem, w):
    """The token holding lock word ``w`` (0 if free)."""
    return load_acquire(mem, w)


@kernel("int64(int64[::1], int64, int64, int64)")
def lock_takeover(mem, w, dead, token):
    """Move lock ``w`` from the dead owner ``dead`` to ``token``; 1 on success, 0 if it changed."""
    return 1 if atomic_cas(mem, w, dead, token) == dead else 0


@kernel("int64(int64[::1], int64, int64)")
def lock_acquire_nowait(mem, w, token):
    """Try lock ``w`` once for the spin budget; 1 if taken.  Used by takeover/repair and tests."""
    return 1 if lock_try(mem, w, token) else 0


@kernel("int64(int64[::1], int64, int64)")
def lock_release_owned(mem, w, token):
    """Release lock ``w`` if ``token`` holds it; 1 if released."""
    return 1 if atomic_cas(mem, w, token, 0) == token else 0
