"""sharedstore.dask without a cluster: store names, sizes, the memory warning's rule, the
worker's environment, and that ``import sharedstore`` leaves Dask alone."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

import sharedstore as ss
from sharedstore import _nodestore as ns
from sharedstore import _segment as seg
from sharedstore import dask as ssd


def test_import_sharedstore_does_not_import_dask():
    code = ("import sys, sharedstore, sharedstore.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_store_names_fit_macos_and_read_as_the_run():
    assert ns.NAME_LIMIT == 18  # 31 - len("/sharedstore.")
    for run in ["r", "run1", "a-very-long-run-name-indeed-" * 5, "run with spaces/and/slashes",
                "..hidden", "ünïcode"]:
        name = ssd.store_name(run, "node-a")
        assert len("/" + seg.PREFIX + name) <= 31, name
        assert seg.check_name(name) == name
    assert ssd.store_name("run1", "node-a").startswith("run1-")
    assert ssd.store_name("a-very-long-run-name", "x").startswith("a-very-lo-")
    assert ssd.store_name("..hidden", "x").startswith("hidden-")
    assert ssd.store_name("/////", "x").startswith("run-")


def test_store_names_differ_by_run_and_node_and_are_stable():
    names = {ssd.store_name(r, n) for r in ("run1", "run2") for n in ("a", "b")}
    assert len(names) == 4
    assert ssd.store_name("run1", "a") == ssd.store_name("run1", "a")
    # cut to the same 9 characters, told apart by the hash
    assert ssd.store_name("experiment-1", "a") != ssd.store_name("experiment-2", "a")


def test_the_node_is_host_and_shm_device_unless_overridden(monkeypatch):
    monkeypatch.delenv(ns.ENV_NODE, raising=False)
    import os
    import socket

    dev = os.stat("/dev/shm").st_dev
    assert ssd.node_id() == f"{socket.gethostname()}:{dev}"
    assert ssd.store_name("run1") == ssd.store_name("run1", f"{socket.gethostname()}:{dev}")
    # a container with its own /dev/shm has another device id: another node
    assert ssd.store_name("run1", f"{socket.gethostname()}:{dev + 1}") != ssd.store_name("run1")
    monkeypatch.setenv(ns.ENV_NODE, "b")
    assert ssd.node_id() == "b"
    assert ssd.node_id({ns.ENV_NODE: "a"}) == "a"  # the nanny's env comes first
    assert ssd.store_name("run1") == ssd.store_name("run1", "b")


def test_bad_run_names_fail_in_the_client():
    for run in ["", None, 3]:
        with pytest.raises(ValueError, match="run name"):
            ssd.NodeStore(run)


def test_sizes_parse_from_text_or_bytes():
    assert ssd.parse_size("4GiB") == 4 << 30
    assert ssd.parse_size("512 MiB") == 512 << 20
    assert ssd.parse_size("1GB") == 10**9
    assert ssd.parse_size(12345) == 12345
    assert ssd.parse_size(1e9) == 10**9
    assert ssd.parse_size(None) is None
    assert ssd.NodeStore("r", size="64MiB").size == 64 << 20
    with pytest.raises(ValueError, match="lots"):
        ssd.parse_size("lots")
    with pytest.raises(ValueError, match="positive"):
        ssd.parse_size(0)
    with pytest.raises(TypeError, match="size"):
        ssd.parse_size(True)
    with pytest.raises(TypeError, match="size"):
        ssd.parse_size([1])


def test_the_plugin_is_idempotent_restarts_workers_and_is_named_by_run():
    a, b = ssd.NodeStore("run1", "1GiB"), ssd.NodeStore("run1")
    assert a.idempotent and a.restart
    assert a.name == b.name == "sharedstore-node-store-run1"
    assert ssd.NodeStore("run2").name != a.name


def test_memory_risk_when_store_and_own_data_reach_terminate():
    gib = 1 << 30
    # 8 GiB limit: own data up to 60% (4.8 GiB) + store must stay under 95% (7.6 GiB)
    assert ssd.memory_risk(2 * gib, 8 * gib, 0.6, 0.95) is None
    why = ssd.memory_risk(3 * gib, 8 * gib, 0.6, 0.95)
    assert "4304" in why and "memory_limit" in why and "95%" in why
    assert ssd.memory_risk(100 * gib, 0, 0.6, 0.95) is None  # no memory limit
    assert ssd.memory_risk(100 * gib, None, 0.6, 0.95) is None
    assert ssd.memory_risk(100 * gib, 8 * gib, 0.6, False) is None  # the nanny never restarts
    assert ssd.memory_risk(7 * gib, 8 * gib, False, 0.95) is None  # no spilling: own data 0
    assert ssd.memory_risk(8 * gib, 8 * gib, False, 0.95) is not None


def test_memory_warning_is_given_once_per_store_and_limit(store, monkeypatch):
    monkeypatch.setattr(ssd, "_warned", set())
    nanny = SimpleNamespace(
        config={"distributed": {"worker": {"memory": {"target": 0.6}}}},
        memory_manager=SimpleNamespace(memory_limit=store.reserved, memory_terminate_fraction=0.95))
    with pytest.warns(ssd.NodeStoreMemoryWarning, match=store.name):
        ssd.warn_memory(nanny, store)
    ssd.warn_memory(nanny, store)  # once: a second would raise (filterwarnings = error)
    nanny.memory_manager.memory_limit = 100 * store.reserved
    ssd.warn_memory(nanny, store)


def test_the_worker_environment_names_each_runs_store():
    env = {}
    ns.set_env_store(env, "run1", "run1-aaaa")
    ns.set_env_store(env, "run2", "run2-bbbb")
    assert json.loads(env[ns.ENV_STORES]) == {"run1": "run1-aaaa", "run2": "run2-bbbb"}
    assert ns.stores_from_env(env) == {"run1": "run1-aaaa", "run2": "run2-bbbb"}
    ns.set_env_store(env, "run1", None)
    assert ns.stores_from_env(env) == {"run2": "run2-bbbb"}
    ns.set_env_store(env, "run2", None)
    assert env == {}


def test_node_store_outside_a_worker_says_how_to_register(monkeypatch):
    monkeypatch.delenv(ns.ENV_STORES, raising=False)
    with pytest.raises(ss.NodeStoreError, match=r"register_plugin\(NodeStore") as e:
        ssd.node_store()
    assert "--preload-nanny sharedstore.dask" in str(e.value)
    assert isinstance(e.value, RuntimeError)


def test_node_store_of_several_runs_needs_the_run(monkeypatch, store):
    monkeypatch.setenv(ns.ENV_STORES, json.dumps({"a": store.name, "b": "b-00000000"}))
    with pytest.raises(ss.NodeStoreError, match="several runs"):
        ssd.node_store()
    with pytest.raises(ss.NodeStoreError, match="no node store of run 'c'"):
        ssd.node_store("c")
    with pytest.raises(ss.NodeStoreError, match="gone"):
        ssd.node_store("b")
    s = ssd.node_store("a")
    try:
        assert s.name == store.name and ssd.node_store("a") is s
    finally:
        s.close()
    monkeypatch.setenv(ns.ENV_STORES, "[1, 2]")
    with pytest.raises(ss.NodeStoreError, match="JSON object"):
        ssd.node_store()


def test_the_preload_refuses_a_worker():
    import asyncio

    with pytest.raises(TypeError, match="--preload-nanny"):
        asyncio.run(ssd.dask_setup.callback(object(), run="r", size=None))


def test_a_run_per_scheduler_by_default():
    a = ssd.default_run("tcp://10.0.0.1:8786")
    assert a == ssd.default_run("tcp://10.0.0.1:8786") != ssd.default_run("tcp://10.0.0.2:8786")
    assert a.startswith("dask-")
