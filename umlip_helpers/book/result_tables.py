"""The numbers of a benchmark result as tables for the book's Results page, with each study's key numbers and
record columns from :mod:`.study_tables`: labels with units from JSON keys
(:func:`label`), numbers at the digits they support (:func:`fmt`: three significant digits, four for lengths and
volumes, counts whole), :func:`headline_tables` (a summary, then one table per list or dict of records) and
:func:`summary_table` (a notebook's Summary dict as a table). Plain Python: nothing here needs Sphinx or docutils,
and pandas only for :func:`summary_table`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .study_tables import COLUMNS, KEY_NUMBERS

#: top-level keys that are not results (shown elsewhere, or only in the JSON)
SKIP_KEYS = {"provenance", "benchmark", "command", "profile", "note", "co_geometry_note", "noise", "settings",
             "targets", "uncertainty_points", "variants", "update_comparison", "gpaw", "data", "labels", "speed",
             "elements", "pretraining", "complete", "npoints", "plot"}
#: fields that identify a record, in order of preference
NAME_FIELDS = ("name", "model", "system", "architecture", "frames", "base_model", "seed", "lambda", "ranks")
MAX_COLUMNS = 9
#: a key number of more records than this stays in its record table, out of the summary
MAX_KEY_ROWS = 6
#: a record table longer than this is collapsed (a <details> block)
COLLAPSE_ROWS = 8


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]
    collapsed: bool = False




#: key endings whose numbers carry four significant digits (lengths and volumes: 3.504 vs 3.512 Å); others three
FOUR_DIGITS = ("_angstrom", "_angstrom3_per_atom", "a0", "v0")
#: settings, shown as given (λ 0.1, not 0.100)
EXACT = ("lambda", "seed", "batch_size", "threads", "temperature_k", "timestep_fs", "lr", "epochs")


def fmt(value: Any, key: str = "") -> str:
    """A value as the book shows it: integers whole (thousands separated from 10,000), floats to three significant
    digits with their trailing zeros (four where ``key`` names a length or volume), booleans yes/no, None as a dash,
    the rest as text."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        last = key.split(".")[-1]
        if last in EXACT:
            return f"{value:g}"
        digits = 4 if last.endswith(FOUR_DIGITS) and not last.endswith("per_angstrom") else 3
        if value != 0 and abs(value) < 1e-4:
            return f"{value:.{digits - 1}e}"
        if abs(value) < 10 ** digits:  # trailing zeros kept: 1.00 is not 1
            return f"{value:#.{digits}g}".rstrip(".")
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.0f}"
    return str(value)


#: key suffixes and the units they name (longest first)
UNITS = [("_mev_per_atom", "meV/atom"), ("_ev_per_angstrom2", "eV/Å²"), ("_ev_per_angstrom", "eV/Å"),
         ("_angstrom3_per_atom", "Å³/atom"), ("_angstrom", "Å"), ("_gpa", "GPa"), ("_mj_m2", "mJ/m²"),
         ("_thz", "THz"), ("_ev", "eV"), ("_seconds", "s"), ("_cpu_s", "s CPU"), ("_wall_s", "s wall"),
         ("_per_s", "/s"), ("_ms_per_step", "ms/step"), ("_s", "s"), ("_ms", "ms"), ("_mb", "MB"), ("_gb", "GB"),
         ("_fs", "fs"), ("_k", "K")]
WORDS = {"mae": "MAE", "rmse": "RMSE", "bfgs": "BFGS", "gpmin": "GPMin", "pca": "PCA", "md": "MD", "dft": "DFT",
         "gp": "GP", "0p02eV": "0.02 eV", "sevennet0": "SevenNet-0", "ni": "Ni", "b0": "B0", "a0": "a0", "v0": "V0",
         "lambda": "λ", "percent": "%", "delta": "Δ gauge", "spearman": "Spearman", "cu": "Cu",
         "q": "Q", "thz": "THz", "newton": "Newton", "hessian": "Hessian", "lammps": "LAMMPS", "gb": "GB",
         "cpu": "CPU", "gpu": "GPU", "ase": "ASE", "rms": "RMS"}
