"""Bad input of every kind gets its documented exception; nothing crashes the process."""

import errno
import multiprocessing as mp
import os
import stat

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore import _segment as seg
from sharedstore._kernels import status as S

MiB = 1 << 20


# ---------------------------------------------------------------------- wrong types, every API
def _cases(store):
    m = store.map()
    v = store.vector("int64")
    v.extend([1, 2, 3])
    lst = store.vector()
    i = store.integer(1)
    x = store.number(1.0)
    s = store.string("s")
    P = ss.Struct("P", {"mass": "float64", "name": "string"})
    p = P.new(store, mass=1.0)
    return [
        ("string(int)", lambda: store.string(5), TypeError),
        ("string(bytes)", lambda: store.string(b"x"), TypeError),
        ("number(str)", lambda: store.number("1.5"), TypeError),
        ("number(None)", lambda: store.number(None), TypeError),
        ("integer(float)", lambda: store.integer(1.5), TypeError),
        ("integer(str)", lambda: store.integer("1"), TypeError),
        ("integer(2**64)", lambda: store.integer(2 ** 64), OverflowError),
        ("IntRef.add(str)", lambda: i.add("1"), TypeError),
        ("IntRef.set(float)", lambda: i.set(2.5), TypeError),
        ("NumberRef.add(str)", lambda: x.add("1"), TypeError),
        ("NumberRef.set(list)", lambda: x.set([1]), TypeError),
        ("StringRef.set(int)", lambda: s.set(3), TypeError),
        ("map key float", lambda: m.__setitem__(1.5, 1), TypeError),
        ("map key tuple", lambda: m.__setitem__((1,), 1), TypeError),
        ("map key None", lambda: m.get(None), TypeError),
        ("map key 2**64", lambda: m.__setitem__(2 ** 64, 1), TypeError),
        ("map value lambda", lambda: m.__setitem__("f", lambda: 0), TypeError),
        ("map value generator", lambda: m.__setitem__("g", (j for j in ())), TypeError),
        ("map missing key", lambda: m["nope"], KeyError),
        ("map delitem missing", lambda: m.__delitem__("nope"), KeyError),
        ("get_many float key", lambda: m.get_many([1.5]), TypeError),
        ("set_many lengths", lambda: m.set_many(["a", "b"], [1]), ValueError),
        ("update non-mapping", lambda: m.update(5), TypeError),
        ("vector dtype unknown", lambda: store.vector("nope"), TypeError),
        ("vector dtype object", lambda: store.vector(np.dtype(object)), TypeError),
        ("vector append str", lambda: v.append("x"), TypeError),
        ("vector append float", lambda: v.append(1.5), TypeError),
        ("vector extend 2-D", lambda: v.extend(np.zeros((2, 2), np.int64)), ValueError),
        ("vector index out", lambda: v[10], IndexError),
        ("vector index str", lambda: v["a"], TypeError),
        ("vector remove out", lambda: v.remove(10), IndexError),
        ("vector remove twice", lambda: (v.remove(0), v.remove(0)), IndexError),
        ("list index out", lambda: lst[3], IndexError),
        ("array shape negative", lambda: store.array((-1,), "float64"), ValueError),
        ("array dtype unknown", lambda: store.array((3,), "nope"), TypeError),
        ("struct unknown field", lambda: p["nope"], KeyError),
        ("struct set unknown field", lambda: p.__setitem__("nope", 1), KeyError),
        ("struct string field int", lambda: p.__setitem__("name", 5), TypeError),
        ("struct bad type", lambda: ss.Struct("B", {"a": "float99"}), ss.SchemaError),
        ("struct no fields", lambda: ss.Struct("B", {}), ss.SchemaError),
        ("ref(str)", lambda: store.ref("1"), TypeError),
        ("ref(float)", lambda: store.ref(1.5), TypeError),
        ("ref(-1)", lambda: store.ref(-1), ss.InvalidHandleError),
        ("ref(0)", lambda: store.ref(0), ss.InvalidHandleError),
        ("ref(forged)", lambda: store.ref((5 << 32) | 12345), ss.InvalidHandleError),
        ("ref(2**64)", lambda: store.ref(2 ** 64), OverflowError),
        ("StringRef of an int", lambda: ss.StringRef(store, i.id).get(), ss.InvalidHandleError),
        ("MapRef of a string", lambda: ss.MapRef(store, s.id), ss.InvalidHandleError),
        ("create size str", lambda: ss.create("zz-bad", size="1"), TypeError),
        ("create size small", lambda: ss.create("zz-bad", size=100), ValueError),
        ("create name int", lambda: ss.create(123), ss.InvalidNameError),
        ("attach missing", lambda: ss.attach("no-such-store-here"), ss.StoreNotFoundError),
        ("unlink missing", lambda: ss.unlink("no-such-store-here"), ss.StoreNotFoundError),
    ]


