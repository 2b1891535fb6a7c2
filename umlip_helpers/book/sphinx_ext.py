"""The book's Sphinx extension (listed in ``_config.yml`` under ``sphinx.extra_extensions``), with two directives:
``{umlip-benchmark-results}`` renders ``benchmarks/results/`` by study each time the book is built, and
``{umlip-model-table}`` renders the model registry.

Results layout: ``benchmarks/results/<script>.json`` is a study's headline, ``benchmarks/results/<script>/*.json`` its
variants and explorations. A file belongs to the script its provenance records (``provenance.script``, written by
:func:`umlip_helpers.io.benchmark_provenance`), else to the script its location names. The page has one section per
page of the book (the notebook a study belongs to, :data:`STUDY_PAGES`), one subsection per ``benchmarks/*.py``: its
title (the docstring's first line), the headline's main numbers with units, its plot where there is one, its
provenance (date, command line, machine), and one line per variant; a script with no result reads "not yet run"."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from docutils import nodes

RESULTS_DOC = "book/results"
RESULTS_DIR = "benchmarks/results"

#: the page of the book that each study belongs to; a script not listed here goes to the notebook that names
#: ``benchmarks/<script>.py``, else under "Other benchmarks"
STUDY_PAGES = {
    "delta_elements": "notebooks/01_ni_eos",
    "ni_properties": "notebooks/02_ni_properties",
    "foundation_errors": "notebooks/04_ymno3_finetune",
    "finetune_ymno3": "notebooks/04_ymno3_finetune",
    "finetune_batching": "notebooks/04_ymno3_finetune",
    "md_throughput": "notebooks/05_tobermorite_md",
    "active_learning": "notebooks/06_active_learning",
    "active_learning_prior": "notebooks/06_active_learning",
    "active_learning_matched_prior": "notebooks/06_active_learning",
    "prior_curvature": "notebooks/06_active_learning",
    "periodic_vs_naive": "notebooks/07_periodic_finetuning",
    "distillation": "notebooks/08_distillation",
    "phonon_finetune": "notebooks/09_phonon_finetune",
    "finetune_scaling": "book/gpu_and_hpc",
}
OTHER_PAGE = "Other benchmarks"

#: the numbers that stand for a result: first in its headline's summary, and on each variant's line.
#: A path is dotted keys; ``*`` takes every entry of a dict (labelled by its key) or list (by its name field).
KEY_NUMBERS: dict[str, list[str]] = {
    "active_learning": ["summary.parent_calls_percent_of_bfgs", "summary.fraction_within_0p02_ev"],
    "active_learning_matched_prior": ["summary.parent_calls_percent_of_bfgs", "summary.fraction_within_0p02_ev"],
    "active_learning_prior": ["runs.*.summary.parent_calls_percent_of_bfgs"],
    "prior_curvature": ["summary.median_newton_contraction", "summary.spearman_contraction_vs_active_parent_calls"],
    "delta_elements": ["models.*.mean_delta_mev_per_atom"],
    "ni_properties": ["models.*.properties.C44.percent_error"],
    "foundation_errors": ["models.*.force_mae_ev_per_angstrom"],
    "finetune_ymno3": ["results.*.test_before.forces_mae_ev_per_angstrom",
                       "results.*.test_after.forces_mae_ev_per_angstrom"],
    "finetune_batching": ["rows.*.speedup"],
    "md_throughput": ["overhead.*.ratio_run_md_over_bare"],
    "periodic_vs_naive": ["force_mae_ratio_periodic_over_naive", "abs_energy_error_ratio_periodic_over_naive"],
    "distillation": ["headline.md_speedup_student_over_teacher", "headline.force_mae_ratio_student_to_teacher"],
    "phonon_finetune": ["models.*.mae_ratio_finetuned_over_base"],
    "finetune_scaling": ["runs.*.speedup_over_baseline"],
}

#: the columns of a headline's record tables, where the default (every scalar field, at most MAX_COLUMNS) reads badly
COLUMNS: dict[str, dict[str, list[str]]] = {
    "active_learning": {"systems": ["system", "n_atoms", "baseline_parent_calls", "gpmin_parent_calls",
                                    "active_parent_calls", "parent_calls_percent", "energy_difference_ev",
                                    "active_converged", "wall_seconds"]},
    "active_learning_matched_prior": {"systems": ["system", "prior_error_base", "prior_error_matched",
                                                  "baseline_parent_calls", "gpmin_parent_calls",
                                                  "active_parent_calls", "sevennet0_learner_parent_calls",
                                                  "energy_difference_ev", "active_converged"]},
    "active_learning_prior": {"runs": ["lambda", "rules", "summary.n_systems", "summary.active_parent_calls",
                                       "summary.baseline_parent_calls", "summary.parent_calls_percent_of_bfgs",
                                       "summary.fraction_within_0p02_ev",
                                       "summary.median_prior_force_error_mean_ev_per_angstrom"]},
    "prior_curvature": {"systems": ["system", "baseline_parent_calls", "active_parent_calls",
                                    "relative_hessian_error", "newton_contraction"]},
    "delta_elements": {"models": ["mean_delta_mev_per_atom", "median_delta_mev_per_atom", "n_elements",
                                  "ni.a0_angstrom", "ni.b0_gpa", "ni.delta_mev_per_atom", "s_per_call",
                                  "speed_relative_to_first_model"]},
    "foundation_errors": {"models": ["model", "energy_mae_aligned_mev_per_atom", "force_mae_ev_per_angstrom",
                                     "force_rmse_ev_per_angstrom", "force_cosine_mean", "stress_mae_gpa",
                                     "seconds_per_frame", "time_ratio_to_sevennet_0"]},
    "finetune_ymno3": {"results": ["model", "strategy", "n_train", "n_test", "test_before.forces_mae_ev_per_angstrom",
                                   "test_after.forces_mae_ev_per_angstrom", "test_before.stress_mae_gpa",
                                   "test_after.stress_mae_gpa", "test_after.energy_mae_mev_per_atom",
                                   "seconds_per_epoch"],
                       "step_cost": ["model", "n_atoms", "inference_s", "train_forward_s", "train_backward_s",
                                     "train_step_over_inference"]},
    "finetune_batching": {"rows": ["frames", "batch_size", "per_frame_seconds_per_step", "batched_seconds_per_step",
                                   "speedup", "loss_max_relative_difference"]},
    "md_throughput": {"overhead": ["system", "n_atoms", "steps", "ratio_run_md_over_bare", "ratio_paired_cpu_median",
                                   "ratio_min_wall", "control_bare_over_bare_cpu"]},
    "periodic_vs_naive": {"runs": ["seed", "forces_mae_ev_per_angstrom.naive", "forces_mae_ev_per_angstrom.periodic",
                                   "force_mae_ratio_periodic_over_naive", "energy_error_mev_per_atom.naive",
                                   "energy_error_mev_per_atom.periodic", "pca_coverage_fraction.naive",
                                   "pca_coverage_fraction.periodic", "wall_seconds"]},
    "distillation": {"students": ["architecture", "n_parameters", "epochs_run", "force_mae_vs_dft_ev_per_angstrom",
                                  "force_mae_ratio_student_to_teacher", "md_ms_per_step.unit_cell",
                                  "md_speedup_over_teacher.unit_cell", "meets_targets.speed",
                                  "meets_targets.accuracy"]},
    "phonon_finetune": {"models": ["base_model", "frequency_mae_thz_base", "frequency_mae_thz_finetuned",
                                   "mae_ratio_finetuned_over_base", "mean_frequency_ratio_base",
                                   "mean_frequency_ratio_finetuned", "forces_mae_ev_per_angstrom_base",
                                   "forces_mae_ev_per_angstrom_finetuned", "finetune_seconds"]},
}

#: top-level keys that are not results (shown elsewhere, or only in the JSON)
SKIP_KEYS = {"provenance", "benchmark", "command", "profile", "note", "co_geometry_note", "noise", "settings",
             "targets", "uncertainty_points", "variants", "update_comparison", "gpaw", "data", "labels", "speed",
             "elements", "pretraining", "complete"}
#: fields that identify a record, in order of preference
NAME_FIELDS = ("name", "model", "system", "architecture", "frames", "base_model", "seed", "lambda")
MAX_COLUMNS = 9
#: a record table longer than this is collapsed (a <details> block)
COLLAPSE_ROWS = 8
#: a study with more variants than this lists them collapsed
COLLAPSE_VARIANTS = 6

Status = Literal["ok", "not yet run", "unreadable", "no headline"]


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]
    collapsed: bool = False


@dataclass
class ResultFile:
    path: str  # relative to the root: benchmarks/results/<script>[/<variant>].json
    script: str  # the stem of the script it belongs to
    data: dict | None = None
    error: str = ""

    @property
    def provenance(self) -> dict:
        prov = self.data.get("provenance") if isinstance(self.data, dict) else None
        return prov if isinstance(prov, dict) else {}

    @property
    def variant(self) -> str:
        return Path(self.path).stem

    def command(self) -> str:
        """The command line that made it: the recorded argv, else an older file's ``command``, else ""."""
        argv = self.provenance.get("argv")
        if isinstance(argv, list) and argv:
            return shlex.join(str(a) for a in argv)
        command = self.data.get("command") if isinstance(self.data, dict) else None
        return command if isinstance(command, str) else ""

    def profile(self) -> str:
        data = self.data if isinstance(self.data, dict) else {}
        value = data.get("profile") or self.provenance.get("parameters", {}).get("profile")
        return value if isinstance(value, str) else ""


