"""Workers started from the command line, ``dask worker --preload-nanny sharedstore.dask``,
configured through the environment; then the whole node crashes (SIGKILL to the nanny process
and its workers) and ``sharedstore gc`` removes the store it left."""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from sharedstore import _nodestore as ns
from sharedstore import _segment as seg
from sharedstore import cli
from sharedstore.dask import each_node, nodes, store_name

from . import _dask_tasks as T

# `dask worker` processes started from the command line, then killed: about 4 s
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


def _start_workers(scheduler_address, run, node, log):
    env = dict(os.environ)
    env.update({
        "DASK_SHAREDSTORE__RUN": run,        # the sharedstore.run config
        "DASK_SHAREDSTORE__SIZE": "64MiB",   # the sharedstore.size config
        ns.ENV_NODE: node,
        # the workers import this test's tasks (tests._dask_tasks)
        "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p]),
    })
    return subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", scheduler_address,
         "--nworkers", "2", "--nthreads", "1", "--no-dashboard", "--memory-limit", "2GiB",
         "--preload-nanny", "sharedstore.dask"],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_group_gone(pgid, deadline):
    """Wait for the rest of the killed process group (the resource tracker) to finish."""
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            os.killpg(pgid, signal.SIGKILL)
            raise AssertionError("multiprocessing's resource tracker outlived the crash")
        time.sleep(0.05)


def test_preloaded_nannies_serve_their_workers_and_gc_cleans_up_after_a_crash(
        tmp_path, monkeypatch, capsys):
    run, node = f"c{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    name = store_name(run, node)
    path = seg.SHM_DIR / (seg.PREFIX + name)
    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, open(tmp_path / "workers.log", "w") as log:
        proc = _start_workers(cluster.scheduler_address, run, node, log)
        try:
            client.wait_for_workers(2, timeout=TIMEOUT)
            by_node = nodes(client)
            assert list(by_node) == [name] and len(by_node[name]) == 2
            assert each_node(client, T.init_hits) == {name: name}
            pids = set(client.gather(client.map(T.add_hits, range(100), n=10, pure=False)))
            assert each_node(client, T.hits) == {name: 1000}
            assert len(pids) == 2
            # the node crashes: the nanny process and its workers killed at once, nothing tears
            # down.  (multiprocessing's resource tracker lives on: it removes the semaphores of
            # the nanny's queues from /dev/shm once they are all gone.)
            for pid in [proc.pid, *pids]:
                os.kill(pid, signal.SIGKILL)
            assert proc.wait(TIMEOUT) == -signal.SIGKILL
        except BaseException:
            log.flush()
            print((tmp_path / "workers.log").read_text()[-10_000:])  # shown with the failure
            raise
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while any(seg.pid_alive(pid, seg.proc_start_ticks(pid)) for pid in pids):
        assert time.monotonic() < deadline, "the workers outlived their process group's SIGKILL"
        time.sleep(0.05)
    assert path.exists()  # left behind by the crash
    _wait_group_gone(proc.pid, deadline)

    # `sharedstore gc`, shown only this store: other stores on the machine are not this test's
    monkeypatch.setattr(cli, "list_stores", lambda: [name])
    assert cli.main(["gc"]) == 0
    out = capsys.readouterr().out
    assert f"removed {name!r} (no live process attached; reaped 3 dead ones)" in out
    assert not path.exists()