def test_wrong_input_everywhere(store):
    cases = _cases(store)
    for _label, call, exc in cases:
        with pytest.raises(exc):
            call()
    assert len(cases) > 50
    assert store.check().clean  # no failed call left anything behind


@pytest.mark.parametrize("bad", ["", "a/b", "/", "x" * 300, "a\0b", ".", ".."])
def test_bad_names(bad):
    for call in (ss.create, ss.attach, ss.unlink, ss.open):
        with pytest.raises(ss.InvalidNameError):
            call(bad)


def test_stale_ids_of_every_kind(store):
    objs = [store.string("x"), store.integer(1), store.number(1.0), store.map(),
            store.vector("int64"), store.vector(), store.array((2,), "int8")]
    ids = [o.id for o in objs]
    for o in objs:
        o.drop()
    for h in ids:
        with pytest.raises(ss.UseAfterFreeError):
            store.ref(h)
    fresh = [store.string("y") for _ in ids]  # the slots are reused: old ids stay stale
    for h in ids:
        with pytest.raises(ss.UseAfterFreeError):
            store.ref(h)
    assert all(f.get() == "y" for f in fresh)


# ---------------------------------------------------------------------- sizes and fullness
def test_oversize_values_raise_store_full_and_leave_it_usable(name):
    with ss.create(name, size=8 * MiB) as store:
        for _label, call in [
            ("string", lambda: store.string("x" * (16 * MiB))),
            ("value", lambda: store.__setitem__("big", b"x" * (16 * MiB))),
            ("array", lambda: store.array((1 << 40,), "float64")),
            ("vector", lambda: store.vector("float64").extend(np.zeros(4 * MiB))),
        ]:
            with pytest.raises(ss.StoreFullError, match="full"):
                call()
        store["small"] = "fits"
        assert store["small"] == "fits"
        assert store.check().ok


def test_filled_to_the_last_byte_then_deletes_and_reuse(name):
    with ss.create(name, size=8 * MiB) as store:
        m = store.map()
        n = 0
        with pytest.raises(ss.StoreFullError):
            while True:
                m[n] = "v" * 100
                n += 1
        assert n > 1000
        # nearly nothing left: smaller writes fill the last bytes too
        with pytest.raises(ss.StoreFullError):
            while True:
                store.integer(n)
                n += 1
        r = store.check()
        assert r.clean, str(r)
        m.clear()
        # deletes worked, and the memory they freed is reused: the same writes fit again
        for k in range(1000):
            m[k] = "v" * 100
        assert len(m) == 1000 and store.check().clean


def test_small_dev_shm_gives_a_clear_error(name, monkeypatch):
    """Docker's 64 MiB /dev/shm: the filesystem runs out before the reservation does."""
    real = os.posix_fallocate

    def small_fs(fd, offset, length):
        if offset + length > 16 * MiB:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, length)

    monkeypatch.setattr(seg.os, "posix_fallocate", small_fs)
    with ss.create(name, size=64 * MiB) as store:
        with pytest.raises(ss.StoreFullError) as e:
            store["big"] = np.zeros(4 * MiB)  # 32 MiB: more than the filesystem can back
        assert "--shm-size" in str(e.value) and "path=" in str(e.value)
        store["small"] = np.zeros(1000)  # still usable, no SIGBUS anywhere
        assert store.check().ok


# ---------------------------------------------------------------------- damaged files
def _template(name) -> bytes:
    """A small store with one of everything, as bytes."""
    with ss.create(name, size=4 * MiB) as store:
        store["s"] = store.string("hello")
        store["n"] = 1.5
        store["m"] = store.map({"a": 1, "b": [1, 2]})
        v = store.vector("float64")
        v.extend(np.arange(100.0))
        store["v"] = v
        store["l"] = store.vector()
        store["l"].append("x")
        with open(store.path, "rb") as f:
            data = f.read(L.INITIAL_COMMIT)
    return data


def _write(path, data, size=4 * MiB):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)


def read_everything(name, path):
    """Attach, check and read all that is reachable; the documented errors are fine.
    Returns 0 when nothing unexpected happened (run in a child: a crash is its exit code)."""
    try:
        store = ss.attach(name, path=path)
    except ss.StoreCorruptError:
        return 0
    store.lock_timeout = 0.5
    try:
        store.check()
        store.stats()
        for k in list(store.keys()):
            v = store.get(k)
            if isinstance(v, ss.StringRef):
                v.get()
            elif isinstance(v, ss.MapRef):
                dict(v.items())
            elif isinstance(v, (ss.VectorRef, ss.ListRef)):
                len(v)
                list(v)
        store.check(repair=True)
        store["after"] = 1
    except (ss.SharedStoreError, KeyError, IndexError):
        pass
    finally:
        store.close()
    return 0


