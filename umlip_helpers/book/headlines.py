"""A study's committed headline result, for a notebook's Summary: what the full run found, beside the ci run.

``committed_headline("lammps_md")`` reads ``benchmarks/results/lammps_md.json`` (the headline a benchmark script
writes, see :mod:`umlip_helpers.io`), prints where it came from (profile, date, the command line) and returns its
``headline`` numbers as a table. A study that has not been run yet says so instead of failing the notebook.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..paths import results_path
from .result_tables import headline_tables, key_numbers
from .studies import shown_command


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _readable(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.3g}")
    return value


def committed_headline(script: str, results_dir: str | Path | None = None):
    """The ``headline`` of ``benchmarks/results/<script>.json`` as a pandas DataFrame (one row per number; a
    headline keyed by model becomes one column per model), after printing its provenance. None, with a line
    saying so, when the study has no committed headline."""
    import pandas as pd

    path = Path(results_dir or results_path()) / f"{script}.json"
    if not path.is_file():
        print(f"benchmarks/results/{script}.json is not committed yet: run python benchmarks/{script}.py "
              "--profile full")
        return None
    result = json.loads(path.read_text())
    record = result.get("provenance", {})
    parameters = record.get("parameters", {})
    argv = shown_command(record.get("argv", [])) or "(not recorded)"
    machine = ", ".join(str(x) for x in (parameters.get("device"), record.get("cpu")) if x) or "an unrecorded machine"
    profile = f"profile {parameters['profile']}, " if "profile" in parameters else ""  # not every study has one
    print(f"benchmarks/results/{script}.json: {profile}{str(record.get('created_utc', 'date unknown'))[:10]}, "
          f"on {machine};\nmade by: {argv}")
    headline = result.get("headline", {})
    if not headline:  # no headline key: the numbers the Results page leads with
        summary = next((t.rows for t in headline_tables(script, result) if t.caption == "summary"), [])
        rows = dict(summary) or dict(key_numbers(script, result))
        table = pd.DataFrame({"value": list(rows.values())}, index=list(rows))
    elif all(isinstance(v, dict) for v in headline.values()):
        table = pd.DataFrame({key: {k: _readable(v) for k, v in _flatten(inner).items()}
                              for key, inner in headline.items()})
    else:
        flat = _flatten(headline)
        table = pd.DataFrame({"value": [_readable(v) for v in flat.values()]}, index=list(flat))
    table.index.name = "headline"
    return table
