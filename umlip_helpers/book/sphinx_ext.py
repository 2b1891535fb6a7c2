"""The book's Sphinx extension (listed in ``_config.yml`` under ``sphinx.extra_extensions``), with two directives:
``{umlip-benchmark-results}`` renders ``benchmarks/results/*.json`` as tables each time the book is built (a missing
file reads "not yet run"), and ``{umlip-model-table}`` renders the model registry."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

RESULTS_DOC = "book/results"


@dataclass
class BenchmarkTable:
    name: str
    status: Literal["ok", "not yet run", "unreadable"]
    rows: list[tuple[str, str]] = field(default_factory=list)
    record_tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    note: str = ""


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _scalars(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _scalars(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out.append((prefix, _fmt(value)))


#: a nested dict with more scalars than this stays in the JSON instead of becoming columns
MAX_NESTED_COLUMNS = 8


def _record_cells(record: dict) -> list[tuple[str, str]]:
    """One table row: scalars, small dicts as ``key.sub`` columns, and dicts of ``{"value": ...}`` entries
    (e.g. properties against references) as one ``value (±error %)`` column each."""
    cells: list[tuple[str, str]] = []
    for key, value in record.items():
        if key == "provenance":
            continue
        if isinstance(value, dict) and value and all(isinstance(v, dict) and "value" in v for v in value.values()):
            for sub, entry in value.items():
                error = entry.get("percent_error")
                cells.append((sub, _fmt(entry["value"]) + (f" ({error:+.0f} %)" if isinstance(error, float) else "")))
        elif isinstance(value, dict):
            leaves: list[tuple[str, str]] = []
            _scalars(key, value, leaves)
            if len(leaves) <= MAX_NESTED_COLUMNS:
                cells += [(name, text) for name, text in leaves if len(text) <= 24]  # messages stay in the JSON
        elif isinstance(value, (int, float, str, bool)) or value is None:
            cells.append((key, _fmt(value)))
    return cells


def benchmark_tables(root: str | Path) -> list[BenchmarkTable]:
    """One table per benchmark: every ``benchmarks/*.py`` (missing result: "not yet run") and every
    ``benchmarks/results/*.json``. Scalars (nested keys joined by dots) go in one table; each list of records,
    or dict of records keyed by name, gets its own table (see ``_record_cells``). ``provenance`` is summarised in a
    note."""
    root = Path(root)
    names = {p.stem for p in (root / "benchmarks").glob("*.py")}
    names |= {p.stem for p in (root / "benchmarks" / "results").glob("*.json")}
    tables = []
    for name in sorted(names):
        path = root / "benchmarks" / "results" / f"{name}.json"
        if not path.is_file():
            tables.append(BenchmarkTable(name, "not yet run", note=f"run `python benchmarks/{name}.py`"))
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            tables.append(BenchmarkTable(name, "unreadable", note=f"{path.name}: {exc}"))
            continue
        table = BenchmarkTable(name, "ok")
        if not isinstance(data, dict):
            data = {"records": data}
        prov = data.get("provenance") or {}
        for key, value in data.items():
            if key == "provenance":
                continue
            if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
                value = [{"name": name, **record} for name, record in value.items()]  # e.g. one record per model
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                columns: list[str] = []
                flat_rows = []
                for record in value:
                    flat = _record_cells(record)
                    flat_rows.append(dict(flat))
                    columns += [c for c, _ in flat if c not in columns]
                table.record_tables.append((key, columns, [[r.get(c, "") for c in columns] for r in flat_rows]))
            else:
                _scalars(key, value, table.rows)
        if isinstance(prov, dict):
            model = prov.get("model", {})
            model_name = model.get("name") if isinstance(model, dict) else model
            bits = [f"created {prov['created_utc']}" if prov.get("created_utc") else "",
                    f"model {model_name}" if model_name else "", f"host {prov['host']}" if prov.get("host") else ""]
            table.note = "; ".join(b for b in bits if b)
        tables.append(table)
    return tables


def _docutils_table(header: list[str], rows: list[list[str]]):
    from docutils import nodes

    table = nodes.table(classes=["umlip-results-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for _ in header:
        group += nodes.colspec(colwidth=1)

    def row(cells):
        tr = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=text)
            tr += entry
        return tr

    head = nodes.thead()
    head += row(header)
    body = nodes.tbody()
    for cells in rows:
        body += row(cells)
    group += head
    group += body
    return table


def _results_directive():
    from docutils import nodes
    from sphinx.util.docutils import SphinxDirective

    class BenchmarkResults(SphinxDirective):
        """Tables of benchmarks/results/*.json, read at build time."""

        def run(self):
            out = []
            for table in benchmark_tables(self.env.srcdir):
                out.append(nodes.rubric(text=table.name))
                if table.status != "ok":
                    para = nodes.paragraph()
                    para += nodes.strong(text=f"{table.status}: ")
                    para += nodes.Text(table.note)
                    out.append(para)
                    continue
                if table.rows:
                    out.append(_docutils_table(["quantity", "value"], [list(r) for r in table.rows]))
                for key, columns, rows in table.record_tables:
                    out.append(nodes.paragraph(text=f"{key}:"))
                    out.append(_docutils_table(columns, rows))
                if table.note:
                    out.append(nodes.paragraph(text=f"Provenance: {table.note}.", classes=["umlip-provenance"]))
            return out

    return BenchmarkResults


def _model_table_directive():
    from sphinx.util.docutils import SphinxDirective

    class ModelTable(SphinxDirective):
        """The model registry: name, family, checkpoint file, training data, DOI."""

        def run(self):
            from ..models.registry import MODELS

            rows = [[s.name, s.family, s.weights_file or "ships with the package", s.training_data, s.doi]
                    for s in MODELS.values()]
            return [_docutils_table(["name", "family", "checkpoint file", "training data", "DOI"], rows)]

    return ModelTable


def _results_always_outdated(app, env, added, changed, removed):
    return [RESULTS_DOC] if RESULTS_DOC in env.found_docs else []


def setup(app):
    """Sphinx extension entry point (listed in _config.yml under sphinx.extra_extensions)."""
    app.add_directive("umlip-benchmark-results", _results_directive())
    app.add_directive("umlip-model-table", _model_table_directive())
    app.connect("env-get-outdated", _results_always_outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
