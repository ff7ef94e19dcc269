"""The table of value kinds (``_layout.VALUE_KINDS``): every kind round-trips on both backends,
the readers agree with the table, and what a newer sharedstore wrote is refused clearly, never
repaired away: a value of a kind this library does not know, and a store of a newer format."""

import math
import struct
import subprocess
import sys

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore import _values
from sharedstore._kernels import check as KC
from sharedstore._kernels import hashmap as KM
from sharedstore._kernels import heap as KH

from ._samples import SAMPLES, Complex, same, sample


def raw(store, m, key):
    """(value tag, value bytes) of ``m[key]`` as the entry holds them."""
    kb, kt = _values.encode_key(key)
    out = np.zeros(4096, np.uint8)
    tag = KM.map_get(store.mem, store.token, out, m.id, L.KIND_MAP, kb, kt)
    n = int(out.view(np.int64)[2])
    return tag, bytes(out[24:24 + n])


# ---------------------------------------------------------------------------- the table
def test_every_kind_has_samples():
    assert set(SAMPLES) == {k.tag for k in L.VALUE_KINDS}


def test_the_table_and_its_constants_agree():
    tags = [k.tag for k in L.VALUE_KINDS]
    assert len(set(tags)) == len(tags) and all(0 < t < 64 for t in tags)
    assert max(tags) == L.V_MAX_KNOWN and sum(1 << t for t in tags) == L.V_KNOWN
    for k in L.VALUE_KINDS:
        assert L.V_SIZE[k.tag] == k.size
        assert bool(L.V_PAYLOAD_ONLY >> k.tag & 1) == (k.size == 0)
        assert bool(L.V_KEYS >> k.tag & 1) == k.key
        assert bool(k.payload) or k.size != 0 or k.tag in (L.V_NONE, L.V_FALSE, L.V_TRUE)
        assert _values.kind_name(k.tag) == k.name
    assert _values.kind_name(40) == "kind 40"
    # the kinds _decode reads before the table's decoders, as those decode them
    for tag, payload, data in ((L.V_STR, 0, "é".encode()), (L.V_INT, -3, None),
                               (L.V_FLOAT, _values.float_bits(2.5), None)):
        assert _values._decode(None, tag, payload, data) == _values._DECODERS[tag](
            None, payload, data)
    # every key tag is one encode_key makes
    assert {_values.encode_key(k)[1] for k in ("a", b"a", 1)} == {
        k.tag for k in L.VALUE_KINDS if k.key}


@pytest.mark.usefixtures("each_backend")
def test_every_kind_round_trips(store):
    m = store.map()
    lst = store.vector()
    items = {}
    for tag, values in SAMPLES.items():
        for i, v in enumerate(values):
            v = sample(store, v)
            key = f"{tag}.{i}"
            m[key] = v
            store[key] = v
            assert same(m[key], v) and same(store[key], v) and same(m.get(key), v), (tag, v)
            assert key in m and key in store
            assert raw(store, m, key)[0] == tag
            lst.append(v)
            items[key] = v
    keys = list(items)
    values = list(items.values())
    assert all(map(same, m.get_many(keys), values))
    copy = store.map()
    copy.set_many(keys, values)
    assert all(same(copy[k], v) for k, v in items.items())
    assert all(same(v, items[k]) for k, v in m.items())
    assert all(map(same, lst, values)) and len(lst) == len(values)
    report = store.check()
    assert report.clean, str(report)


@pytest.mark.usefixtures("each_backend")
def test_complex_is_stored_natively(store):
    """A complex is two float64s in its entry (not a pickle), on both backends, and reads back
    bit for bit; a subclass or a NumPy complex keeps its type through pickle."""
    m = store.map()
    for z in SAMPLES[L.V_COMPLEX] + [complex(math.nan, -math.nan)]:
        m["z"] = z
        tag, data = raw(store, m, "z")
        assert (tag, data) == (L.V_COMPLEX, struct.pack("<dd", z.real, z.imag))
        got = m["z"]
        assert type(got) is complex
        assert struct.pack("<dd", got.real, got.imag) == data
        assert same(m.get_many(["z"])[0], got) and same(store.ref(m.id)["z"], got)

    for z in (Complex(1, 2), np.complex128(1 - 1j)):
        m["z"] = z
        assert raw(store, m, "z")[0] == L.V_PICKLE and same(m["z"], z)


