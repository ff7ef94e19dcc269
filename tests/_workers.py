"""Worker functions for the multi-process tests (module level, so they pickle under spawn)."""

import os
import signal
import time

import numpy as np

import sharedstore as ss
from sharedstore import _layout as L
from sharedstore._kernels import heap as KH
from sharedstore._kernels import locks as KL


def add_many(store, int_id, num_id, n):
    i = store.ref(int_id)
    x = store.ref(num_id)
    for _ in range(n):
        i.add(1)
        x.add(0.5)
    return os.getpid()


def read_greeting(store):
    return store["greeting"].get()


def write_back(store, key, text):
    s = store.string(text)
    store[key] = s
    store[key + "-plain"] = {"pid": os.getpid(), "text": text}
    return s.id


def attach_and_add(name, int_id, n):
    with ss.attach(name) as store:
        ref = ss.IntRef(store, int_id)
        for _ in range(n):
            ref.add(1)


def die_holding_lock(name, which, ready_id):
    """Take a lock (the allocator's or the root map's) and die by SIGKILL while holding it."""
    store = ss.attach(name)
    word = L.W_ALLOC_LOCK if which == "alloc" else KH.handle_lock_word(store.mem, store.root.id)
    assert KL.lock_acquire_nowait(store.mem, word, store._token) == 1
    store.ref(ready_id).set(1)
    os.kill(os.getpid(), signal.SIGKILL)


def hold_lock_alive(name, ready_id, release_id, seconds):
    """Take the allocator lock and keep it, alive, until told to release (or a timeout)."""
    store = ss.attach(name)
    assert KL.lock_acquire_nowait(store.mem, L.W_ALLOC_LOCK, store._token) == 1
    store.ref(ready_id).set(1)
    deadline = time.monotonic() + seconds
    while store.ref(release_id).get() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    KL.lock_release_owned(store.mem, L.W_ALLOC_LOCK, store._token)
    store.close()


def exit_without_close(name):
    ss.attach(name)
    os._exit(0)


def map_writer(store, map_id, start, n):
    m = store.ref(map_id)
    for k in range(start, start + n):
        m[f"key-{k}"] = k


def churn_forever(store, map_id, counter_id, seed):
    """Random writes until killed: map set/delete, string create/set/drop, integer adds."""
    import random

    rng = random.Random(seed)
    m = store.ref(map_id)
    counter = store.ref(counter_id)
    strings = []
    while True:
        op = rng.random()
        k = f"k{rng.randrange(500)}"
        if op < 0.4:
            m[k] = k * rng.randrange(1, 20)
        elif op < 0.55:
            m.delete(k)
        elif op < 0.7:
            strings.append(store.string("s" * rng.randrange(0, 2000)))
        elif op < 0.8 and strings:
            strings.pop(rng.randrange(len(strings))).drop()
        elif op < 0.9 and strings:
            strings[rng.randrange(len(strings))].set("t" * rng.randrange(0, 300))
        else:
            counter.add(1)


def map_reader(store, map_id, n, seconds, result_id):
    """Read random keys while another process writes; count wrong values (must stay 0)."""
    import random

    m = store.ref(map_id)
    rng = random.Random(os.getpid())
    wrong = hits = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        k = rng.randrange(n)
        v = m.get(f"key-{k}")
        if v is None:
            continue
        hits += 1
        if v not in (k, f"value-{k}-" * 10):
            wrong += 1
    store.ref(result_id).set(wrong * 1_000_000_000 + hits)


def njit_accumulate(name, map_id, n, rounds):
    """Add 1.0 to keys 0..n-1 and to "total" from a worker, inside @njit code, under a lock."""
    import numba

    from sharedstore.kernels import map_get_float, map_set_float

    @numba.njit(nogil=True)
    def bump(mem, token, mid, n):
        for i in range(n):
            map_set_float(mem, token, mid, i, map_get_float(mem, mid, i, 0.0) + 1.0)
        return map_set_float(mem, token, mid, "done", 1.0)

    with ss.attach(name) as store:
        store.reserve(1 << 20)
        for _ in range(rounds):
            assert bump(store.mem, store.token, map_id, n) >= 0