@dataclass
class Study:
    script: str
    title: str
    page: str  # a doc name such as notebooks/01_ni_eos, or OTHER_PAGE
    status: Status
    headline: ResultFile | None = None
    tables: list[Table] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    variants: list[ResultFile] = field(default_factory=list)
    note: str = ""


# ---------------------------------------------------------------- formatting


def _fmt(value: Any) -> str:
    """Numbers to 4 significant digits (integers whole, thousands separated), the rest as text."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.3g}"
    return str(value)


#: key suffixes and the units they name (longest first)
UNITS = [("_mev_per_atom", "meV/atom"), ("_ev_per_angstrom2", "eV/Å²"), ("_ev_per_angstrom", "eV/Å"),
         ("_angstrom3_per_atom", "Å³/atom"), ("_angstrom", "Å"), ("_gpa", "GPa"), ("_mj_m2", "mJ/m²"),
         ("_thz", "THz"), ("_ev", "eV"), ("_seconds", "s"), ("_cpu_s", "s CPU"), ("_wall_s", "s wall"),
         ("_per_s", "/s"), ("_s", "s"), ("_ms", "ms"), ("_mb", "MB"), ("_fs", "fs"), ("_k", "K")]
WORDS = {"mae": "MAE", "rmse": "RMSE", "bfgs": "BFGS", "gpmin": "GPMin", "pca": "PCA", "md": "MD", "dft": "DFT",
         "gp": "GP", "0p02eV": "0.02 eV", "sevennet0": "SevenNet-0", "ni": "Ni", "b0": "B0", "a0": "a0", "v0": "V0",
         "lambda": "λ", "percent": "%"}


def label(key: str) -> str:
    """A column name from a JSON key with its unit: ``force_mae_ev_per_angstrom`` -> ``force MAE (eV/Å)``;
    dotted paths keep their last two parts (``test_after.forces_mae_ev_per_angstrom`` -> after: forces MAE)."""
    parts = key.split(".")
    if len(parts) > 1 and parts[-1] == "percent_error":
        return f"{parts[-2]} error (%)"
    if len(parts) > 1:
        head = parts[-2].replace("test_", "")
        last = label(parts[-1])
        return last if head in ("summary", "headline") else f"{last} [{head.replace('_', ' ')}]"
    key = key.replace("0p02_ev", "0p02eV")
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
        bits = [f"{WORDS.get(f, f)} {record[f]}" if f in ("lambda", "seed") else str(record[f])
                for f in NAME_FIELDS if f in record and not isinstance(record[f], (dict, list))]
        extra = [f"{record[k]}" for k in ("strategy", "rules") if k in record]
        extra += [f"batch {record['batch_size']}"] if "batch_size" in record else []
        extra += [f"{record['threads']} thread(s)"] if "threads" in record else []
        if bits:
            return " ".join([bits[0], *extra])
    return f"#{index + 1}"


def key_numbers(script: str, data: Any) -> list[tuple[str, str]]:
    """The (label, value) pairs of KEY_NUMBERS[script] found in ``data``."""
    out = []
    for path in KEY_NUMBERS.get(script, []):
        head, star, tail = path.partition(".*.")
        if not star:
            value = _get(data, path)
            if isinstance(value, (int, float)) and value is not None:
                out.append((label(path), _fmt(value)))
            continue
        values = [(name, _get(record, tail)) for name, record in _entries(_get(data, head))]
        values = [(name, v) for name, v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if values:
            out.append((label(tail), ", ".join(f"{name} {_fmt(v)}" for name, v in values)))
    if not out and isinstance(data, dict):  # a result of another shape: its first two summary numbers
        block = data.get("summary") or data.get("headline") or {}
        numbers = [(k, v) for k, v in block.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        out = [(label(k), _fmt(v)) for k, v in numbers[:2]] if isinstance(block, dict) else []
    return out


# ---------------------------------------------------------------- headline tables


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= 40)


def _hidden(key: str) -> bool:
    return any(bit in key for bit in ("sha256", "checkpoint", "model_dir", "source", "created_utc", "dir"))


def _summary_rows(script: str, data: dict) -> list[list[str]]:
    """quantity | value: the key numbers, then the scalars of ``summary``/``headline`` and the top level, and small
    dicts of scalars (such as one number per workflow)."""
    rows = [[name, value] for name, value in key_numbers(script, data) if "," not in value]
    seen = {r[0] for r in rows}

    def add(key: str, value: Any, name: str | None = None) -> None:
        text = name or label(key)
        if text not in seen and not _hidden(key):
            seen.add(text)
            rows.append([text, _fmt(value)])

    for block in ("headline", "summary"):
        for key, value in (data.get(block) or {}).items() if isinstance(data.get(block), dict) else ():
            if _is_scalar(value):
                add(key, value)
            elif isinstance(value, dict) and len(value) <= 4 and all(_is_scalar(v) for v in value.values()):
                for sub, item in value.items():
                    add(f"{key}_{sub}", item, f"{label(key)} [{sub.replace('_', ' ')}]")
    for key, value in data.items():
        if key in SKIP_KEYS or key in ("summary", "headline"):
            continue
        if _is_scalar(value):
            add(key, value)
        elif isinstance(value, dict) and 0 < len(value) <= 4 and all(_is_scalar(v) for v in value.values()):
            for sub, item in value.items():
                add(f"{key}_{sub}", item, f"{label(key)} [{sub.replace('_', ' ')}]")
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
            cells.append(_fmt(entry.get("value")) + (f" ({error:+.0f} %)" if isinstance(error, (int, float)) else ""))
        rows.append([f"{prop} ({unit})" if unit else prop, _fmt(first.get("reference")), *cells])
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
    header = (["name"] if named else []) + [label(c) if c not in NAME_FIELDS else c for c in columns]
    rows = []
    for name, record in records:
        cells = [_fmt(_get(record, c)) if _is_scalar(_get(record, c)) else "…" for c in columns]
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
        if key in SKIP_KEYS or key in ("summary", "headline") or not _is_records(value):
            continue
        table = _record_table(script, key, value)
        if table:
            tables.append(table)
    return tables


# ---------------------------------------------------------------- collecting files and studies


def _script_title(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text()))
    except (OSError, SyntaxError, ValueError):
        doc = None
    first = " ".join((doc or path.stem).strip().split("\n\n")[0].split())
    first = re.sub(r":\w+:`~?([^`]+)`", r"\1", first).replace("``", "")
    first = re.split(r"(?<=[a-z0-9)][.?]) ", first)[0].rstrip(".")
    if len(first) > 110:  # the title is the first clause of a long sentence
        cuts = [i for i in (first.find(": "), first.find(" ("), first.find("; "), first.find(", ")) if i > 20]
        first = first[: min(cuts)] if cuts else first[:110] + "…"
    return first


def result_files(root: str | Path) -> list[ResultFile]:
    """Every JSON under benchmarks/results/, with the script it belongs to: the recorded ``provenance.script``,
    else its location (``results/<script>.json`` or ``results/<script>/...``)."""
    root = Path(root)
    results = root / RESULTS_DIR
    out = []
    for path in sorted(results.rglob("*.json")):
        rel = path.relative_to(results)
        by_location = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            out.append(ResultFile(path.relative_to(root).as_posix(), by_location, None, f"{type(exc).__name__}: {exc}"))
            continue
        item = ResultFile(path.relative_to(root).as_posix(), by_location, data)
        recorded = item.provenance.get("script")
        if isinstance(recorded, str) and recorded.endswith(".py"):
            item.script = Path(recorded).stem
        out.append(item)
    return out


def _page_for(root: Path, script: str, mentions: dict[str, str]) -> str:
    if script in STUDY_PAGES:
        return STUDY_PAGES[script]
    needle = f"benchmarks/{script}.py"
    return next((page for page, text in mentions.items() if needle in text), OTHER_PAGE)


def _plots(root: Path, headline: ResultFile) -> list[str]:
    """png files named in the headline's JSON, or beside it with its name (results/<script>.png, results/<script>/
    *.png is a variant's)."""
    found = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and value.endswith(".png"):
            for candidate in (root / value, root / Path(headline.path).parent / value):
                if candidate.is_file():
                    found.append(candidate.relative_to(root).as_posix() if candidate.is_relative_to(root)
                                 else str(candidate))
                    break

    walk(headline.data)
    beside = root / Path(headline.path).with_suffix(".png")
    if beside.is_file():
        found.append(beside.relative_to(root).as_posix())
    return list(dict.fromkeys(found))


