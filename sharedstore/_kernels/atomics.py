"""Atomic operations on int64 words of a numpy array, as numba intrinsics (copies, prefetch
and bit casts are in ``memory.py``).

Each takes ``(arr, idx, ...)`` with ``arr`` a C-contiguous int64 array and ``idx`` a word index;
the caller bounds-checks ``idx``.  All read-modify-write operations are sequentially consistent;
``load_acquire``/``store_release`` give the one-way barriers the seqlock readers and publishers
need.  ``cpu_pause`` is the x86 ``pause`` hint (a no-op elsewhere); ``sched_yield`` comes from libc
through ``ExternalFunction``, which keeps callers cacheable.
"""

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")

sched_yield = types.ExternalFunction("sched_yield", types.int32())


def _word_ptr(context, builder, sig, args):
    aryty = sig.args[0]
    ary = context.make_array(aryty)(context, builder, args[0])
    return cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)


def word_array(arr, idx):
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.layout == "C"


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """Compare-and-swap ``arr[idx]`` from ``expected`` to ``new``; return the old value."""
    if not word_array(arr, idx):
        return None
    sig = types.int64(arr, types.intp, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        res = builder.cmpxchg(ptr, args[2], args[3], "seq_cst", "seq_cst")
        return builder.extract_value(res, 0)

    return sig, codegen


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """Fetch-and-add on ``arr[idx]``; return the old value."""
    if not word_array(arr, idx):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_xchg(typingctx, arr, idx, val):
    """Exchange ``arr[idx]`` with ``val``; return the old value."""
    if not word_array(arr, idx):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        return builder.atomic_rmw("xchg", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def load_acquire(typingctx, arr, idx):
    """Load ``arr[idx]`` with acquire ordering (later loads cannot move above it)."""
    if not word_array(arr, idx):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def store_release(typingctx, arr, idx, val):
    """Store ``val`` to ``arr[idx]`` with release ordering (earlier stores cannot move below it)."""
    if not word_array(arr, idx):
        return None
    sig = types.void(arr, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        builder.store_atomic(args[2], ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fence(typingctx):
    """Full memory fence (sequentially consistent)."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fence_acquire(typingctx):
    """Acquire fence: loads after it are not moved before loads before it (free on x86)."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        builder.fence("acquire")
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def cpu_pause(typingctx):
    """Spin-wait hint: ``llvm.x86.sse2.pause`` on x86, nothing elsewhere."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        if _X86:
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen
