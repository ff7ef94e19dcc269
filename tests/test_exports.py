"""The public namespace, checked as trio's ``_tests/test_exports.py`` checks its own: every name
in ``__all__`` resolves, nothing public is left out of it, and a static checker (mypy) sees
every name in it and every public method of every public class, typed as
``tests/_typing_api.py`` writes them.

The hot methods (``MapRef.__getitem__``...) are Python methods in the class bodies, which
``sharedstore._fastpath`` replaces with C functions at run time: mypy reads the Python ones."""

import ast
import types
from pathlib import Path

import pytest

import sharedstore as ss
import sharedstore.dask as ssd
import sharedstore.kernels as ssk

from . import _typing_api as T

ROOT = Path(__file__).resolve().parent.parent
MODULES = (ss, ssd, ssk)


def test_every_name_in_all_resolves():
    for module in MODULES:
        assert len(set(module.__all__)) == len(module.__all__), module.__name__
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert not missing, f"{module.__name__}.__all__ names what it lacks: {missing}"


def test_every_public_name_of_the_package_is_in_all():
    public = {n for n, v in vars(ss).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public <= set(ss.__all__), sorted(public - set(ss.__all__))


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory):
    """mypy's errors, by file, for tests/_typing_api.py and for a file importing every name
    of every ``__all__`` (one run: the project's configuration and cache)."""
    api = pytest.importorskip("mypy.api")
    names = tmp_path_factory.mktemp("exports") / "every_name.py"
    names.write_text("".join(f"from {m.__name__} import {', '.join(m.__all__)}\n"
                             for m in MODULES))
    typing_api = ROOT / "tests" / "_typing_api.py"
    out, err, status = api.run([
        "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"),
        "--no-warn-unused-configs", "--disallow-untyped-calls", "--show-error-codes",
        str(typing_api), str(names)])
    assert status in (0, 1), err  # (2: mypy itself failed)
    lines = [line for line in out.splitlines() if ": error:" in line]
    files = [Path(line.split(":", 1)[0]).resolve() for line in lines]  # (as given, or relative)
    return {key: [line for line, file in zip(lines, files) if file == path.resolve()]
            for key, path in (("api", typing_api), ("names", names))} | {"all": lines}


def test_a_type_checker_sees_every_name_in_all(mypy_errors):
    assert mypy_errors["names"] == []


def test_a_type_checker_sees_the_public_api_as_typed(mypy_errors):
    """Every call of tests/_typing_api.py type-checks: each method is visible, annotated (no
    call of an unannotated function), and returns what ``assert_type`` says."""
    assert mypy_errors["api"] == []
    assert mypy_errors["all"] == mypy_errors["api"] + mypy_errors["names"]


def _attributes_used(functions: tuple[str, ...]) -> set[str]:
    tree = ast.parse((ROOT / "tests" / "_typing_api.py").read_text())
    used = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in functions:
            used |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    return used


def test_the_typed_api_covers_every_public_attribute(store):
    """A public method, property or attribute added to a class without a use in
    tests/_typing_api.py fails this test."""
    instances = {"Store": store, "Struct": ss.Struct("P", {"x": "float64"}),
                 "NodeStore": ssd.NodeStore("run1")}
    assert set(T.USERS) == {n for n in ss.__all__ + ssd.__all__
                            if isinstance(getattr(ss, n, None) or getattr(ssd, n), type)
                            and not issubclass(getattr(ss, n, None) or getattr(ssd, n),
                                               Warning | ss.SharedStoreError)}
    for name, functions in T.USERS.items():
        cls = getattr(ss, name, None) or getattr(ssd, name)
        public = {n for n in dir(cls) if not n.startswith("_")}
        if name in instances:
            public |= {n for n in vars(instances[name]) if not n.startswith("_")}
        missing = public - _attributes_used(functions)
        assert not missing, f"{name}: {', '.join(functions)} use no {sorted(missing)}"


def test_the_typed_api_runs(name):
    """tests/_typing_api.py is code that works, not only code that type-checks."""
    T.use_all(name, ROOT / "schemas" / "particles.toml")
