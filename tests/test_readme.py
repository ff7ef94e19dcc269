"""The README's first example runs as written (with a store name of its own)."""

import re
import subprocess
import sys
from pathlib import Path

from .conftest import unique_name

README = Path(__file__).resolve().parent.parent / "README.md"


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