#: phrases of several words, replaced before the words are
PHRASES = {"0p02_ev": "0p02eV", "cu_o_": "Cu–O_", "x_l_": "X/L_"}
#: a last word that qualifies the quantity before it: ``frequency_mae_thz_base`` -> frequency MAE (THz) [base]
QUALIFIERS = ("base", "matched", "finetuned", "naive", "periodic", "before", "after", "teacher", "student")


def label(key: str) -> str:
    """A column name from a JSON key with its unit: ``force_mae_ev_per_angstrom`` -> ``force MAE (eV/Å)``;
    dotted paths keep their last two parts (``test_after.forces_mae_ev_per_angstrom`` -> after: forces MAE)."""
    parts = key.split(".")
    if len(parts) > 1 and parts[-1] == "percent_error":
        return f"{parts[-2]} error (%)"
    if len(parts) > 1 and parts[-1] in QUALIFIERS:
        return f"{label(parts[-2])} [{parts[-1]}]"
    if len(parts) > 1:
        head = parts[-2].replace("test_", "")
        last = label(parts[-1])
        if head in ("summary", "headline"):
            return last
        if not last.endswith(")") and not parts[-2].startswith("test_"):  # the quantity first, then which one
            return f"{label(parts[-2])} [{last}]"
        return f"{last} [{head.replace('_', ' ')}]"
    for phrase, text in PHRASES.items():
        key = key.replace(phrase, text)
    rest, _, last = key.rpartition("_")
    if last in QUALIFIERS and rest and not rest.endswith(("_over", "_to", "_vs", "_than")):
        head = label(rest)
        if head.endswith(")") or rest.endswith(("ratio", "mae", "error", "fraction")):
            return f"{head} [{last}]"
    if "_percent_of_" in key:
        head, _, tail = key.partition("_percent_of_")
        return f"{label(head)} (% of {WORDS.get(tail, tail)})"
    unit = ""
    for suffix, name in UNITS:
        if key.endswith(suffix) and key != suffix.lstrip("_"):
            key, unit = key[: -len(suffix)], name
            break
    if "percent" in key.split("_"):
        unit = unit or "%"
    words = [WORDS.get(w, w) for w in key.split("_") if w]
    text = " ".join(w for w in words if w != "%" or unit != "%") or key
    return f"{text} ({unit})" if unit else text


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict):
            data = data.get(part)
        else:
            return None
    return data


def _entries(value: Any) -> list[tuple[str, Any]]:
    """(name, record) pairs of a dict of records or a list of records."""
    if isinstance(value, dict):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, list):
        return [(_record_name(v, i), v) for i, v in enumerate(value)]
    return []


def _record_name(record: Any, index: int) -> str:
    if isinstance(record, dict):
        bits = [f"{WORDS.get(f, f)} {record[f]}" if f in ("lambda", "seed", "ranks") else str(record[f])
                for f in NAME_FIELDS if f in record and not isinstance(record[f], (dict, list))]
        extra = [f"{record[k]}" for k in ("strategy", "rules") if k in record]
        extra += [f"batch {record['batch_size']}"] if "batch_size" in record else []
        extra += [f"{record['threads']} thread(s)"] if "threads" in record else []
        weight = record.get("replay_weight")
        extra += [f"replay {weight:g}"] if isinstance(weight, (int, float)) else []
        if bits or extra:
            return " ".join([*bits[:1], *extra])
    return f"#{index + 1}"


