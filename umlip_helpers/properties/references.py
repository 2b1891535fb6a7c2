"""Comparison with the literature: the tables in ``data/references`` (quantity, value, unit, method, source, one
DOI each, or for values computed here the committed data directory and the script that derives them), the preferred
reference of a quantity and the percent error of a computed value, and one row per property of the eos, elastic,
phonon, vacancy, stacking-fault, surface and Σ3-twin results.

``ni_gpaw_pbe.csv`` (GPAW PBE values of this book, from data/ni/gpaw_pbe) is read last, so a literature row stays
the preferred reference where one exists. Its rigid or unrelaxed values have their own quantity names
(``gsf_rigid_u0.500``, ``surface_energy_111_unrelaxed``, ...) and are compared only with a model's rigid or
unrelaxed value of the same structure (see RIGID_COMPARISONS), never with a relaxed one."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ..paths import data_path
from ..results import Result

#: literature tables (quantity, value, unit, method, source), read in this order
REFERENCE_DIR = data_path("references")
LITERATURE_FILES = ("ni_literature.csv", "ni_defects_alloys_literature.csv", "ni_gpaw_pbe.csv")


def literature_values(files: Sequence[str | Path] = LITERATURE_FILES) -> dict[str, list[dict]]:
    """Rows of the literature tables in data/references grouped by quantity, in file order (the first row of a
    quantity is the preferred reference). Rows without a value ("missing") are kept with ``value`` None."""
    table: dict[str, list[dict]] = {}
    for name in files:
        path = Path(name) if Path(name).is_absolute() else REFERENCE_DIR / name
        with open(path, newline="") as handle:
            lines = [line for line in handle if not line.startswith("#")]
        for row in csv.DictReader(lines):
            value = row["value"].strip()
            table.setdefault(row["quantity"], []).append(
                {**row, "value": float(value) if value else None, "file": path.name})
    return table


def compare_to_reference(quantity: str, value: float, table: dict[str, list[dict]] | None = None) -> dict:
    """{value, reference, percent_error, unit, method, source} for the preferred reference of ``quantity``;
    reference and percent_error are None when data/references holds no value for it."""
    rows = [r for r in (table if table is not None else literature_values()).get(quantity, [])
            if r["value"] is not None]
    if not rows:
        return {"value": value, "reference": None, "percent_error": None, "unit": None, "method": None,
                "source": "no reference in data/references"}
    ref = rows[0]
    return {"value": value, "reference": ref["value"], "percent_error": 100 * (value - ref["value"]) / ref["value"],
            "unit": ref["unit"], "method": ref["method"], "source": ref["source"]}


def _phonon_branch(result, label: str, branch: str) -> float:
    frequencies = np.sort(np.asarray(result.qpoint_frequencies_thz[label]))
    return float(frequencies[0] if branch == "TA" else frequencies[-1])


#: (quantity in data/references, unit, result key, reader)
COMPARISONS = (
    ("a0", "Å", "eos", lambda r: r.a0_angstrom),
    ("B0", "GPa", "eos", lambda r: r.b0_gpa),
    ("C11", "GPa", "elastic", lambda r: r.c11_gpa),
    ("C12", "GPa", "elastic", lambda r: r.c12_gpa),
    ("C44", "GPa", "elastic", lambda r: r.c44_gpa),
    ("phonon_X_TA", "THz", "phonons", lambda r: _phonon_branch(r, "X", "TA")),
    ("phonon_X_LA", "THz", "phonons", lambda r: _phonon_branch(r, "X", "LA")),
    ("phonon_L_TA", "THz", "phonons", lambda r: _phonon_branch(r, "L", "TA")),
    ("phonon_L_LA", "THz", "phonons", lambda r: _phonon_branch(r, "L", "LA")),
    ("vacancy_formation_energy", "eV", "vacancy", lambda r: r.e_vac_ev),
    ("isf_energy", "mJ/m^2", "stacking_fault", lambda r: r.isf_mj_m2),
    ("usf_energy", "mJ/m^2", "stacking_fault", lambda r: r.usf_mj_m2),
    ("surface_energy_111", "J/m^2", "surfaces", lambda r: r.gamma_j_m2.get("111")),
    ("surface_energy_100", "J/m^2", "surfaces", lambda r: r.gamma_j_m2.get("100")),
    ("surface_energy_110", "J/m^2", "surfaces", lambda r: r.gamma_j_m2.get("110")),
)


def _rigid_gamma(result, fraction: float) -> float | None:
    """A stacking-fault result's rigid (unrelaxed) γ at slip ``fraction`` of the partial, None if not sampled."""
    fractions = np.asarray(result.displacement_angstrom) / result.partial_burgers_angstrom
    hit = np.flatnonzero(np.isclose(fractions, fraction, atol=1e-6))
    return float(np.asarray(result.gamma_unrelaxed_mj_m2)[hit[0]]) if hit.size else None


