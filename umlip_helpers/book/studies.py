"""The benchmark results as studies: every JSON under ``benchmarks/results/`` in exactly one :class:`Study`.

Results layout: ``benchmarks/results/<script>.json`` is a study's headline, ``benchmarks/results/<script>/*.json`` its
variants and explorations. A file belongs to the script its provenance records (``provenance.script``, written by
:func:`umlip_helpers.io.benchmark_provenance`), else to the script its location names. Each study belongs to a page of
the book (the notebook it illustrates, :data:`STUDY_PAGES`) and has its title (the script docstring's first line), its
headline rendered as tables (:mod:`.result_tables`), its plots and its variants; a script with no result reads
"not yet run"."""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .result_tables import Table, headline_tables

RESULTS_DIR = "benchmarks/results"

#: the page of the book that each study belongs to; a script not listed here goes to the notebook that names
#: ``benchmarks/<script>.py``, else under "Other benchmarks"
STUDY_PAGES = {
    "delta_elements": "notebooks/01_ni_eos",
    "ni_properties": "notebooks/02_ni_properties",
    "foundation_errors": "notebooks/04_ymno3_finetune",
    "finetune_ymno3": "notebooks/04_ymno3_finetune",
    "finetune_batching": "notebooks/04_ymno3_finetune",
    "finetune_vs_native": "notebooks/04_ymno3_finetune",
    "finetune_forgetting": "notebooks/04_ymno3_finetune",
    "ni_finetune": "notebooks/02_ni_properties",
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


def shown_command(argv: list) -> str:
    """A recorded command line as the book shows it: an absolute path (a scratch folder of the machine that ran it)
    as ``…/`` and its last part, so that no machine path reaches the rendered book."""
    return " ".join(f"…/{PurePosixPath(a).name}" if str(a).startswith("/") else shlex.quote(str(a)) for a in argv)


Status = Literal["ok", "not yet run", "unreadable", "no headline"]


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
            return shown_command(argv)
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
