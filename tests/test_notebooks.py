"""Every notebook executes under papermill at the "ci" profile.

Executions go into the book's jupyter-cache (``_build/.jupyter_cache``), so ``make book`` after ``make test`` only
renders. The cache is emptied whenever ``umlip_helpers/`` or ``data/`` change, so a cached pass is a pass of this
code on this data; set UMLIP_NOTEBOOK_FORCE=1 to execute regardless.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from umlip_helpers.book import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_at_ci_profile(path):
    run = execute_notebook(path, ROOT, timeout=900, force=os.environ.get("UMLIP_NOTEBOOK_FORCE") == "1")
    code = [c for c in run.outputs.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "not every cell ran"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert code[-1].outputs or any(c.outputs for c in code[-2:]), f"{path.name}: the summary cell printed nothing"