def _unrelaxed_vacancy(result, n_atoms: int = 32) -> float | None:
    """A vacancy result's unrelaxed E_vac in the supercell of ``n_atoms`` sites, None if it has no such cell."""
    sizes = list(result.n_atoms)
    return float(result.e_vac_unrelaxed_by_size_ev[sizes.index(n_atoms)]) if n_atoms in sizes else None


def _rigid_twin(results: dict) -> float | None:
    """The Σ3(111) twin's rigid energy (its translation scan at the relaxed minimum's start, bulk spacing) from a
    ``grain_boundaries`` list or a ``gb_sigma3_111`` result, None if there is none."""
    found = list(results.get("grain_boundaries") or []) + [results.get("gb_sigma3_111")]
    twins = [r for r in found if r is not None and getattr(r, "boundary", None) == "sigma3_111"]
    return float(twins[0].energy_unrelaxed_mJ_per_m2) if twins else None


#: rigid/unrelaxed values of a model against the same rigid/unrelaxed DFT structure (ni_gpaw_pbe.csv):
#: (quantity, unit, result key or None for the whole results dict, reader)
RIGID_COMPARISONS = (
    ("gsf_rigid_u0.500", "mJ/m^2", "stacking_fault", lambda r: _rigid_gamma(r, 0.5)),
    ("gsf_rigid_u1.000", "mJ/m^2", "stacking_fault", lambda r: _rigid_gamma(r, 1.0)),
    ("surface_energy_111_unrelaxed", "J/m^2", "surfaces", lambda r: r.gamma_unrelaxed_j_m2.get("111")),
    ("vacancy_formation_energy_unrelaxed", "eV", "vacancy", _unrelaxed_vacancy),
    ("sigma3_twin_energy_rigid", "mJ/m^2", None, _rigid_twin),
)


def comparison_rows(results: dict[str, Result], table: dict[str, list[dict]] | None = None) -> list[dict]:
    """One row per property found in ``results`` (keys: eos, elastic, phonons, vacancy, stacking_fault, surfaces,
    and grain_boundaries or gb_sigma3_111 for the rigid twin), with the preferred literature reference and the
    percent error (None where data/references has no value). Relaxed values are compared with the relaxed
    quantities (COMPARISONS); rigid/unrelaxed ones (RIGID_COMPARISONS) only where data/references holds a value
    for that rigid quantity."""
    table = table if table is not None else literature_values()
    rows = []
    for quantity, unit, key, read in COMPARISONS:
        if key not in results:
            continue
        value = read(results[key])
        if value is None:
            continue
        rows.append({"property": quantity, **compare_to_reference(quantity, float(value), table), "unit": unit})
    for quantity, unit, key, read in RIGID_COMPARISONS:
        if (key is not None and key not in results) or not any(r["value"] is not None
                                                               for r in table.get(quantity, [])):
            continue
        value = read(results[key] if key is not None else results)
        if value is not None:
            rows.append({"property": quantity, **compare_to_reference(quantity, float(value), table), "unit": unit})
    return rows
