import builtins

import sharedstore as ss


def test_error_tree_mixes_in_builtins():
    pairs = {
        ss.StoreNotFoundError: FileNotFoundError,
        ss.StoreExistsError: FileExistsError,
        ss.StoreFullError: MemoryError,
        ss.UseAfterFreeError: ReferenceError,
        ss.InvalidHandleError: ValueError,
        ss.SchemaError: ValueError,
        ss.LockTimeoutError: TimeoutError,
        ss.InvalidNameError: ValueError,
        ss.NodeStoreError: RuntimeError,
    }
    for err, base in pairs.items():
        assert issubclass(err, ss.SharedStoreError)
        assert issubclass(err, base)
    assert issubclass(ss.StoreCorruptError, ss.SharedStoreError)


def test_open_is_not_the_builtin():
    assert ss.open is not builtins.open


def test_without_numbas_jit_the_import_says_so():
    import subprocess
    import sys

    env = {**__import__("os").environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", "import sharedstore"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "unset NUMBA_DISABLE_JIT" in out.stderr
