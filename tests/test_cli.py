"""The command line, run in-process through ``sharedstore.cli.main``.

Every test keeps its stores in a private directory (``shm_dir``): ``ls`` and ``gc`` then see
only the test's own stores, and ``gc`` can never remove a store that belongs to someone else.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import sharedstore as ss
from sharedstore import _segment as seg
from sharedstore._demo_workers import VOCABULARY, WORDS_PER_RECORD
from sharedstore.cli import main


@pytest.fixture
def shm_dir(monkeypatch):
    """A fresh directory on tmpfs that stands in for /dev/shm during the test."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    d = Path(tempfile.mkdtemp(prefix="sharedstore-cli-test-", dir=base))
    monkeypatch.setattr(seg, "SHM_DIR", d)
    try:
        yield d
        leftovers = sorted(p.name for p in d.iterdir())
        assert not leftovers, f"the test left stores behind: {leftovers}"
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"


@pytest.fixture
def name(shm_dir):
    """A store name no other test uses; the store is removed after the test if it is left."""
    n = _unique("cli")
    try:
        yield n
    finally:
        try:
            ss.unlink(n)
        except ss.StoreNotFoundError:
            pass


@pytest.fixture
def store(name):
    """A small store made by this test process (it stays attached during the test)."""
    s = ss.create(name, size=16 << 20)
    try:
        yield s
    finally:
        s.close()