def _in_child(fn, *args):
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_exit_with, args=(fn, args))
    p.start()
    p.join(60)
    if p.exitcode is None:
        p.kill()
        p.join()
        return "hang"
    return p.exitcode


def _exit_with(fn, args):
    import traceback

    try:
        code = fn(*args)
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


def test_truncated_file(name, tmp_path):
    path = tmp_path / "store"
    data = _template(name)
    for size in (0, 100, L.HEAP_START - 8, L.HEAP_START + 4096):
        _write(path, data[:size], size)
        with pytest.raises(ss.StoreCorruptError):
            ss.attach(name, path=path)


def test_wrong_magic_and_version(name, tmp_path):
    path = tmp_path / "store"
    data = bytearray(_template(name))
    bad = bytearray(data)
    bad[0:8] = b"NOTASTOR"
    _write(path, bytes(bad))
    with pytest.raises(ss.StoreCorruptError, match="not a sharedstore store"):
        ss.attach(name, path=path)
    bad = bytearray(data)
    bad[8:16] = (99).to_bytes(8, "little")
    _write(path, bytes(bad))
    with pytest.raises(ss.StoreCorruptError, match="format version 99"):
        ss.attach(name, path=path)


def test_random_bytes_in_the_header_and_heap(name, tmp_path):
    rng = np.random.default_rng(5)
    data = _template(name)
    path = tmp_path / "store"
    regions = [(0, 128), (L.W_CLASS_HEADS * 8, L.PROC_TABLE), (L.HT_DIR, L.HT_DIR + 64),
               (L.HEAP_START, L.HEAP_START + (2 << 20) - L.HEAP_START)]
    for trial in range(40):
        bad = bytearray(data)
        lo, hi = regions[trial % len(regions)]
        hi = min(hi, len(bad))
        for _ in range(int(rng.integers(1, 16))):
            at = int(rng.integers(lo, hi - 8))
            bad[at:at + 8] = rng.bytes(8)
        _write(path, bytes(bad))
        assert _in_child(read_everything, name, str(path)) == 0, f"trial {trial}"


# ---------------------------------------------------------------------- who may attach
def test_created_mode_0600(store):
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600


def test_store_others_can_write_is_refused(store, name):
    os.chmod(store.path, 0o666)
    with pytest.raises(ss.UntrustedStoreError, match="mode 0666"):
        ss.attach(name)
    with pytest.raises(PermissionError):
        ss.open(name)
    with ss.attach(name, insecure=True) as other:
        assert other.name == name
    os.chmod(store.path, 0o600)
    ss.attach(name).close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_store_of_another_user_is_refused(store, name):
    os.chown(store.path, 65534, -1)
    try:
        with pytest.raises(ss.UntrustedStoreError, match="owned by uid 65534"):
            ss.attach(name)
        ss.attach(name, insecure=True).close()
    finally:
        os.chown(store.path, 0, -1)


def test_every_status_has_a_message_with_its_fix(store):
    """errors.STATUS: each status gives its class, with the fix filled in and the status kept."""
    from sharedstore import errors

    for status, (cls, _, _) in errors.STATUS.items():
        err = errors.error_for(status, "doing it", store=store)
        assert type(err) is cls and err.status == status
        assert "{" not in str(err) and str(err).startswith(("doing it", f"store {store.name!r}"))
    assert f"check {store.name}" in str(errors.error_for(S.ERR_CORRUPT, "x", store=store))
    assert errors.error_for(-99, "x").status == -99  # (an unknown status: a SharedStoreError)


def _block_of(store, ref) -> int:
    """The byte offset of ``ref``'s block (its handle entry's value word)."""
    slot = ref.id & 0xFFFFFFFF
    chunk = int(store.mem[L.HT_DIR // 8 + (slot >> L.HT_CHUNK_SHIFT)])
    entry = chunk // 8 + (slot & (L.HT_CHUNK - 1)) * L.HT_WORDS
    return int(store.mem[entry + L.H_VALUE])


def _read_damaged_string(name, value):
    with ss.attach(name) as store:
        try:
            store["s"].get()
        except ss.StoreCorruptError:
            return 0
        return 1


def test_a_block_length_with_its_top_bit_set_is_corrupt_not_copied(name):
    """The fuzzer's find: a string's block header set to -1 made its length read as -1, which
    passed the bounds check (8 + -1 bytes) and was copied as 2**64 - 1 bytes into the reader's
    buffer; the heap of the reader's process was destroyed.  Lengths are unsigned now."""
    with ss.create(name, size=8 << 20) as store:
        store["s"] = s = store.string("hello")
        store.mem[_block_of(store, s) // 8] = -1
        assert _in_child(_read_damaged_string, name, -1) == 0
        store.mem[_block_of(store, s) // 8] = -(1 << 63) | 5 << 16  # (the top bit, a sane length)
        assert _in_child(_read_damaged_string, name, 0) == 0