def benchmark_studies(root: str | Path) -> list[Study]:
    """One Study per ``benchmarks/*.py`` (and one per script that results name but that is gone), in page order,
    with its headline rendered as tables and its variants; every JSON under results/ is in exactly one study."""
    root = Path(root)
    scripts = {p.stem: p for p in sorted((root / "benchmarks").glob("*.py")) if not p.name.startswith("_")}
    files = result_files(root)
    by_script: dict[str, list[ResultFile]] = {}
    for item in files:
        by_script.setdefault(item.script, []).append(item)
    mentions = {}
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        try:
            mentions[f"notebooks/{nb.stem}"] = nb.read_text()
        except OSError:
            pass
    studies = []
    for script in sorted(set(scripts) | set(by_script)):
        mine = by_script.get(script, [])
        headline_path = f"{RESULTS_DIR}/{script}.json"
        headline = next((f for f in mine if f.path == headline_path), None)
        study = Study(script, _script_title(scripts[script]) if script in scripts else script,
                      _page_for(root, script, mentions), "ok",
                      headline=headline, variants=[f for f in mine if f is not headline])
        if script not in scripts:
            study.note = f"benchmarks/{script}.py is gone; its results are kept"
        if headline is None:
            study.status = "no headline" if mine else "not yet run"
            study.note = study.note or (f"python benchmarks/{script}.py" if not mine else
                                        f"no {headline_path}; the variants below")
        elif headline.data is None:
            study.status, study.note = "unreadable", f"{headline.path}: {headline.error}"
        else:
            study.tables = headline_tables(script, headline.data)
            study.plots = _plots(root, headline)
        studies.append(study)
    order = sorted({s.page for s in studies}, key=lambda p: (p == OTHER_PAGE, p.startswith("book/"), p))
    return sorted(studies, key=lambda s: (order.index(s.page), s.script))


