"""Execute the notebooks with small settings (SKUNET_SMALL=1), as a reader would."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("SKUNET_SMALL", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own (inline), as a user's
    # without the shared data the notebooks fall back to the bundled sample / synthetic cells
    for variable, folder in (
        ("SKUNET_DSB2018", "dsb2018"),
        ("SKUNET_WBC", "wbc"),
        ("SKUNET_ISBI", "isbi2012"),
    ):
        if (SHARED / folder).exists():
            monkeypatch.setenv(variable, str(SHARED / folder))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    if any("LivePlot(" in c.source for c in nb.cells):
        # the live figure was displayed in the notebook while the model trained
        fit_cells = [c for c in nb.cells if c.cell_type == "code" and ".fit(X_train" in c.source]
        assert any(
            "image/png" in o.get("data", {}) for c in fit_cells for o in c.get("outputs", [])
        )
