"""Raw memory access as numba intrinsics: copies, unaligned loads, prefetch hints, the bits of
a word read as another type, and arrays over raw addresses.

None of these checks bounds: the caller has checked that every byte it names lies in its
buffer (prefetch alone may name any address: it is a hint that never faults).
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .atomics import word_array


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
    if not word_array(arr, idx):
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


_I8P = ir.IntType(8).as_pointer()
_I64 = ir.IntType(64)


def _addr(builder, ptr):
    return builder.ptrtoint(ptr, _I64)


@intrinsic
def load_word(typingctx, addr):
    """The int64 at address ``addr`` (an argument in the vector, an object's type pointer)."""
    sig = types.int64(types.int64)

    def codegen(context, builder, sig, args):
        return builder.load(builder.inttoptr(args[0], _I64.as_pointer()))

    return sig, codegen


@intrinsic
def address_words(typingctx, addr, n):
    """A C-contiguous int64 array of ``n`` words at address ``addr`` (no owner, no copy)."""
    sig = types.int64[::1](types.int64, types.int64)

    def codegen(context, builder, sig, args):
        aryty = sig.return_type
        ary = context.make_array(aryty)(context, builder)
        data = builder.inttoptr(args[0], context.get_value_type(aryty.dtype).as_pointer())
        itemsize = context.get_constant(types.intp, 8)
        context.populate_array(
            ary, data=data, shape=[args[1]], strides=[itemsize], itemsize=itemsize, meminfo=None
        )
        return ary._getvalue()

    return sig, codegen


@intrinsic
def address_bytes(typingctx, addr, n):
    """A read-only C-contiguous uint8 array of ``n`` bytes at address ``addr``."""
    aryty = types.Array(types.uint8, 1, "C", readonly=True)
    sig = aryty(types.int64, types.int64)

    def codegen(context, builder, sig, args):
        ary = context.make_array(aryty)(context, builder)
        one = context.get_constant(types.intp, 1)
        context.populate_array(
            ary, data=builder.inttoptr(args[0], _I8P), shape=[args[1]], strides=[one],
            itemsize=one, meminfo=None,
        )
        return ary._getvalue()

    return sig, codegen


@intrinsic
def array_address(typingctx, arr):
    """The address of a 1-d array's first element."""
    if not isinstance(arr, types.Array):
        return None
    sig = types.int64(arr)

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return _addr(builder, ary.data)

    return sig, codegen


def unowned(arr):
    """The same int64 array without its owner: jitted code passes an array with an owner to
    each helper with a reference count taken and dropped (two atomic operations per call), so a
    hot loop over ``store.mem`` runs faster on this alias.  Valid while ``arr`` is alive."""
    raise NotImplementedError("unowned is for jitted code")


@overload(unowned, jit_options={"nogil": True})
def _unowned(arr):
    if isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1:
        return lambda arr: address_words(array_address(arr), len(arr))
    return None
