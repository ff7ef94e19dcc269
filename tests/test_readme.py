"""The README's examples run as written (with store names of their own)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import unique_name

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.slow  # a spawn Pool in a subprocess: 1.5 s
def test_readme_example_runs(tmp_path):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    name = unique_name("readme")
    script = tmp_path / "example.py"
    script.write_text(block.replace('"demo"', repr(name)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "['Hello World', 'Hello World'" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("8 ")
    assert not (Path("/dev/shm") / f"sharedstore.{name}").exists()


@pytest.mark.slow  # a LocalCluster of process workers: about 6 s
def test_readme_dask_example_runs(tmp_path):
    """The Dask section's example: a LocalCluster whose nodes share one store."""
    section = README.read_text().split("## Dask", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    run = unique_name("readme")[-9:]  # the run names the store (with this machine's hash)
    script = tmp_path / "dask_example.py"
    script.write_text(block.replace('"run1"', repr(run)))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-5000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "332833500.0"
    [(name, hits)] = ast.literal_eval(lines[1]).items()  # {store name: hits}
    assert hits == 1000 and name.startswith(run)
    assert ast.literal_eval(lines[2]) == {name}
    assert not (Path("/dev/shm") / f"sharedstore.{name}").exists()  # removed with the cluster
