"""A reader re-runs a whole chapter in the same kernel: the second run must work too
(servers from the first run are replaced, ports are new, nothing is left behind)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def test_web_single_runs_twice_in_one_kernel() -> None:
    path = ROOT / "notebooks" / "serving" / "web-single.ipynb"
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for _ in range(2):
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
    outputs = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "PASS: HTTP predictions equal in-process scikit-learn" in outputs
