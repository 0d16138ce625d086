"""The walkthrough notebook: its .ipynb pair matches the jupytext script, carries no outputs, and runs to the end."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOK, SCRIPT = NOTEBOOKS / "walkthrough.ipynb", NOTEBOOKS / "walkthrough.py"
SECTIONS = [f"## 3.{i} " for i in range(1, 10)]


def test_pair_in_sync_without_outputs_and_sections_in_order() -> None:
    import jupytext
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    script = jupytext.read(SCRIPT)
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in script.cells], (
        "notebooks/walkthrough.ipynb differs from walkthrough.py: run `jupytext --sync notebooks/walkthrough.py`"
    )
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit the notebook without outputs"
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    positions = [text.find(s) for s in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), "sections 3.1-3.9 must all be there, in order"
    # Every code cell after the set-up is explained by the markdown cell before it.
    for before, cell in zip(nb.cells, nb.cells[1:], strict=False):
        if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", []):
            assert before.cell_type == "markdown" or cell.source.startswith("import"), cell.source[:80]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_walkthrough_runs_end_to_end(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel is this virtualenv's Python (ipykernel's spec names `python`, which jupyter_client resolves to
    # sys.executable); it runs in a temporary folder so the outputs land there.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 5  # EDA, ROC, confusion, gallery, heat maps
    last = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "walkthrough complete" in last
    assert (tmp_path / "walkthrough_out" / "bundle" / "manifest.json").is_file()
    assert (tmp_path / "walkthrough_out" / "scores.parquet").is_file()
