"""airspeed velocity benchmarks for sharedstore and its peers.

Every class measures sharedstore and its peers (a plain dict, ``multiprocessing``, UltraDict,
lmdb, shared-memory-dict) in the same run, so each figure has its ratio.  Run from
``asv_bench/``::

    asv machine --yes
    asv run --python=same --quick --show-stderr
"""
