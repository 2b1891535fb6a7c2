"""The registry as a table: ``umlip models [--json]``."""

from __future__ import annotations

from typing import Any

from .loading import model_status
from .registry import MODELS


def registry_table() -> list[dict[str, Any]]:
    rows = []
    for spec in MODELS.values():
        available, where = model_status(spec)
        rows.append({
            "name": spec.name, "family": spec.family, "version": spec.version, "available_offline": available,
            "where": where, "training_data": spec.training_data, "licence": spec.licence, "doi": spec.doi,
            "weights_file": spec.weights_file or "(ships with the package)", "sha256": spec.sha256,
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    columns = ("name", "family", "available_offline", "version", "training_data")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def cli_models(args) -> list[dict[str, Any]] | None:
    rows = registry_table()
    if args.json:
        return rows
    print(format_table(rows))
    missing = [r for r in rows if not r["available_offline"]]
    if missing:
        print(f"\n{len(missing)} model(s) need a checkpoint: put the file named by `umlip models --json` "
              "(weights_file) in $UMLIP_MODEL_DIR or ~/.cache/umlip/models/.")
    return None
