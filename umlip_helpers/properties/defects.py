"""Defects and surfaces of an elemental FCC crystal: vacancy formation energy (with supercell-size convergence),
the generalized stacking-fault curve on (111) along <112> (intrinsic and unstable stacking-fault energies),
surface energies of low-index facets, and adsorption energies of atoms at the sites of the (111) surface.

Every function takes the *relaxed* bulk crystal (relax it first with :func:`umlip_helpers.properties.relax.relax`)
and a calculator. A bulk cell that is far from zero pressure gets a warning, because every defect energy below is
referenced to its energy per atom or its lattice parameter.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
from ase import Atoms, units
from ase.build import add_adsorbate, fcc100, fcc110, fcc111, molecule
from ase.constraints import FixAtoms, FixedLine
from ase.data import atomic_numbers, covalent_radii
from tqdm.auto import tqdm

from ..io import provenance
from ..models import check_elements
from ..results import Result
from .relax import relax

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

Facet = Literal["111", "100", "110"]
Site = Literal["ontop", "bridge", "fcc", "hcp"]

#: 1 eV/Å^2 in J/m^2
EV_PER_A2_TO_J_PER_M2 = units._e * 1e20
#: above this |pressure| the bulk cell is reported as not relaxed
BULK_PRESSURE_WARNING_GPA = 1.0
#: literature tables (quantity, value, unit, method, source), read in this order
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "data" / "references"
LITERATURE_FILES = ("ni_literature.csv", "ni_defects_alloys_literature.csv")


# ------------------------------------------------------------------------------------------------- references
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


# ----------------------------------------------------------------------------------------------------- helpers
def _bulk_energy_per_atom(bulk: Atoms, calc: "Calculator", where: str) -> float:
    """Energy per atom of ``bulk``; warns when its pressure says it was not relaxed."""
    check_elements(bulk, calc, where=where)
    work = bulk.copy()
    work.calc = calc
    energy = float(work.get_potential_energy()) / len(work)
    pressure = -float(np.trace(work.get_stress(voigt=False))) / 3 / units.GPa
    if abs(pressure) > BULK_PRESSURE_WARNING_GPA:
        warnings.warn(f"{where}: the bulk cell is at {pressure:.2f} GPa with this calculator; relax it first "
                      "(properties.relax.relax) or the defect energies carry a strain error", RuntimeWarning,
                      stacklevel=3)
    return energy


def fcc_lattice_parameter(bulk: Atoms) -> tuple[str, float]:
    """(symbol, cubic lattice parameter in Å) of an elemental FCC crystal given in any cell; raises otherwise."""
    symbols = set(bulk.get_chemical_symbols())
    if len(symbols) != 1:
        raise ValueError(f"an elemental FCC crystal is expected, got the elements {sorted(symbols)}")
    a0 = (4 * bulk.get_volume() / len(bulk)) ** (1 / 3)
    big = bulk.repeat([max(1, math.ceil(6.0 / np.linalg.norm(v))) for v in bulk.cell])
    distances = big.get_all_distances(mic=True)
    nearest = distances[distances > 1e-6].min()
    if abs(nearest / (a0 / math.sqrt(2)) - 1) > 0.015:
        raise ValueError(f"the crystal is not FCC: nearest-neighbour distance {nearest:.3f} Å, "
                         f"but an FCC cell of this volume per atom would have {a0 / math.sqrt(2):.3f} Å")
    return symbols.pop(), a0


def _layers(atoms: Atoms, tolerance: float = 0.1) -> list[np.ndarray]:
    """Atom indices grouped by height (z), from bottom to top."""
    order = np.argsort(atoms.positions[:, 2])
    layers, current = [], [order[0]]
    for index in order[1:]:
        if atoms.positions[index, 2] - atoms.positions[current[-1], 2] > tolerance:
            layers.append(np.array(current))
            current = []
        current.append(index)
    layers.append(np.array(current))
    return layers


def _plane_area(atoms: Atoms) -> float:
    return float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))


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


def comparison_rows(results: dict[str, Result], table: dict[str, list[dict]] | None = None) -> list[dict]:
    """One row per property found in ``results`` (keys: eos, elastic, phonons, vacancy, stacking_fault, surfaces),
    with the preferred literature reference and the percent error (None where data/references has no value)."""
    table = table if table is not None else literature_values()
    rows = []
    for quantity, unit, key, read in COMPARISONS:
        if key not in results:
            continue
        value = read(results[key])
        if value is None:
            continue
        rows.append({"property": quantity, **compare_to_reference(quantity, float(value), table), "unit": unit})
    return rows


# ----------------------------------------------------------------------------------------------------- vacancy
@dataclasses.dataclass(frozen=True)
class VacancyResult(Result):
    """Vacancy formation energy E_vac = E(N-1) - (N-1)/N E(N) for each supercell; ``e_vac_ev`` is the largest."""

    e_vac_ev: float
    n_atoms: tuple[int, ...]
    e_vac_by_size_ev: tuple[float, ...]
    e_vac_unrelaxed_by_size_ev: tuple[float, ...]
    relaxed: bool
    provenance: dict

    summary_fields = ("e_vac_ev", "n_atoms", "e_vac_by_size_ev")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        inverse = 1 / np.asarray(self.n_atoms)
        ax.plot(inverse, self.e_vac_by_size_ev, "o-", label="relaxed" if self.relaxed else "unrelaxed")
        if self.relaxed:
            ax.plot(inverse, self.e_vac_unrelaxed_by_size_ev, "s--", alpha=0.6, label="unrelaxed")
        ax.set_xlabel("1 / N (atoms in the perfect supercell)")
        ax.set_ylabel("E_vac (eV)")
        ax.set_xlim(left=0)
        ax.legend()
        ax.set_title(f"vacancy formation energy: {self.e_vac_ev:.3f} eV at N = {self.n_atoms[-1]}")
        return ax


def vacancy_formation_energy(
    bulk: Atoms,
    calc: "Calculator",
    *,
    sizes: Sequence[int] = (2, 3),
    relax_positions: bool = True,
    fmax: float = 0.01,
    steps: int = 300,
    progress: bool = True,
) -> VacancyResult:
    """Relaxed vacancy formation energy in ``bulk`` repeated ``n x n x n`` for each n in ``sizes``.

    The perfect supercell's energy is N times the bulk energy per atom (exact for a periodic calculator); the cell
    stays fixed (constant-volume vacancy, the usual dilute limit) and the positions relax to ``fmax`` (eV/Å).
    Compare the sizes to judge convergence: E_vac should change by little between the last two.
    """
    if not sizes or any(int(n) < 1 for n in sizes):
        raise ValueError(f"sizes must be positive integers, got {sizes}")
    sizes = sorted(int(n) for n in sizes)
    e_bulk = _bulk_energy_per_atom(bulk, calc, "vacancy_formation_energy")
    relaxed_values, unrelaxed_values, n_atoms = [], [], []
    for n in tqdm(sizes, desc="vacancy supercells", disable=not progress):
        cell = bulk.repeat((n, n, n))
        n_perfect = len(cell)
        if n_perfect < 8:
            raise ValueError(f"a {n}x{n}x{n} supercell has only {n_perfect} atoms; use a larger size")
        del cell[0]
        result = relax(cell, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False) if relax_positions \
            else None
        e_unrelaxed = _energy(cell, calc) if result is None else result.energy_initial_ev
        e_relaxed = e_unrelaxed if result is None else result.energy_ev
        reference = (n_perfect - 1) * e_bulk
        unrelaxed_values.append(e_unrelaxed - reference)
        relaxed_values.append(e_relaxed - reference)
        n_atoms.append(n_perfect)
    return VacancyResult(
        e_vac_ev=float(relaxed_values[-1]),
        n_atoms=tuple(n_atoms),
        e_vac_by_size_ev=tuple(float(v) for v in relaxed_values),
        e_vac_unrelaxed_by_size_ev=tuple(float(v) for v in unrelaxed_values),
        relaxed=relax_positions,
        provenance=provenance(calc, sizes=sizes, relax_positions=relax_positions, fmax=fmax, steps=steps,
                              bulk_formula=bulk.get_chemical_formula(), bulk_cell=bulk.cell.array),
    )


def _energy(atoms: Atoms, calc: "Calculator") -> float:
    work = atoms.copy()
    work.calc = calc
    return float(work.get_potential_energy())


# ------------------------------------------------------------------------------------------------ stacking fault
@dataclasses.dataclass(frozen=True)
class StackingFaultResult(Result):
    """Generalized stacking-fault curve on FCC (111) along <112>, from no slip to one Shockley partial a/sqrt(6).

    ``isf_mj_m2`` is the curve's end (the intrinsic stacking fault); ``usf_mj_m2`` its maximum (unstable stacking
    fault, refined by a parabola through the highest sampled point and its neighbours).
    """

    isf_mj_m2: float
    usf_mj_m2: float
    displacement_angstrom: np.ndarray
    gamma_mj_m2: np.ndarray
    gamma_unrelaxed_mj_m2: np.ndarray
    partial_burgers_angstrom: float
    n_layers: int
    a0_angstrom: float
    provenance: dict

    summary_fields = ("isf_mj_m2", "usf_mj_m2", "n_layers", "a0_angstrom")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        x = self.displacement_angstrom / self.partial_burgers_angstrom
        ax.plot(x, self.gamma_mj_m2, "o-", label="relaxed normal to the fault")
        ax.plot(x, self.gamma_unrelaxed_mj_m2, "s--", alpha=0.6, label="rigid shift")
        ax.axhline(self.isf_mj_m2, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("slip / b_p along <112>")
        ax.set_ylabel("γ (mJ/m²)")
        ax.set_title(f"ISF {self.isf_mj_m2:.0f}, USF {self.usf_mj_m2:.0f} mJ/m²")
        ax.legend()
        return ax


def _fcc111_column(symbol: str, a0: float, n_layers: int) -> Atoms:
    if n_layers < 6 or n_layers % 3:
        raise ValueError(f"n_layers must be a multiple of 3 and at least 6 (ABC stacking), got {n_layers}")
    return fcc111(symbol, size=(1, 2, n_layers), a=a0, orthogonal=True, periodic=True)


def _stacking_vector(column: Atoms) -> np.ndarray:
    """In-plane offset from one (111) layer to the next: shifting the crystal above a plane by it makes an ISF."""
    layers = _layers(column)
    first, second = column.positions[layers[0][0]], column.positions[layers[1]]
    cell2d = column.cell.array[:2, :2]
    best = None
    for position in second:
        delta = position[:2] - first[:2]
        fractional = np.linalg.solve(cell2d.T, delta)
        delta = (fractional - np.round(fractional)) @ cell2d
        for shift in np.array([[i, j] for i in (-1, 0, 1) for j in (-1, 0, 1)]) @ cell2d:
            candidate = delta + shift
            if best is None or np.linalg.norm(candidate) < np.linalg.norm(best):
                best = candidate
    return np.array([best[0], best[1], 0.0])


def generalized_stacking_fault(
    bulk: Atoms,
    calc: "Calculator",
    *,
    n_layers: int = 12,
    n_points: int = 9,
    relax_normal: bool = True,
    fmax: float = 0.01,
    steps: int = 300,
    progress: bool = True,
) -> StackingFaultResult:
    """Generalized stacking-fault energy of an elemental FCC crystal on (111) along <112>.

    A periodic column of ``n_layers`` (111) planes gets one fault per cell by tilting its third cell vector by the
    slip u (no free surfaces). With ``relax_normal`` each atom then relaxes only along the fault normal
    (ase FixedLine), as the GSF definition asks; the cell height stays fixed. γ(u) = (E(u) - E(0)) / area.
    """
    if n_points < 3:
        raise ValueError(f"n_points must be at least 3 (no slip, the unstable point, the ISF), got {n_points}")
    check_elements(bulk, calc, where="generalized_stacking_fault")
    symbol, a0 = fcc_lattice_parameter(bulk)
    column = _fcc111_column(symbol, a0, n_layers)
    partial = _stacking_vector(column)
    b_p = float(np.linalg.norm(partial))
    area = _plane_area(column)
    fractions = np.linspace(0.0, 1.0, n_points)
    relaxed, rigid = [], []
    for fraction in tqdm(fractions, desc="stacking-fault slips", disable=not progress):
        faulted = column.copy()
        cell = faulted.cell.array.copy()
        cell[2] += fraction * partial
        faulted.set_cell(cell, scale_atoms=False)
        if relax_normal:
            faulted.set_constraint(FixedLine(list(range(len(faulted))), direction=[0, 0, 1]))
            result = relax(faulted, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
            rigid.append(result.energy_initial_ev)
            relaxed.append(result.energy_ev)
        else:
            energy = _energy(faulted, calc)
            rigid.append(energy)
            relaxed.append(energy)
    to_mj = EV_PER_A2_TO_J_PER_M2 * 1e3 / area
    gamma = (np.asarray(relaxed) - relaxed[0]) * to_mj
    gamma_rigid = (np.asarray(rigid) - rigid[0]) * to_mj
    displacement = fractions * b_p
    return StackingFaultResult(
        isf_mj_m2=float(gamma[-1]),
        usf_mj_m2=_parabolic_peak(displacement, gamma),
        displacement_angstrom=displacement,
        gamma_mj_m2=gamma,
        gamma_unrelaxed_mj_m2=gamma_rigid,
        partial_burgers_angstrom=b_p,
        n_layers=n_layers,
        a0_angstrom=a0,
        provenance=provenance(calc, n_layers=n_layers, n_points=n_points, relax_normal=relax_normal, fmax=fmax,
                              steps=steps, symbol=symbol, a0_angstrom=a0),
    )


def _parabolic_peak(x: np.ndarray, y: np.ndarray) -> float:
    """Maximum of y(x): the parabola through the highest interior sample and its neighbours, else the sample."""
    top = int(np.argmax(y))
    if top in (0, len(y) - 1):
        return float(y[top])
    coefficients = np.polyfit(x[top - 1:top + 2], y[top - 1:top + 2], 2)
    if coefficients[0] >= 0:
        return float(y[top])
    return float(max(y[top], np.polyval(coefficients, -coefficients[1] / (2 * coefficients[0]))))


# ---------------------------------------------------------------------------------------------------- surfaces
@dataclasses.dataclass(frozen=True)
class SurfaceEnergyResult(Result):
    """Surface energies γ = (E_slab - N E_bulk) / (2 A) of symmetric slabs, relaxed positions (both faces)."""

    facets: tuple[str, ...]
    gamma_j_m2: dict
    gamma_mev_per_a2: dict
    gamma_unrelaxed_j_m2: dict
    n_layers: dict
    a0_angstrom: float
    provenance: dict

    summary_fields = ("gamma_j_m2", "gamma_mev_per_a2", "n_layers")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        x = np.arange(len(self.facets))
        ax.bar(x - 0.18, [self.gamma_unrelaxed_j_m2[f] for f in self.facets], 0.36, label="unrelaxed", alpha=0.6)
        ax.bar(x + 0.18, [self.gamma_j_m2[f] for f in self.facets], 0.36, label="relaxed")
        ax.set_xticks(x, [f"({f})" for f in self.facets])
        ax.set_ylabel("γ (J/m²)")
        ax.legend()
        return ax


_SLAB_BUILDERS = {"111": fcc111, "100": fcc100, "110": fcc110}
_INTERLAYER = {"111": 1 / math.sqrt(3), "100": 0.5, "110": 1 / (2 * math.sqrt(2))}  # in units of a0


def surface_energies(
    bulk: Atoms,
    calc: "Calculator",
    *,
    facets: Sequence[Facet] = ("111", "100", "110"),
    thickness_angstrom: float = 10.0,
    vacuum_angstrom: float = 10.0,
    relax_positions: bool = True,
    fmax: float = 0.01,
    steps: int = 300,
    progress: bool = True,
) -> SurfaceEnergyResult:
    """Surface energies (J/m² and meV/Å²) of low-index facets of an elemental FCC crystal.

    Each slab is 1x1 in plane and at least ``thickness_angstrom`` thick (the number of layers is reported; (110)
    has the closest planes, so it gets the most), with ``vacuum_angstrom`` on each side. All atoms relax.
    """
    unknown = [f for f in facets if f not in _SLAB_BUILDERS]
    if unknown:
        raise ValueError(f"unknown facet(s) {unknown}; choose from {sorted(_SLAB_BUILDERS)}")
    symbol, a0 = fcc_lattice_parameter(bulk)
    e_bulk = _bulk_energy_per_atom(bulk, calc, "surface_energies")
    gamma, gamma_unrelaxed, layers_used = {}, {}, {}
    for facet in tqdm(list(facets), desc="surface slabs", disable=not progress):
        n_layers = max(4, math.ceil(thickness_angstrom / (_INTERLAYER[facet] * a0)) + 1)
        slab = _SLAB_BUILDERS[facet](symbol, size=(1, 1, n_layers), a=a0, vacuum=vacuum_angstrom, periodic=True)
        if relax_positions:
            result = relax(slab, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
            e_unrelaxed, e_relaxed = result.energy_initial_ev, result.energy_ev
        else:
            e_unrelaxed = e_relaxed = _energy(slab, calc)
        two_areas = 2 * _plane_area(slab)
        gamma[facet] = (e_relaxed - len(slab) * e_bulk) / two_areas * EV_PER_A2_TO_J_PER_M2
        gamma_unrelaxed[facet] = (e_unrelaxed - len(slab) * e_bulk) / two_areas * EV_PER_A2_TO_J_PER_M2
        layers_used[facet] = n_layers
    return SurfaceEnergyResult(
        facets=tuple(facets),
        gamma_j_m2=gamma,
        gamma_mev_per_a2={f: g / EV_PER_A2_TO_J_PER_M2 * 1e3 for f, g in gamma.items()},
        gamma_unrelaxed_j_m2=gamma_unrelaxed,
        n_layers=layers_used,
        a0_angstrom=a0,
        provenance=provenance(calc, facets=list(facets), thickness_angstrom=thickness_angstrom,
                              vacuum_angstrom=vacuum_angstrom, relax_positions=relax_positions, fmax=fmax,
                              steps=steps, symbol=symbol, a0_angstrom=a0),
    )


# -------------------------------------------------------------------------------------------------- adsorption
@dataclasses.dataclass(frozen=True)
class AdsorptionResult(Result):
    """Adsorption energies on FCC(111): E_ads = E(slab + X) - E(slab) - E(X2)/2, gas X2 computed with the same
    calculator (spin-unpolarised unless the calculator models spin). Negative means binding.

    The adsorbate relaxes only along the surface normal so that each site keeps its identity (a bridge or top
    atom would otherwise slide into a hollow); the upper slab layers relax freely.
    """

    adsorbates: tuple[str, ...]
    sites: tuple[str, ...]
    e_ads_ev: dict
    favourable_site: dict
    height_angstrom: dict
    half_molecule_energy_ev: dict
    molecule_bond_angstrom: dict
    provenance: dict

    summary_fields = ("e_ads_ev", "favourable_site")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        x = np.arange(len(self.sites))
        width = 0.8 / len(self.adsorbates)
        for k, adsorbate in enumerate(self.adsorbates):
            values = [self.e_ads_ev[adsorbate][site] for site in self.sites]
            ax.bar(x + (k - (len(self.adsorbates) - 1) / 2) * width, values, width, label=adsorbate)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, self.sites)
        ax.set_ylabel("E_ads (eV), vs X2/2")
        ax.legend()
        return ax


def _site_height(symbol: str, adsorbate: str, site: str, nearest: float) -> float:
    """Starting height that puts the adsorbate at a covalent bond length from its nearest surface atoms."""
    bond = covalent_radii[atomic_numbers[symbol]] + covalent_radii[atomic_numbers[adsorbate]]
    lateral = {"ontop": 0.0, "bridge": nearest / 2, "fcc": nearest / math.sqrt(3), "hcp": nearest / math.sqrt(3)}
    return math.sqrt(max(bond**2 - lateral[site] ** 2, (0.5 * bond) ** 2))


def half_molecule_energy(element: str, calc: "Calculator", *, box_angstrom: float = 12.0, fmax: float = 0.01,
                         steps: int = 200) -> tuple[float, float]:
    """(E(X2)/2 in eV, relaxed bond length in Å) of a homonuclear diatomic in a periodic box."""
    dimer = molecule(f"{element}2")
    dimer.set_cell([box_angstrom] * 3)
    dimer.center()
    dimer.pbc = True
    result = relax(dimer, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
    return result.energy_ev / 2, float(result.atoms.get_distance(0, 1))


def adsorption_energies(
    bulk: Atoms,
    calc: "Calculator",
    *,
    adsorbates: Sequence[str] = ("H", "O"),
    sites: Sequence[Site] = ("ontop", "bridge", "fcc", "hcp"),
    size: tuple[int, int] = (2, 2),
    n_layers: int = 4,
    n_relaxed_layers: int = 2,
    vacuum_angstrom: float = 10.0,
    fmax: float = 0.02,
    steps: int = 300,
    progress: bool = True,
) -> AdsorptionResult:
    """Adsorption energies of single atoms at the top, bridge, fcc and hcp sites of the (111) surface of an
    elemental FCC crystal (ASE's fcc111 and add_adsorbate site names), one adsorbate per ``size`` surface cell.

    The lowest ``n_layers - n_relaxed_layers`` layers stay at bulk positions. The favourable site is the one with
    the lowest E_ads. Reference: half of the X2 molecule relaxed with the same calculator.
    """
    unknown = [s for s in sites if s not in ("ontop", "bridge", "fcc", "hcp")]
    if unknown:
        raise ValueError(f"unknown site(s) {unknown}; fcc111 sites are ontop, bridge, fcc, hcp")
    if not 0 < n_relaxed_layers < n_layers:
        raise ValueError(f"n_relaxed_layers must be between 1 and n_layers - 1, got {n_relaxed_layers}")
    symbol, a0 = fcc_lattice_parameter(bulk)
    slab = fcc111(symbol, size=(*size, n_layers), a=a0, vacuum=vacuum_angstrom)
    slab.pbc = True
    check_elements(slab + Atoms(list(adsorbates)), calc, where="adsorption_energies")
    layers = _layers(slab)
    fixed = np.concatenate(layers[: n_layers - n_relaxed_layers]).tolist()
    slab.set_constraint(FixAtoms(indices=fixed))
    clean = relax(slab, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
    nearest = a0 / math.sqrt(2)

    e_ads, heights, half, bonds = {}, {}, {}, {}
    jobs = [(a, s) for a in adsorbates for s in sites]
    with tqdm(total=len(jobs) + len(adsorbates), desc="adsorption", disable=not progress) as bar:
        for adsorbate in adsorbates:
            half[adsorbate], bonds[adsorbate] = half_molecule_energy(adsorbate, calc, fmax=fmax, steps=steps)
            bar.update(1)
            e_ads[adsorbate], heights[adsorbate] = {}, {}
            for site in sites:
                system = clean.atoms.copy()
                add_adsorbate(system, adsorbate, _site_height(symbol, adsorbate, site, nearest), position=site)
                top_z = system.positions[layers[-1], 2].mean()
                system.set_constraint([FixAtoms(indices=fixed), FixedLine([len(system) - 1], direction=[0, 0, 1])])
                result = relax(system, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
                e_ads[adsorbate][site] = result.energy_ev - clean.energy_ev - half[adsorbate]
                heights[adsorbate][site] = float(result.atoms.positions[-1, 2] - top_z)
                bar.update(1)
    return AdsorptionResult(
        adsorbates=tuple(adsorbates),
        sites=tuple(sites),
        e_ads_ev=e_ads,
        favourable_site={a: min(values, key=values.get) for a, values in e_ads.items()},
        height_angstrom=heights,
        half_molecule_energy_ev=half,
        molecule_bond_angstrom=bonds,
        provenance=provenance(calc, adsorbates=list(adsorbates), sites=list(sites), size=size, n_layers=n_layers,
                              n_relaxed_layers=n_relaxed_layers, vacuum_angstrom=vacuum_angstrom, fmax=fmax,
                              steps=steps, symbol=symbol, a0_angstrom=a0,
                              reference="E(X2)/2 relaxed in a periodic box with the same calculator"),
    )
