"""The wheel carries what the package reads at run time."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sharedstore import _cache, _compile
from sharedstore import _demo_workers as W

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_finds_its_schema_in_this_install():
    path = W.schema_path()
    assert path.is_file() and path.name == "particles.toml"
    assert W.particle_struct().dtype.names == ("pos", "mass", "id", "name", "tag", "alive")


@pytest.mark.slow  # builds the wheel
def test_the_wheel_ships_the_schema_files_and_the_kernel_cache(tmp_path):
    pytest.importorskip("hatchling")
    proc = subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    [wheel] = tmp_path.glob("sharedstore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sharedstore/schemas/particles.toml" in names
    assert "sharedstore/_demo_workers.py" in names
    shipped = zipfile.ZipFile(wheel).read("sharedstore/schemas/particles.toml")
    assert shipped == (ROOT / "schemas" / "particles.toml").read_bytes()
    # the portable kernel cache, for every interpreter CI installs, byte for byte
    for python in _compile.SHIPPED_PYTHONS:
        tag = _cache.tag(python, _compile.SHIPPED_NUMBA)
        files = sorted(p for p in (_cache.SHIPPED / tag).rglob("*") if p.is_file())
        assert files, f"no shipped kernel cache {tag} in the source tree"
        for path in files:
            name = "sharedstore/" + path.relative_to(_cache.PACKAGE).as_posix()
            assert name in names, f"{name} is not in the wheel"
        assert zipfile.ZipFile(wheel).read(name) == path.read_bytes()


def test_a_missing_schema_file_says_where_it_looked():
    with pytest.raises(FileNotFoundError, match="reinstall sharedstore"):
        W.schema_path("no-such-schema.toml")
