"""The crash storm (see tests/storm.py): hundreds of SIGKILLs at random instants, then every
completed write is found, the store checks sound, and repair gives back what the kills leaked.

``pytest tests/test_storm.py --storm-seconds 600`` runs a long storm."""

import numpy as np
import pytest

from sharedstore import _layout as L
from sharedstore.check import DEBRIS

from . import storm

# the storm runs --storm-seconds (6); with its set-up and checks about 40 s
pytestmark = pytest.mark.slow


def test_crash_storm(store, tmp_path, request):
    seconds = request.config.getoption("--storm-seconds")
    ids = storm.setup(store, workers=3)
    min_kills = int(50 * seconds / 6)  # (about 100 a second on an idle machine)
    res = storm.run(store, ids, tmp_path, seconds, workers=3, seed=7, min_kills=min_kills)

    assert res.errors == [], res.errors[:3]
    assert res.bad_exits == []
    assert res.kills >= min_kills  # (the storm runs on until it has them: no rate is asserted)
    assert res.ops_done > 10 * res.kills
    # survivors never waited long on a dead owner's lock
    assert res.max_op_seconds < 2.0

    # the store is sound: nothing but what killed operations left behind
    report = store.check()
    assert report.ok, str(report)
    debris = {p.code for p in report.problems}
    assert debris <= DEBRIS, str(report)
    leaked = report.stats["leaked_blocks"]
    assert report.stats["pinned_blocks"] == 0  # every dead worker's views were released
    assert leaked <= 2 * res.kills, str(report)

    counts = storm.verify(store, ids, res)
    assert counts["keys"] > 0 and counts["records"] > 0 and counts["fields"] > 0
    assert counts["extends"] > 0 and counts["block_rows"] > 0
    assert storm.orphan_strings(store, ids) <= res.kills

    # repair gives the leaked memory back, and everything still works
    pre = store.check()  # verify() pinned a view: this process's pin list is new since
    assert pre.stats["leaked_bytes"] == report.stats["leaked_bytes"]
    fixed = store.check(repair=True)
    assert fixed.clean, str(fixed)
    # the header's byte count is now what the walk counted, less exactly what was leaked (it
    # can itself be off before repair: a kill between writing a block and counting it)
    walked = pre.stats["used_bytes"]
    assert store.stats()["used"] - L.HEAP_START == walked - pre.stats["leaked_bytes"], (
        f"{pre}\n{pre.stats}\n{fixed}\n{fixed.stats}")
    storm.verify(store, ids, res)
    m = store.ref(ids["map"])
    m["after"] = np.arange(3)
    assert list(m["after"]) == [0, 1, 2]
    table = store.ref(ids["table"])
    table.append(np.zeros(1, storm.ROW)[0])
    assert store.check().clean
    request.node.user_properties.append(("storm", {
        "seconds": round(res.seconds, 1), "kills": res.kills, "ops_done": res.ops_done,
        "in_flight": res.ops_in_flight, "max_op_ms": round(res.max_op_seconds * 1e3, 1),
        "leaked_blocks": leaked, "leaked_bytes": report.stats["leaked_bytes"],
        "debris": sorted(debris), **counts,
    }))
    print("storm:", request.node.user_properties[-1][1])