def _star_values(data: Any, path: str) -> list[tuple[str, Any]]:
    """(name, number) of a path: one unnamed entry, or one per record where the path has ``.*.``."""
    head, star, tail = path.partition(".*.")
    pairs = [(name, _get(record, tail)) for name, record in _entries(_get(data, head))] if star \
        else [("", _get(data, path))]
    return [(name, v) for name, v in pairs if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _pair_label(before: str, after: str) -> str:
    """``results.*.test_before.forces_mae`` and ``...test_after.forces_mae`` -> ``forces MAE [before → after]``."""
    b, a = before.split(".")[-2:], after.split(".")[-2:]
    if b[-1] != a[-1] or len(b) < 2:
        return f"{label(before)} → {label(after)}"
    return f"{label(b[-1])} [{b[0].replace('test_', '')} → {a[0].replace('test_', '')}]"


def key_entries(script: str, data: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """KEY_NUMBERS[script] found in ``data``: (label, [(record name or "", value text), ...]) each."""
    out = []
    for path in KEY_NUMBERS.get(script, []):
        if isinstance(path, tuple):
            before, after = (dict(_star_values(data, p)) for p in path)
            values = [(name, f"{fmt(v, path[0])} → {fmt(after[name], path[1])}")
                      for name, v in before.items() if name in after]
            name = _pair_label(*path)
        else:
            values = [(n, fmt(v, path)) for n, v in _star_values(data, path)]
            name = label(path.partition(".*.")[2] or path)
        if values:
            out.append((name, values))
    return out


def key_numbers(script: str, data: Any) -> list[tuple[str, str]]:
    """The (label, value) pairs of KEY_NUMBERS[script] found in ``data``; a per-record number reads
    ``name value, name value``."""
    out = [(name, ", ".join(f"{n} {v}" if n else v for n, v in values)) for name, values in key_entries(script, data)]
    if not out and isinstance(data, dict):  # a result of another shape: its first two summary numbers
        block = data.get("summary") or data.get("headline") or {}
        numbers = [(k, v) for k, v in block.items() if isinstance(v, (int, float)) and not isinstance(v, bool)] \
            if isinstance(block, dict) else []
        out = [(label(k), fmt(v, k)) for k, v in numbers[:2]]
    return out


# ---------------------------------------------------------------- headline tables


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 40)


def _hidden(key: str) -> bool:
    return any(bit in key for bit in ("sha256", "checkpoint", "model_dir", "source", "created_utc", "dir"))


def _summary_rows(script: str, data: dict) -> list[list[str]]:
    """quantity | value: the key numbers, then the scalars of ``summary``/``headline`` and the top level, and small
    dicts of scalars (such as one number per workflow)."""
    rows = []
    for name, values in key_entries(script, data):  # first: the finding, one row per record where there are several
        if len(values) == 1:
            rows.append([name, " ".join(b for b in values[0] if b)])
        elif len(values) <= MAX_KEY_ROWS:
            at = name.rfind(" [")
            rows += [[f"{name[:at]} [{n}, {name[at + 2:-1]}]" if name.endswith("]") and at > 0
                      else f"{name} [{n}]", v] for n, v in values]
    seen = {r[0] for r in rows}

    def add(key: str, value: Any, name: str | None = None) -> None:
        text = name or label(key)
        if text not in seen and not _hidden(key):
            seen.add(text)
            rows.append([text, fmt(value, key)])

    for block in ("headline", "summary"):
        for key, value in (data.get(block) or {}).items() if isinstance(data.get(block), dict) else ():
            if _is_scalar(value):
                add(key, value)
            elif isinstance(value, dict) and len(value) <= 4 and all(_is_scalar(v) for v in value.values()):
                for sub, item in value.items():
                    add(f"{key}_{sub}", item, f"{label(key)} [{label(str(sub))}]")
    for key, value in data.items():
        if key in SKIP_KEYS or key in ("summary", "headline"):
            continue
        if _is_scalar(value):
            add(key, value)
        elif isinstance(value, dict) and 0 < len(value) <= 4 and all(_is_scalar(v) for v in value.values()):
            for sub, item in value.items():
                add(f"{key}_{sub}", item, f"{label(key)} [{label(str(sub))}]")
    return rows


def _is_records(value: Any) -> bool:
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    return bool(items) and all(isinstance(v, dict) for v in items)


def _property_table(key: str, records: list[tuple[str, dict]]) -> Table:
    """Records holding ``properties`` ({name: {"value", "reference", "percent_error", "unit"}}), one column per
    record: property (unit) | reference | value (error %) per model."""
    names = []
    for _, record in records:
        names += [n for n in record["properties"] if n not in names]
    rows = []
    for prop in names:
        entries = [record["properties"].get(prop) or {} for _, record in records]
        first = next((e for e in entries if e), {})
        unit = (first.get("unit") or "").replace("^2", "²").replace("^3", "³")
        cells = []
        for entry in entries:
            error = entry.get("percent_error")
            error = f" ({error:+.0f}\u00a0%)".replace("-0\u00a0", "0\u00a0").replace("+0\u00a0", "0\u00a0") \
                if isinstance(error, (int, float)) else ""  # no break before %; -0.4 % reads 0 %
            cells.append(fmt(entry.get("value"), prop) + error)
        name = prop.replace("_", " ")
        rows.append([f"{name} ({unit})" if unit else name, fmt(first.get("reference"), prop), *cells])
    return Table(f"{key}: value (error against the reference)", ["property", "reference", *[n for n, _ in records]],
                 rows, collapsed=False)


def _record_table(script: str, key: str, value: Any) -> Table | None:
    records = _entries(value)
    if all(isinstance(r, dict) and isinstance(r.get("properties"), dict) for _, r in records):
        return _property_table(key, records)
    columns = COLUMNS.get(script, {}).get(key)
    if columns is None:
        columns = []
        for _, record in records:
            columns += [k for k, v in record.items() if k not in columns and _is_scalar(v) and not _hidden(k)]
        columns = columns[:MAX_COLUMNS]
    named = isinstance(value, dict) and not (columns and columns[0] in NAME_FIELDS
                                             and all(columns[0] in r for _, r in records))
    header = (["name"] if named else []) + [label(c) if c not in NAME_FIELDS else c.replace("_", " ") for c in columns]
    rows = []
    for name, record in records:
        cells = [fmt(_get(record, c), c) if _is_scalar(_get(record, c)) else "…" for c in columns]
        rows.append(([name] if named else []) + cells)
    if not rows or not header:
        return None
    return Table(f"{key.replace('_', ' ')} ({len(rows)})", header, rows, collapsed=len(rows) > COLLAPSE_ROWS)


def headline_tables(script: str, data: Any) -> list[Table]:
    """The headline's summary (quantity | value) and one table per list or dict of records."""
    if not isinstance(data, dict):
        data = {"records": data}
    tables = []
    summary = _summary_rows(script, data)
    if summary:
        tables.append(Table("summary", ["quantity", "value"], summary))
    for key, value in data.items():
        if key in SKIP_KEYS or key == "summary" or not _is_records(value):  # a headline keyed by model is records
            continue
        table = _record_table(script, key, value)
        if table:
            tables.append(table)
    return tables


def summary_table(summary: dict[str, Any], skip: tuple[str, ...] = ("provenance",)):
    """A notebook's Summary dict as a pandas table: one row per number, labelled with its unit (:func:`label`),
    shown at the digits it supports (:func:`fmt`); a dict of numbers is one row per entry (``label [entry]``),
    lists (tables the notebook shows above) and ``skip`` keys are left out."""
    import pandas as pd

    rows: dict[str, str] = {}
    for key, value in summary.items():
        if key in skip or isinstance(value, list):
            continue
        if isinstance(value, dict):
            for sub, item in value.items():
                if _is_scalar(item):
                    rows[f"{label(key)} [{label(str(sub))}]"] = fmt(item, key)
        elif _is_scalar(value):
            rows[label(key)] = fmt(value, key)
    table = pd.DataFrame({"value": list(rows.values())}, index=pd.Index(list(rows), name="quantity"))
    return table