def test_complex_in_a_worker(store):
    """What one process stores natively another reads (fresh interpreter: its own backend)."""
    store["z"] = 1.25 - 0.5j
    code = (f"import sharedstore as ss\nwith ss.attach({store.name!r}) as s:\n"
            "    z = s['z']; s['w'] = z * 2j; print(type(z).__name__, z)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["complex", "(1.25-0.5j)"]
    assert store["w"] == (1.25 - 0.5j) * 2j


def test_a_known_kind_of_the_wrong_size_is_damage(store):
    m = store.map({"ok": 1})
    mem = store.mem
    # a complex of 8 bytes, as only damage makes (the kernel itself takes any bytes)
    assert KM.map_set(mem, store.token, m.id, L.KIND_MAP, b"z", L.V_STR, L.V_COMPLEX, 0, 0.0,
                      b"\0" * 8) == 1
    with pytest.raises(ss.StoreCorruptError):
        m["z"]
    r = store.check()
    assert [p.code for p in r.problems] == ["map-entry"] and not r.ok
    assert store.check(repair=True).clean and dict(m) == {"ok": 1}


# ---------------------------------------------------------------------------- a newer library
NEWER_TAG = 40  # a value kind this library does not know


def newer_library_writes(store, m, key, data=b"future"):
    """Do what a newer sharedstore of the same format does: attach (adding the value kinds it
    writes to the store's VALUE_KINDS word) and store a value of a kind unknown here."""
    KC.value_kinds_add(store.mem, L.V_KNOWN | 1 << NEWER_TAG)
    kb, kt = _values.encode_key(key)
    assert KM.map_set(
        store.mem, store.token, m.id, L.KIND_MAP, kb, kt, NEWER_TAG, 7, 0.0, data) == 1


@pytest.mark.usefixtures("each_backend")
def test_a_value_a_newer_library_wrote_is_refused_clearly(store):
    m = store.map({"a": 1, "b": "two"})
    newer_library_writes(store, m, "new")
    for read in (lambda: m["new"], lambda: m.get("new"), lambda: m.get_many(["a", "new"]),
                 lambda: dict(m.items()), lambda: m.pop("new")):
        with pytest.raises(ss.StoreVersionError, match=r"newer sharedstore.*upgrade"):
            read()
    assert m["a"] == 1 and m["b"] == "two" and "new" in m and len(m) == 3
    assert sorted(m, key=str) == ["a", "b", "new"]
    m["a"] = 2  # the map goes on working around it
    assert m["a"] == 2 and raw(store, m, "new") == (NEWER_TAG, b"future")


def test_check_reports_a_newer_value_and_repair_never_removes_it(store):
    m = store.map({"a": 1})
    newer_library_writes(store, m, "new")
    r = store.check()
    assert [p.code for p in r.problems] == ["newer-value"]
    p = r.problems[0]
    assert p.newer and not p.debris and not p.repairable
    assert "newer sharedstore" in p.message and f"value tag {NEWER_TAG}" in p.message
    assert r.ok and not r.clean and r.stats["newer_values"] == 1
    assert "newer sharedstore wrote" in str(r)
    r = store.check(repair=True)
    assert r.repaired == [] and [p.code for p in r.problems] == ["newer-value"] and r.ok
    assert raw(store, m, "new") == (NEWER_TAG, b"future") and len(m) == 2
    # with debris besides: repair reclaims that and still keeps the value
    mem = store.mem
    mw = KH.object_words(mem, KH.handle_resolve(mem, m.id, -1), L.MAP_WORDS)
    mem[mw + L.M_COUNT] += 1
    r = store.check(repair=True)
    assert [p.code for p in r.repaired] == ["map-count"] and r.ok
    assert raw(store, m, "new") == (NEWER_TAG, b"future") and len(m) == 2


def test_stats_name_the_format_and_the_value_kinds(store, capsys):
    from sharedstore import cli

    st = store.stats()
    assert st["format_version"] == L.FORMAT_VERSION
    assert st["value_kinds"] == [k.name for k in L.VALUE_KINDS]
    newer_library_writes(store, store.map(), "new")
    assert store.stats()["value_kinds"][-2:] == ["complex", f"kind {NEWER_TAG}"]
    assert cli.main(["stats", store.name]) == 0
    out = capsys.readouterr().out
    assert f"format version {L.FORMAT_VERSION}, value kinds: None, False" in out
    assert f"kind {NEWER_TAG} (a kind <tag>: only a newer sharedstore reads it)" in out


def test_an_unknown_tag_no_library_recorded_is_damage(store):
    """A tag whose bit no library set in VALUE_KINDS was written by none: damage, removed."""
    m = store.map({"a": 1})
    kb, kt = _values.encode_key("bad")
    assert KM.map_set(
        store.mem, store.token, m.id, L.KIND_MAP, kb, kt, NEWER_TAG, 0, 0.0, b"x") == 1
    with pytest.raises(ss.StoreCorruptError, match="no kind of value") as e:
        m["bad"]
    assert not isinstance(e.value, ss.StoreVersionError)
    assert [p.code for p in store.check().problems] == ["map-entry"]
    assert store.check(repair=True).clean and dict(m) == {"a": 1}


def test_a_damaged_value_kinds_word_makes_repair_remove_no_unknown_value(store):
    m = store.map({"a": 1})
    kb, kt = _values.encode_key("x")
    assert KM.map_set(
        store.mem, store.token, m.id, L.KIND_MAP, kb, kt, NEWER_TAG, 0, 0.0, b"x") == 1
    store.mem[L.W_VALUE_KINDS] = 0
    r = store.check(repair=True)
    assert {p.code for p in r.problems} == {"header", "newer-value"}
    assert raw(store, m, "x")[0] == NEWER_TAG
    store.mem[L.W_VALUE_KINDS] = L.V_KNOWN


def test_attaching_adds_this_librarys_kinds(name):
    """A store made by a library that knew fewer kinds gets this one's when it attaches."""
    with ss.create(name) as s:
        s.mem[L.W_VALUE_KINDS] = L.V_KNOWN & ~(1 << L.V_COMPLEX)
        s.close()
        with ss.attach(name) as s2:
            assert int(s2.mem[L.W_VALUE_KINDS]) == L.V_KNOWN
            s2.mem[L.W_VALUE_KINDS] |= 1 << NEWER_TAG  # a newer library attached meanwhile
        with ss.attach(name) as s3:
            assert int(s3.mem[L.W_VALUE_KINDS]) == L.V_KNOWN | 1 << NEWER_TAG


# ---------------------------------------------------------------------------- a newer format
def future_format_writer(path, version, nbytes=L.PAGE):
    """Write a store file as a sharedstore of format ``version`` might: this format's magic and
    version words, then a layout this library knows nothing of (here: a header page of
    arbitrary words, shorter than this format's fixed part)."""
    words = np.arange(nbytes // 8, dtype=np.int64) * 0x0101010101 + 12345
    words[L.W_MAGIC] = L.MAGIC
    words[L.W_VERSION] = version
    path.write_bytes(words.tobytes())
    path.chmod(0o600)


def test_a_store_of_a_newer_format_is_refused_up_front(tmp_path):
    p = tmp_path / "future"
    future_format_writer(p, L.FORMAT_VERSION + 1)
    for call in (lambda: ss.attach("future", path=p), lambda: ss.open("future", path=p)):
        with pytest.raises(ss.StoreVersionError,
                           match=f"newer sharedstore \\(format version {L.FORMAT_VERSION + 1}\\)"
                                 f".*reads format version {L.FORMAT_VERSION}: upgrade"):
            call()
    assert p.stat().st_size == L.PAGE  # open() left it as it was (it did not create anew)
    # also a whole store of this format with only its version word moved on
    future_format_writer(p, L.FORMAT_VERSION + 7, nbytes=L.HEAP_START + (4 << 20))
    with pytest.raises(ss.StoreVersionError, match="newer sharedstore"):
        ss.attach("future", path=p)


def test_a_store_of_an_older_format_is_refused_clearly(tmp_path):
    p = tmp_path / "past"
    future_format_writer(p, L.FORMAT_VERSION - 1)
    with pytest.raises(ss.StoreVersionError, match=r"older sharedstore.*unlink"):
        ss.attach("past", path=p)


def test_the_command_line_says_so(name, capsys):
    from sharedstore import _segment, cli

    future_format_writer(_segment.shm_path(name), L.FORMAT_VERSION + 1)  # (the fixture unlinks)
    for command in (["check", name, "--repair"], ["info", name]):
        code = cli.main(command)
        err = capsys.readouterr().err
        assert code == 1 and "newer sharedstore" in err and "upgrade" in err, (command, err)
    assert _segment.shm_path(name).stat().st_size == L.PAGE  # (repair touched nothing)
