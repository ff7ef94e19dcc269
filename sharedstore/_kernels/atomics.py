"""Atomic operations on int64 words of a numpy array, as numba intrinsics.

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


def _check(arr, idx):
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.layout == "C"


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """Compare-and-swap ``arr[idx]`` from ``expected`` to ``new``; return the old value."""
    if not _check(arr, idx):
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
    if not _check(arr, idx):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        return builder.atomic_rmw("add", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_xchg(typingctx, arr, idx, val):
    """Exchange ``arr[idx]`` with ``val``; return the old value."""
    if not _check(arr, idx):
        return None
    sig = types.int64(arr, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        return builder.atomic_rmw("xchg", ptr, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def load_acquire(typingctx, arr, idx):
    """Load ``arr[idx]`` with acquire ordering (later loads cannot move above it)."""
    if not _check(arr, idx):
        return None
    sig = types.int64(arr, types.intp)

    def codegen(context, builder, sig, args):
        ptr = _word_ptr(context, builder, sig, args)
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def store_release(typingctx, arr, idx, val):
    """Store ``val`` to ``arr[idx]`` with release ordering (earlier stores cannot move below it)."""
    if not _check(arr, idx):
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


def _prefetch(builder, ptr):
    i32 = ir.IntType(32)
    ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
    fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
    fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
    builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all cache levels, data


@intrinsic
def prefetch(typingctx, arr, idx):
    """Hint the CPU to fetch word ``idx`` of ``arr`` into the cache (``llvm.prefetch``).  A hint
    only: it never faults, whatever ``idx`` is, and changes no value."""
    if not _check(arr, idx):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        _prefetch(builder, builder.gep(ary.data, [args[1]]))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch_address(typingctx, ptr):
    """:func:`prefetch` of the memory at a raw pointer (a string's ``_data``)."""
    if not isinstance(ptr, (types.RawPointer, types.CPointer)):
        return None
    sig = types.void(ptr)

    def codegen(context, builder, sig, args):
        _prefetch(builder, args[0])
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


@intrinsic
def float_from_bits(typingctx, bits):
    """Reinterpret int64 ``bits`` as a float64."""
    if bits != types.int64:
        return None
    sig = types.float64(types.int64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def float_to_bits(typingctx, x):
    """Reinterpret float64 ``x`` as int64 bits."""
    if x != types.float64:
        return None
    sig = types.int64(types.float64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def float32_bits(typingctx, x):
    """The bits of float64 ``x`` rounded to float32, in the low 32 bits of an int64."""
    if x != types.float64:
        return None
    sig = types.int64(types.float64)

    def codegen(context, builder, sig, args):
        f = builder.fptrunc(args[0], ir.FloatType())
        return builder.zext(builder.bitcast(f, ir.IntType(32)), ir.IntType(64))

    return sig, codegen


@intrinsic
def mul_fold(typingctx, a, b):
    """The 128-bit product of uint64s ``a`` and ``b`` folded to 64 bits (high ^ low): one
    ``mul`` instruction where the machine has a 64x64->128 multiply."""
    if a != types.uint64 or b != types.uint64:
        return None
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, sig, args):
        i128 = ir.IntType(128)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        lo = builder.trunc(p, ir.IntType(64))
        hi = builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), ir.IntType(64))
        return builder.xor(lo, hi)

    return sig, codegen


@intrinsic
def load_le64(typingctx, buf, at):
    """The 8 bytes at byte ``at`` of 1-d byte buffer ``buf`` as a little-endian uint64, any
    alignment.  The caller checks that they lie in ``buf``."""
    if not isinstance(buf, types.Buffer):
        return None
    sig = types.uint64(buf, types.intp)

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        p = builder.gep(builder.bitcast(a.data, ir.IntType(8).as_pointer()), [args[1]])
        w = builder.load(builder.bitcast(p, ir.IntType(64).as_pointer()), align=1)
        return w  # little-endian machines only (sharedstore's stores are little-endian)

    return sig, codegen


@intrinsic
def memcpy(typingctx, dst, dst_at, src, src_at, n):
    """Copy ``n`` bytes from byte ``src_at`` of 1-d array ``src`` to byte ``dst_at`` of 1-d
    array ``dst`` (``llvm.memmove``: any alignment, overlap allowed).  The caller checks bounds."""
    if not (isinstance(dst, types.Buffer) and isinstance(src, types.Buffer)):
        return None
    sig = types.void(dst, types.intp, src, types.intp, types.intp)

    def codegen(context, builder, sig, args):
        d = context.make_array(sig.args[0])(context, builder, args[0])
        s = context.make_array(sig.args[2])(context, builder, args[2])
        i8p = ir.IntType(8).as_pointer()
        dp = builder.gep(builder.bitcast(d.data, i8p), [args[1]])
        sp = builder.gep(builder.bitcast(s.data, i8p), [args[3]])
        cgutils.raw_memmove(builder, dp, sp, args[4], 1)
        return context.get_dummy_value()

    return sig, codegen