def _create_in_subprocess(shm_dir: Path, name: str, how: str) -> None:
    """Create store ``name`` in another process that ends without unlinking it: it exits
    normally (``how="exit"``: it detaches at exit) or is killed (``"kill"``: it stays
    registered as a dead process)."""
    code = textwrap.dedent(f"""
        import os, pathlib, signal
        import sharedstore._segment as seg
        seg.SHM_DIR = pathlib.Path({str(shm_dir)!r})
        import sharedstore as ss
        s = ss.create({name!r}, size=16 << 20)
        s["left"] = "behind"
        if {how!r} == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == (-9 if how == "kill" else 0), proc.stderr
    assert name in ss.list_stores()


def _one_line_error(err: str, *words: str) -> None:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err


# ---------------------------------------------------------------------- demo
def test_demo_json_reports_exact_shared_results_and_removes_its_store(shm_dir, capsys):
    assert main(["demo", "--workers", "2", "--records", "3000", "--steps", "7", "--json"]) == 0
    out = capsys.readouterr().out
    s = json.loads(out)  # JSON only: no progress bar in the output
    assert s["ok"] is True and s["problems"] == []
    assert (s["workers"], s["records"], s["steps"], s["start_method"]) == (2, 3000, 7, "spawn")
    assert sorted(r["worker"] for r in s["per_worker"]) == [0, 1]
    assert sum(r["rows"] for r in s["per_worker"]) == 3000
    assert len({r["pid"] for r in s["per_worker"]}) == 2
    assert s["words"] == sum(r["words"] for r in s["per_worker"]) == 3000 * WORDS_PER_RECORD
    assert set(s["top_words"]) <= set(VOCABULARY) and len(s["top_words"]) == 5
    assert s["memory"]["used"] > 3000 * 80  # the table's records alone take that
    assert s["objects"]["vector"] == 1 and s["objects"]["integer"] == len(VOCABULARY) + 1
    assert s["records_per_second"] > 0 and s["elapsed_seconds"] >= s["work_seconds"] > 0
    assert s["removed"] is True
    assert ss.list_stores() == []


def test_demo_prints_a_summary_table_and_one_final_progress_line(shm_dir, capsys):
    assert main(["demo", "--workers", "1", "--records", "2000"]) == 0
    out = capsys.readouterr().out
    # not a terminal: rich draws the bar once, finished, instead of a line per refresh
    bars = [line for line in out.splitlines() if "records 0:" in line]
    assert len(bars) == 1 and "2000/2000" in bars[0], out
    for word in ("workers", "records", "words", "throughput", "memory", "elapsed",
                 "records/s", "OK", "removed store 'demo-"):
        assert word in out, word
    assert ss.list_stores() == []


def test_demo_keep_leaves_a_store_info_can_read(shm_dir, capsys):
    name = f"demo-{os.getpid()}"
    try:
        assert main(["demo", "--workers", "2", "--records", "500", "--keep"]) == 0
        assert f"kept store {name!r}" in capsys.readouterr().out
        assert main(["info", name, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        kinds = {v["key"]: v["kind"] for v in report["values"]}
        assert kinds == {"particles": "VectorRef", "words": "MapRef", "progress": "IntRef",
                         "workers": "MapRef"}
        previews = {v["key"]: v["preview"] for v in report["values"]}
        assert previews["progress"] == "500"
        assert previews["particles"] == "500 slots of Particle"
        assert previews["workers"] == "2 keys"
        assert report["workers"] == []  # the demo and its workers detached
    finally:
        try:
            ss.unlink(name)
        except ss.StoreNotFoundError:
            pass


def _spawned_workers(pid: int) -> list[int]:
    """The children of ``pid`` that multiprocessing spawned to run a function (not its
    resource tracker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    workers = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(int(child))
    return workers


@pytest.mark.slow  # the demo in a subprocess, interrupted: 2 s
def test_demo_interrupted_stops_its_workers_and_removes_its_store():
    proc = subprocess.Popen([sys.executable, "-m", "sharedstore", "demo", "--records",
                             "2000000", "--steps", "500", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = Path(f"/dev/shm/sharedstore.demo-{proc.pid}")
    try:
        deadline = time.monotonic() + 120
        workers = []
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            workers = _spawned_workers(proc.pid) if path.exists() else []
        assert path.exists() and len(workers) >= 2, proc.poll()
        proc.send_signal(signal.SIGINT)  # Ctrl-C, to the parent only
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "sharedstore demo: interrupted" in err and "Traceback" not in err
        assert not path.exists()
        time.sleep(0.5)  # init reaps them
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # none left running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        path.unlink(missing_ok=True)


def test_cli_and_core_import_do_not_load_rich():
    code = ("import sys, sharedstore, sharedstore.cli; sharedstore.cli.build_parser(); "
            "print('rich' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


# ---------------------------------------------------------------------- bench
def _leftovers_in_dev_shm() -> list[str]:
    return sorted(f for f in os.listdir("/dev/shm") if f"ssbench-{os.getpid()}-" in f)


def test_bench_quick_json_has_a_ratio_for_every_installed_peer(shm_dir, capsys):
    from sharedstore.bench import COMPARISONS, available

    assert main(["bench", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["quick"] is True and report["repeat"] == 1
    assert report["machine"]["cpus"] == os.cpu_count()
    want = {(bench, peer) for bench, _, impls, *_ in COMPARISONS for peer in impls[1:]
            if available(peer)}
    assert {(r["benchmark"], r["peer"]) for r in report["ratios"]} == want
    for r in report["ratios"]:
        assert r["ratio"] > 0 and r["sharedstore_ns_per_op"] > 0 and r["peer_ns_per_op"] > 0
        assert (r["met"] is None) == (r["target"] is None)
    assert {r["benchmark"] for r in report["results"]} == {c[0] for c in COMPARISONS}
    assert {s["impl"] for s in report["skipped"]} == {
        impl for _, _, impls, *_ in COMPARISONS for impl in impls if not available(impl)}
    assert ss.list_stores() == [] and _leftovers_in_dev_shm() == []


def test_bench_table_names_the_peers_it_skipped(shm_dir, capsys, monkeypatch):
    from sharedstore import bench

    monkeypatch.setitem(bench.PEER_MODULES, "lmdb", "no_such_module_for_lmdb")
    assert main(["bench", "--quick", "--only", "map get", "--only", "counter add"]) == 0
    out = capsys.readouterr().out
    for word in ("benchmark", "sharedstore", "peer time", "ratio", "target", "map get",
                 "dict", "counter add", "multiprocessing.Value", "<= 2"):
        assert word in out, word
    assert "vector extend" not in out and "column scan" not in out
    assert "skipped lmdb (map get): no_such_module_for_lmdb is not installed" in out
    rows = [line for line in out.splitlines() if "map get" in line and "skipped" not in line]
    peers = 1 + (importlib.util.find_spec("UltraDict") is not None)  # dict, UltraDict if there
    assert len(rows) == peers and not any("lmdb" in line for line in rows)
    assert _leftovers_in_dev_shm() == []


# ---------------------------------------------------------------------- ls
def test_ls_with_no_stores(shm_dir, capsys):
    assert main(["ls"]) == 0
    assert capsys.readouterr().out.strip() == "no stores"
    assert main(["ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_ls_shows_sizes_values_and_attached_processes(store, capsys):
    store["a"] = 1
    store["b"] = store.string("x")
    assert main(["ls"]) == 0
    header, row = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["NAME", "RESERVED", "COMMITTED", "USED", "WORKERS", "VALUES"]
    assert row.startswith(store.name)
    assert "16.0 MiB" in row
    assert row.split()[-2:] == ["1", "2"]  # this test process; two named values

    assert main(["ls", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    stats = store.stats()
    assert entry["name"] == store.name
    assert entry["reserved"] == 16 << 20
    assert entry["committed"] == stats["committed"]
    assert entry["used"] == stats["used"]
    assert entry["workers"] == 1
    assert entry["named_values"] == 2


def test_ls_and_info_detach_afterwards(store, capsys):
    assert main(["ls"]) == 0
    assert main(["info", store.name]) == 0
    capsys.readouterr()
    assert [w["pid"] for w in store.workers()] == [os.getpid()]


# ---------------------------------------------------------------------- info
def test_info_lists_values_with_their_kind_and_the_workers(store, capsys):
    store["greeting"] = store.string("Hello")
    store["count"] = store.integer(41)
    store["config"] = {"value": "Hello"}
    store["array"] = np.arange(3.0)
    store[b"raw"] = b"\x00"
    store[7] = None
    gone = store.integer(1)
    store["gone"] = gone
    gone.drop()

    assert main(["info", store.name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    kinds = {v["key"]: v["kind"] for v in report["values"]}
    assert kinds == {
        "greeting": "StringRef", "count": "IntRef", "config": "dict",
        "array": "numpy.ndarray", "b'raw'": "bytes", 7: "NoneType", "gone": "dropped",
    }
    by_key = {v["key"]: v for v in report["values"]}
    assert by_key["greeting"]["id"] == store["greeting"].id
    assert by_key["greeting"]["preview"] == "'Hello'"
    assert by_key["count"]["preview"] == "41"
    assert report["stats"]["name"] == store.name
    assert report["stats"]["named_values"] == 7
    assert report["stats"]["workers"] == 1
    assert [w["pid"] for w in report["workers"]] == [os.getpid()]

    assert main(["info", store.name]) == 0
    out = capsys.readouterr().out
    assert f"store {store.name!r}" in out
    assert "named values (7)" in out
    assert "greeting  StringRef" in out
    assert f"attached processes (1)\n  pid {os.getpid()}" in out


def test_info_of_a_missing_store_is_one_line_on_stderr(name, capsys):
    assert main(["info", name]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_line_error(captured.err, name, "sharedstore info: error:")


def test_info_of_a_bad_name_is_one_line_on_stderr(shm_dir, capsys):
    assert main(["info", "a/b"]) == 1
    _one_line_error(capsys.readouterr().err, "invalid store name")


# ---------------------------------------------------------------------- rm
def test_rm_removes_a_store(name, capsys):
    ss.create(name, size=16 << 20).close()
    assert main(["rm", name]) == 0
    assert f"removed store {name!r}" in capsys.readouterr().out
    assert name not in ss.list_stores()


def test_rm_of_a_missing_store_returns_1(name, capsys):
    assert main(["rm", name]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    _one_line_error(captured.err, name, "sharedstore rm: error:")


# ---------------------------------------------------------------------- gc
@pytest.mark.parametrize("how", ["exit", "kill"])
def test_gc_removes_stores_whose_processes_are_all_gone(shm_dir, store, how, capsys):
    abandoned = _unique("abandoned")
    try:
        _create_in_subprocess(shm_dir, abandoned, how)

        assert main(["gc", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert f"would remove {abandoned!r}" in out
        assert store.name not in out
        assert set(ss.list_stores()) == {abandoned, store.name}

        assert main(["gc"]) == 0
        out = capsys.readouterr().out
        assert f"removed {abandoned!r}" in out
        assert "gc: removed 1 of 2 stores" in out
        assert ss.list_stores() == [store.name]  # the test process is attached to it
        assert [w["pid"] for w in store.workers()] == [os.getpid()]
    finally:
        try:
            ss.unlink(abandoned)
        except ss.StoreNotFoundError:
            pass


def test_gc_keeps_a_store_it_cannot_read(shm_dir, name, capsys):
    (shm_dir / f"sharedstore.{name}").write_bytes(b"\0" * 4096)
    assert main(["gc"]) == 0
    captured = capsys.readouterr()
    assert f"kept {name!r}" in captured.err
    assert "gc: removed 0 of 1 store" in captured.out
    assert ss.list_stores() == [name]


# ---------------------------------------------------------------------- usage
def test_usage_errors_return_2(shm_dir, capsys):
    assert main(["demo", "--workers", "0"]) == 2
    assert main(["demo", "--records", "0"]) == 2
    assert main(["demo", "--steps", "x"]) == 2
    assert main([]) == 2
    assert main(["frobnicate"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "sharedstore", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    for command in ("demo", "bench", "ls", "info", "stats", "dump", "rm", "gc"):
        assert command in proc.stdout


def test_stats_and_dump(store, capsys):
    P = ss.Struct("P", {"mass": "float64", "name": "string"})
    store["table"] = t = store.vector(P)
    t.append({"mass": 1.5, "name": "a"})
    store["rec"] = P.new(store, mass=2.0, name="r")
    store["arr"] = store.array((2, 2), "int32")
    store["objs"] = lst = store.vector()
    lst.append(store.string("in a list"))
    store["cfg"] = store.map({"depth": 3})
    store[7] = "seven"
    assert main(["stats", store.name, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    objects = stats["objects"]
    assert objects["vector"] == 1 and objects["array"] == 1 and objects["list"] == 1
    assert main(["info", store.name]) == 0
    out = capsys.readouterr().out
    assert "VectorRef" in out and "1 slots of P" in out and "int32 array of shape (2, 2)" in out
    assert "ListRef" in out and "StructRef" in out
    assert main(["dump", store.name, "cfg", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"depth": 3}
    assert main(["dump", store.name, "objs"]) == 0
    assert "in a list" in capsys.readouterr().out
    assert main(["dump", store.name, "rec", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"mass": 2.0, "name": "r"}
    assert main(["dump", store.name, "7"]) == 0
    assert "seven" in capsys.readouterr().out
    assert main(["dump", store.name, "nope"]) == 1
    assert "no named value 'nope'" in capsys.readouterr().err