def apply_ops(store, map_id, ops):
    """Apply (op, key, value) tuples to a map in this (second) process."""
    m = store.ref(map_id)
    for op, key, value in ops:
        if op == "set":
            m[key] = value
        else:
            m.delete(key)
    return len(m)


def read_struct(store, rid):
    """Open a struct record by id with no schema in hand; return its fields."""
    rec = store.ref(rid)
    d = rec.to_dict()
    rec["mass"] = rec["mass"] + 1.0
    rec["name"] = d["name"] + "!"
    return rec.struct.name, {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in d.items()}


def rename_many(store, rid, n, label):
    rec = store.ref(rid)
    for i in range(n):
        rec["name"] = f"{label}-{i}"


def append_records(store, vid, start, n, batch):
    """Append records (i, -i, i * 0.5) for i in start..start+n, ``batch`` at a time (one by one
    with ``append`` for a batch of 1)."""
    import numpy as np

    v = store.ref(vid)
    for lo in range(start, start + n, batch):
        i = np.arange(lo, min(lo + batch, start + n))
        rows = np.zeros(len(i), dtype=v.dtype)
        rows["a"], rows["b"], rows["c"] = i, -i, i * 0.5
        if batch == 1:
            v.append(rows[0])
        else:
            v.extend(rows)


def grow_and_churn(name, vid, ready_id, done_id):
    """Grow a vector (its records move), then allocate and free a lot (to reuse freed memory)."""
    import numpy as np

    with ss.attach(name) as store:
        v = store.ref(vid)
        while store.ref(ready_id).get() == 0:
            time.sleep(0.005)
        v.extend(np.full(10_000, 7, dtype=v.dtype))  # grows: the old block is retired
        junk = [store.string("x" * 64) for _ in range(5000)]  # would reuse a freed block
        for j in junk:
            j.drop()
        store.ref(done_id).set(1)


def hold_view(name, vid, seconds_id, out_id):
    """Take a view and read it for a while; report its sum."""
    with ss.attach(name) as store:
        view = store.ref(vid).view()
        store.ref(out_id).set(int(view.sum()))


def list_appender(store, lid, label, n):
    lst = store.ref(lid)
    for i in range(n):
        lst.append(f"{label}-{i}")


def view_then_exit(name, vid, normally):
    """Take a view and leave it alive at exit (normally: atexit releases its pin)."""
    store = ss.attach(name)
    global _kept_view
    _kept_view = store.ref(vid).view()
    if not normally:
        os._exit(0)


def drop_inherited_view(holder):
    """In a forked child: drop a view inherited from the parent (its pin is the parent's)."""
    import gc

    holder.clear()
    gc.collect()


def own_view_outlives_inherited(holder, v, parent_released):
    """In a forked child: take a view of the block an inherited view shows, drop the inherited
    one; once the parent dropped its own, grow the vector past the block and churn the heap:
    the child's view must still show the block (releasing the inherited view must not have
    released the child's pin)."""
    import gc

    mine = v.view()
    holder.clear()
    gc.collect()
    assert parent_released.wait(60)
    v.extend(range(100))  # retires the block: only the child's pin keeps it
    for i in range(2000):
        v._store.string("q" * (i % 120))  # every small size class, the block's among them
    assert mine[:8].tolist() == list(range(8)), mine[:8].tolist()


def churn_until(name, stop_id, progress_id):
    """Random structural writes until told to stop: map set/delete (with resizes), vector
    append/remove (with growth), string create/drop.  Returns how many operations it did."""
    import random

    import numpy as np

    rng = random.Random(os.getpid())
    with ss.attach(name) as store:
        m = store.map()
        v = store.vector("int64")
        stop = store.ref(stop_id)
        progress = store.ref(progress_id)
        strings = []
        n = 0
        while stop.get() == 0:
            op = rng.random()
            if op < 0.3:
                m[f"k{rng.randrange(2000)}"] = "v" * rng.randrange(50)
            elif op < 0.45:
                m.delete(f"k{rng.randrange(2000)}")
            elif op < 0.6:
                v.extend(np.arange(rng.randrange(1, 300)))
            elif op < 0.7 and len(v):
                try:
                    v.remove(rng.randrange(len(v)))
                except IndexError:
                    pass  # removed before
            elif op < 0.85:
                strings.append(store.string("s" * rng.randrange(300)))
            elif strings:
                strings.pop().drop()
            n += 1
            progress.add(1)
        m.drop()
        v.drop()
        for s in strings:
            s.drop()
        return n


