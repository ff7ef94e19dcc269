"""notebooks/analysis.ipynb runs top to bottom in a fresh kernel and leaves /dev/shm clean.

The notebook asserts its own facts (record counts, exact word counts, zero-copy columns), so a
run that finishes is a run that checked them.  Its outputs are stripped in git.
"""

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")
pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "analysis.ipynb"
SHM = Path("/dev/shm")
PREFIX = "sharedstore.notebook-analysis-"


def _notebook_stores() -> set[str]:
    return {p.name for p in SHM.glob(PREFIX + "*")}


def test_the_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow  # a Jupyter kernel and two spawned workers: about 7 s
def test_the_analysis_notebook_runs_and_removes_its_store():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    before = _notebook_stores()
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    try:
        client.execute()
    finally:
        left = _notebook_stores() - before
        for name in left:  # a failed run still leaves /dev/shm clean
            (SHM / name).unlink(missing_ok=True)
    assert not left, f"the notebook did not remove its store: {sorted(left)}"

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "zero-copy columns: {'mass': True, 'id': True, 'alive': True}" in text
    assert "removed store 'notebook-analysis-" in text
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the 2 x 2 figure
    html = [o for o in outputs if "text/html" in o.get("data", {})]
    assert any("sharedstore.Store" in o["data"]["text/html"] for o in html)
    assert os.path.exists(NOTEBOOK)  # executing in memory never rewrites the committed file