def page_title(root: str | Path, page: str) -> str:
    """The first heading of a page of the book (notebook or markdown), else its name."""
    root = Path(root)
    try:
        if page.startswith("notebooks/"):
            cells = json.loads((root / f"{page}.ipynb").read_text())["cells"]
            text = "".join(cells[0]["source"])
        else:
            text = (root / f"{page}.md").read_text()
        match = re.search(r"^#\s+(.+)$", text, re.M)
        return match.group(1).strip() if match else page
    except (OSError, ValueError, KeyError, IndexError):
        return page


# Kept for callers of the flat page: the old names of the table-per-file API.
BenchmarkTable = Study
benchmark_tables = benchmark_studies


# ---------------------------------------------------------------- docutils


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


def _collapsible(summary: str, children: list) -> list:
    """children inside an HTML <details> (raw html around them; other builders show them open)."""
    from docutils import nodes

    return [nodes.raw("", f"<details class=\"umlip-details\"><summary>{summary}</summary>", format="html"),
            *children, nodes.raw("", "</details>", format="html")]


def _provenance_text(item: ResultFile) -> str:
    prov = item.provenance
    bits = []
    if item.profile():
        bits.append(f"profile {item.profile()}")
    if prov.get("created_utc"):
        bits.append(str(prov["created_utc"]).replace("T", " ").replace("+00:00", " UTC"))
    model = prov.get("model")
    name = model.get("name") if isinstance(model, dict) else model
    if name:
        bits.append(f"model {name}")
    machine = ", ".join(str(prov[k]) for k in ("host", "cpu") if prov.get(k))
    device = (prov.get("parameters") or {}).get("device_name") if isinstance(prov.get("parameters"), dict) else None
    if device and device != "cpu":
        machine += f", {device}"
    if machine:
        bits.append(f"machine {machine}")
    return "; ".join(bits)