def view_then_die(name, vid, ready_id, kill):
    """Take two views (one block pinned twice), then leave without any cleanup."""
    store = ss.attach(name)
    views = [store.ref(vid).view(), store.ref(vid).view()]
    store.ref(ready_id).set(len(views))
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(0)


def replace_arrays_and_churn(name, map_id, key, ready_id, done_id, rounds):
    """Replace (and delete) an array value many times, allocating between: a freed data block
    would be reused at once."""
    import numpy as np

    with ss.attach(name) as store:
        m = store.ref(map_id)
        while store.ref(ready_id).get() == 0:
            time.sleep(0.005)
        for i in range(rounds):
            m[key] = np.full(1000, -i, dtype=np.int64)  # the same size: the same block class
            if i % 3 == 0:
                del m[key]
            junk = [store.string("y" * 8000) for _ in range(3)]
            for j in junk:
                j.drop()
        store.ref(done_id).set(1)


def array_view_then_die(name, map_id, key, ready_id, kill):
    """Take a view of a map's array value, then leave without any cleanup."""
    store = ss.attach(name)
    views = [store.ref(map_id).view(key), store.ref(map_id).view(key)]
    store.ref(ready_id).set(len(views))
    if kill:
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(0)


def renumber(name, map_id, n, rounds):
    """Set keys "k0".."k{n-1}" to i + 1000 * r for r = 1..rounds, growing the map as it goes
    (so its table moves while another process reads it in batches)."""
    with ss.attach(name) as store:
        m = store.ref(map_id)
        keys = [f"k{i}" for i in range(n)]
        for r in range(1, rounds + 1):
            m.set_many(keys, [float(i + 1000 * r) for i in range(n)])
            m.set_many([f"grow{r}-{j}" for j in range(n // 4)], [0.0] * (n // 4))


def attach_and_vanish(name, conn):
    """Attach, send this process's lock token, and exit without detaching (as a crash)."""
    store = ss.attach(name)
    conn.send(store.token)
    os._exit(0)


def overwrite_rows(store, vid, stop_id, rows):
    """Overwrite ``rows`` records of table ``vid`` from slot 0, each with one value in every
    field, the value changing each round, until the int at ``stop_id`` is set."""
    v, stop = store.ref(vid), store.ref(stop_id)
    block = np.zeros(rows * (v.dtype.itemsize // 8), dtype=np.int64)
    records = block.view(v.dtype)
    k = 0
    while stop.get() == 0:
        k += 1
        block.fill(k)
        v[0:rows] = records


def grow_vector_and_churn(name, vid):
    """Grow vector ``vid`` past its capacity and allocate a lot: a block the parent still views
    would be reused here if it had been freed."""
    with ss.attach(name) as store:
        v = store.ref(vid)
        v.extend(np.arange(1000))
        for _ in range(300):
            store.string("q" * 64)


def attach_and_count(name):
    """A pool task written the usual way: attach, use, never close.  Returns the worker's pid."""
    ss.attach(name)["hits"].add(1)
    return os.getpid()


def unpickle_expecting_replaced(blob):
    """The store a pickled ref names was removed and created again: unpickling says so."""
    import pickle

    import pytest

    with pytest.raises(ss.StoreNotFoundError, match="created again"):
        pickle.loads(blob)


def forked_child_checks_its_entry(store, counter_id):
    """In a forked child: the inherited store locks with the child's own entry."""
    pids = [w["pid"] for w in store.workers()]
    assert os.getpid() in pids and pids.count(os.getpid()) == 1, pids
    assert store.token != 0 and store._att.pid == os.getpid()
    store.ref(counter_id).add(1)
    store.close()