class _BenchmarkResults:
    """The ``{umlip-benchmark-results}`` directive: benchmarks/results/ by study, read at build time (mixed into
    Sphinx's ``SphinxDirective`` by :func:`_results_directive`, so that this module imports without Sphinx)."""

    def _root(self) -> Path:
        return Path(self.config.umlip_results_root or self.env.srcdir)

    def _link(self, root: Path, rel: str, text: str, page: bool = False):
        """A link from this page to a file of the checkout (or, page=True, to a page of the book)."""
        here = Path(self.env.app.outdir) / Path(self.env.docname).parent
        if page:
            target = os.path.relpath(Path(self.env.app.outdir) / f"{rel}.html", here)
        else:
            target = os.path.relpath(root / rel, here)
        return nodes.reference("", text, refuri=Path(target).as_posix())

    def _section(self, title: str, ident: str, title_node=None):
        section = nodes.section(ids=[nodes.make_id(ident)], names=[nodes.fully_normalize_name(ident)])
        section += title_node or nodes.title(text=title)
        return section

    def run(self):
        root = self._root()
        studies = benchmark_studies(root)
        out: list = [self._overview(studies)]
        pages = list(dict.fromkeys(s.page for s in studies))
        for page in pages:
            title = OTHER_PAGE if page == OTHER_PAGE else page_title(root, page)
            heading = nodes.title()
            if page == OTHER_PAGE:
                heading += nodes.Text(title)
            else:
                heading += self._link(root, page, title, page=True)
            section = self._section(title, f"results-{page}", heading)
            for study in (s for s in studies if s.page == page):
                section += self._study(root, study)
            out.append(section)
        return out

    def _overview(self, studies: list[Study]):
        rows = []
        for s in studies:  # the first key number of each, at most three entries of a per-model list
            numbers = key_numbers(s.script, s.headline.data)[:1] if s.status == "ok" else []
            text = s.status if s.status != "ok" else "see below"
            if numbers:
                name, value = numbers[0]
                parts = value.split(", ")
                text = f"{name}: " + ", ".join(parts[:3]) + (", …" if len(parts) > 3 else "")
            profile = s.headline.profile() if s.status == "ok" else ""
            rows.append([s.script, text, profile])
        return _docutils_table(["study", "headline number", "profile"], rows)

    def _study(self, root: Path, study: Study):
        section = self._section(study.title, f"study-{study.script}")
        para = nodes.paragraph()
        para += nodes.literal(text=f"benchmarks/{study.script}.py")
        if study.status == "ok":
            para += nodes.Text(" · headline ")
            para += self._link(root, study.headline.path, Path(study.headline.path).name)
        section += para
        if study.status != "ok":
            para = nodes.paragraph(classes=["umlip-not-run"])
            para += nodes.strong(text=f"{study.status}: ")
            para += nodes.literal(text=study.note) if study.status == "not yet run" else nodes.Text(study.note)
            section += para
        for key in ("note", "co_geometry_note"):
            text = study.headline.data.get(key) if study.status == "ok" else None
            if isinstance(text, str) and text:
                note = nodes.paragraph(classes=["umlip-note"])
                note += nodes.emphasis(text=f"Note: {text}")
                section += note
        for table in study.tables:
            children = [nodes.paragraph(text=f"{table.caption}:"), _docutils_table(table.header, table.rows)] \
                if not table.collapsed else [_docutils_table(table.header, table.rows)]
            section += _collapsible(f"{table.caption}: show the table", children) if table.collapsed else children
        for plot in study.plots:
            here = Path(self.env.app.outdir) / Path(self.env.docname).parent
            src = Path(os.path.relpath(root / plot, here)).as_posix()
            section += nodes.raw("", f'<img class="umlip-plot" src="{src}" alt="{plot}" style="max-width:100%">',
                                 format="html")
        if study.status == "ok":
            prov = nodes.paragraph(classes=["umlip-provenance"])
            prov += nodes.Text(f"Provenance: {_provenance_text(study.headline)}; command ")
            prov += nodes.literal(text=study.headline.command() or "not recorded")
            section += prov
        if study.variants:
            items = nodes.bullet_list()
            for variant in study.variants:
                items += self._variant(root, variant)
            caption = f"{len(study.variants)} variant{'s' if len(study.variants) > 1 else ''}"
            if len(study.variants) > COLLAPSE_VARIANTS:
                section += _collapsible(f"{caption}: show the list", [items])
            else:
                section += [nodes.paragraph(text=f"{caption}:"), items]
        return section

    def _variant(self, root: Path, item: ResultFile):
        para = nodes.paragraph()
        para += self._link(root, item.path, item.path.removeprefix(f"{RESULTS_DIR}/"))
        if item.data is None:
            para += nodes.Text(f": unreadable ({item.error})")
        else:
            command = item.command()
            if command:
                para += nodes.Text(": ")
                para += nodes.literal(text=command)
            numbers = key_numbers(item.script, item.data)
            model = item.provenance.get("model")
            model = model.get("name") if isinstance(model, dict) else model
            bits = [f"profile {item.profile()}" if item.profile() and not command else "",
                    f"model {model}" if model and not command else "",
                    *(f"{k} {v}" for k, v in numbers),
                    str(item.provenance.get("created_utc", ""))[:10]]
            text = "; ".join(b for b in bits if b)
            if text:
                para += nodes.Text((", " if command else ": ") + text)
        entry = nodes.list_item()
        entry += para
        return entry



def _results_directive():
    from sphinx.util.docutils import SphinxDirective

    return type("BenchmarkResults", (_BenchmarkResults, SphinxDirective), {})


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
    app.add_config_value("umlip_results_root", None, "env")  # the checkout holding benchmarks/ (default: srcdir)
    app.add_directive("umlip-benchmark-results", _results_directive())
    app.add_directive("umlip-model-table", _model_table_directive())
    app.connect("env-get-outdated", _results_always_outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
