"""Symmetric tilt grain boundaries of an elemental FCC crystal: the Σ3(111) coherent twin, Σ5(310)[001] and
Σ5(210)[001], in periodic bicrystals with two boundaries (no free surface).

The bicrystal comes from pymatgen's ``GrainBoundaryGenerator`` (coincidence-site lattice, one of two atoms closer
than ``rm_ratio`` bond lengths at the boundary removed). A grid of rigid-body translations of one grain in the
boundary plane is scanned with single points; the lowest translations are then relaxed (positions, and the cell
length normal to the boundary), and the lowest relaxed energy is the boundary energy
γ_GB = (E_bicrystal - N e_bulk) / (2 A). Takes the *relaxed* bulk crystal (relax it first with
:func:`umlip_helpers.properties.relax.relax`): the bicrystal is built at its lattice parameter.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk as build_bulk
from ase.cell import Cell
from tqdm.auto import tqdm

from ..io import provenance, to_jsonable
from ..results import Result
from ._common import EV_PER_A2_TO_J_PER_M2, bulk_energy_per_atom, fcc_lattice_parameter, plane_area
from ._common import single_point_energy
from .relax import relax

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

Boundary = Literal["sigma3_111", "sigma5_310", "sigma5_210"]

#: boundary -> (Σ, tilt axis, tilt angle in degrees, boundary plane), in the cubic axes of the crystal
BOUNDARIES: dict[str, tuple[int, tuple[int, int, int], float, tuple[int, int, int]]] = {
    "sigma3_111": (3, (1, 1, 1), 60.0, (1, 1, 1)),
    "sigma5_310": (5, (0, 0, 1), math.degrees(2 * math.atan(1 / 3)), (3, 1, 0)),
    "sigma5_210": (5, (0, 0, 1), math.degrees(2 * math.atan(1 / 2)), (2, 1, 0)),
}
#: boundary -> its quantity in data/references (mJ/m^2)
REFERENCE_QUANTITIES = {"sigma3_111": "sigma3_twin_energy", "sigma5_310": "sigma5_310_gb_energy",
                        "sigma5_210": "sigma5_210_gb_energy"}
#: strain components a bicrystal may relax (Voigt xx yy zz yz xz xy): only its length normal to the boundaries
NORMAL_STRAIN_MASK = (False, False, True, False, False, False)


@dataclasses.dataclass(frozen=True)
class GrainBoundarySettings:
    """What to build and how to relax it.

    separation_angstrom: least distance between the two boundaries of the periodic bicrystal (half its height); the
        grains are repeated until it is reached (``separation_angstrom`` of the result is what was built).
    translation_grid: (n_a, n_b) rigid translations of one grain, fractions i/n_a, j/n_b of the in-plane cell
        vectors, shifted by ``translation_offset``; each is a single point.
    n_relaxed: how many of the lowest rigid translations are relaxed; the lowest relaxed energy is reported.
    relax_normal_cell: relax the cell length normal to the boundaries too (the excess volume); False keeps it.
    rm_ratio: pymatgen's criterion, in bulk bond lengths, below which one of two atoms at a boundary is removed.
    """

    boundary: Boundary = "sigma5_310"
    separation_angstrom: float = 10.0
    translation_grid: tuple[int, int] = (3, 3)
    translation_offset: tuple[float, float] = (0.0, 0.0)
    n_relaxed: int = 2
    relax_normal_cell: bool = True
    fmax: float = 0.01
    steps: int = 500
    rm_ratio: float = 0.7
    progress: bool = True

    def __post_init__(self) -> None:
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"GrainBoundarySettings.boundary: unknown boundary {self.boundary!r}; choose from "
                             f"{sorted(BOUNDARIES)}")
        if not self.separation_angstrom > 0:
            raise ValueError(f"GrainBoundarySettings.separation_angstrom must be positive, got "
                             f"{self.separation_angstrom}")
        grid = tuple(self.translation_grid)
        if len(grid) != 2 or any(int(n) != n or n < 1 for n in grid):
            raise ValueError(f"GrainBoundarySettings.translation_grid must be two positive integers, got {grid}")
        if len(self.translation_offset) != 2 or any(not 0 <= f < 1 for f in self.translation_offset):
            raise ValueError("GrainBoundarySettings.translation_offset must be two fractions in [0, 1), got "
                             f"{self.translation_offset}")
        if not 1 <= self.n_relaxed <= grid[0] * grid[1]:
            raise ValueError(f"GrainBoundarySettings.n_relaxed must be between 1 and the {grid[0] * grid[1]} "
                             f"translations of the grid, got {self.n_relaxed}")
        if not self.fmax > 0 or self.steps < 1:
            raise ValueError(f"GrainBoundarySettings: fmax must be positive and steps at least 1, got fmax="
                             f"{self.fmax}, steps={self.steps}")
        if not 0 < self.rm_ratio < 1:
            raise ValueError(f"GrainBoundarySettings.rm_ratio must be in (0, 1), got {self.rm_ratio}")

    @property
    def sigma(self) -> int:
        return BOUNDARIES[self.boundary][0]


@dataclasses.dataclass(frozen=True)
class GrainBoundaryResult(Result):
    """Boundary energy and excess volume of a symmetric tilt boundary; ``atoms`` is the relaxed bicrystal (two
    boundaries, normal along z, no calculator). The scan fields hold every rigid translation tried (fractions of the
    in-plane cell vectors) and its unrelaxed energy; ``relaxed_*`` the translations that were relaxed."""

    boundary: str
    sigma: int
    energy_mJ_per_m2: float
    energy_J_per_m2: float
    excess_volume_angstrom: float
    energy_unrelaxed_mJ_per_m2: float
    translation_fractional: tuple[float, float]
    scan_translations_fractional: np.ndarray
    scan_energies_mJ_per_m2: np.ndarray
    relaxed_translations_fractional: np.ndarray
    relaxed_energies_mJ_per_m2: np.ndarray
    separation_angstrom: float
    n_atoms: int
    area_angstrom2: float
    a0_angstrom: float
    atoms: Atoms
    provenance: dict

    summary_fields = ("boundary", "energy_mJ_per_m2", "excess_volume_angstrom", "translation_fractional",
                      "separation_angstrom", "n_atoms")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["atoms"] = {"symbols": self.atoms.get_chemical_symbols(), "positions_angstrom": self.atoms.positions,
                        "cell_angstrom": self.atoms.cell.array, "pbc": self.atoms.pbc}
        return to_jsonable(out)

    def plot(self, ax=None):
        """The rigid translation scan, coloured by unrelaxed energy; the relaxed starts ringed, the minimum starred."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.6))
        points = ax.scatter(*self.scan_translations_fractional.T, c=self.scan_energies_mJ_per_m2, cmap="viridis",
                            s=80)
        ax.scatter(*self.relaxed_translations_fractional.T, s=180, facecolors="none", edgecolors="k",
                   label="relaxed starts")
        ax.plot(*self.translation_fractional, "r*", ms=14, label=f"minimum {self.energy_mJ_per_m2:.0f} mJ/m²")
        plt.colorbar(points, ax=ax, label="unrelaxed γ_GB (mJ/m²)")
        ax.set_xlabel("translation / a (boundary plane)")
        ax.set_ylabel("translation / b")
        ax.set_title(f"{self.boundary}: rigid scan and relaxed minimum")
        ax.legend(fontsize=8)
        return ax


def bicrystal(symbol: str, a0: float, boundary: Boundary, separation_angstrom: float,
              translation: tuple[float, float] = (0.0, 0.0), rm_ratio: float = 0.7) -> Atoms:
    """Periodic bicrystal of ``boundary`` in FCC ``symbol`` at lattice parameter ``a0``: two boundaries at least
    ``separation_angstrom`` apart, the boundary plane spanned by the first two cell vectors, the third along z, one
    grain translated by ``translation`` (fractions of the in-plane cell vectors)."""
    from pymatgen.core.interface import GrainBoundaryGenerator
    from pymatgen.io.ase import AseAtomsAdaptor

    _, axis, angle, plane = BOUNDARIES[boundary]
    generator = GrainBoundaryGenerator(AseAtomsAdaptor.get_structure(build_bulk(symbol, "fcc", a=a0)))

    def build(expand_times: int) -> Atoms:
        with warnings.catch_warnings():  # pymatgen notes that merged boundary sites lose their grain label
            warnings.filterwarnings("ignore", message=".*grain_label.*", category=UserWarning)
            grain_boundary = generator.gb_from_parameters(axis, angle, expand_times=expand_times, plane=plane,
                                                          normal=True, ab_shift=translation, rm_ratio=rm_ratio)
        atoms = AseAtomsAdaptor.get_atoms(grain_boundary)
        atoms.set_cell(Cell.fromcellpar(atoms.cell.cellpar()), scale_atoms=True)  # a along x, normal along z
        atoms.wrap()
        return atoms

    one = build(1)
    return build(max(1, math.ceil(separation_angstrom / (one.cell[2, 2] / 2) - 1e-9)))


def _boundary_energy_mj(energy_ev: float, atoms: Atoms, e_bulk: float) -> float:
    return (energy_ev - len(atoms) * e_bulk) / (2 * plane_area(atoms)) * EV_PER_A2_TO_J_PER_M2 * 1e3


def _translation_grid(settings: GrainBoundarySettings) -> np.ndarray:
    n_a, n_b = settings.translation_grid
    grid = np.array([(i / n_a, j / n_b) for i in range(n_a) for j in range(n_b)])
    return (grid + np.asarray(settings.translation_offset)) % 1.0


def compute(atoms: Atoms, calc: "Calculator", settings: GrainBoundarySettings = GrainBoundarySettings()
            ) -> GrainBoundaryResult:
    """Energy (mJ/m², J/m²), excess volume (Å) and relaxed structure of one symmetric tilt boundary in the FCC
    crystal ``atoms`` (relaxed bulk, any cell) with ``calc``: rigid translation scan, then relaxation of the
    ``settings.n_relaxed`` lowest translations. See :class:`GrainBoundarySettings`."""
    symbol, a0 = fcc_lattice_parameter(atoms)
    e_bulk = bulk_energy_per_atom(atoms, calc, "grain_boundaries.compute")
    volume_per_atom = atoms.get_volume() / len(atoms)
    translations = _translation_grid(settings)
    structures, rigid = [], []
    for shift in tqdm(translations, desc=f"{settings.boundary} translations", disable=not settings.progress):
        structure = bicrystal(symbol, a0, settings.boundary, settings.separation_angstrom, tuple(shift),
                              settings.rm_ratio)
        structures.append(structure)
        rigid.append(_boundary_energy_mj(single_point_energy(structure, calc), structure, e_bulk))
    starts = np.argsort(rigid, kind="stable")[:settings.n_relaxed]
    relaxations = [relax(structures[i], calc, fmax=settings.fmax, steps=settings.steps,
                         relax_cell=settings.relax_normal_cell,
                         cell_mask=NORMAL_STRAIN_MASK if settings.relax_normal_cell else None, progress=False)
                   for i in tqdm(starts, desc=f"{settings.boundary} relaxations", disable=not settings.progress)]
    relaxed = [_boundary_energy_mj(r.energy_ev, r.atoms, e_bulk) for r in relaxations]
    best = int(np.argmin(relaxed))
    final = relaxations[best].atoms
    area = plane_area(final)
    return GrainBoundaryResult(
        boundary=settings.boundary,
        sigma=settings.sigma,
        energy_mJ_per_m2=float(relaxed[best]),
        energy_J_per_m2=float(relaxed[best]) / 1e3,
        excess_volume_angstrom=float((final.get_volume() - len(final) * volume_per_atom) / (2 * area)),
        energy_unrelaxed_mJ_per_m2=float(rigid[starts[best]]),
        translation_fractional=tuple(float(f) for f in translations[starts[best]]),
        scan_translations_fractional=translations,
        scan_energies_mJ_per_m2=np.asarray(rigid),
        relaxed_translations_fractional=translations[starts],
        relaxed_energies_mJ_per_m2=np.asarray(relaxed),
        separation_angstrom=float(final.cell[2, 2] / 2),
        n_atoms=len(final),
        area_angstrom2=area,
        a0_angstrom=a0,
        atoms=final,
        provenance=provenance(calc, **dataclasses.asdict(settings), symbol=symbol, a0_angstrom=a0,
                              generator="pymatgen.core.interface.GrainBoundaryGenerator"),
    )


#: the name the notebook reads best with
grain_boundary_energy = compute


@dataclasses.dataclass(frozen=True)
class GrainBoundaryConvergence(Result):
    """Boundary energy against the distance between the two boundaries of the bicrystal; ``change_mJ_per_m2`` is
    the change between the last two separations (what the largest cell still carries)."""

    boundary: str
    separation_angstrom: np.ndarray
    n_atoms: np.ndarray
    energy_mJ_per_m2: np.ndarray
    excess_volume_angstrom: np.ndarray
    change_mJ_per_m2: float
    provenance: dict

    summary_fields = ("boundary", "energy_mJ_per_m2", "separation_angstrom", "change_mJ_per_m2")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot(self.separation_angstrom, self.energy_mJ_per_m2, "o-")
        ax.set_xlabel("distance between the boundaries (Å)")
        ax.set_ylabel("γ_GB (mJ/m²)")
        ax.set_title(f"{self.boundary}: last change {self.change_mJ_per_m2:+.1f} mJ/m²")
        return ax


def separation_convergence(atoms: Atoms, calc: "Calculator", settings: GrainBoundarySettings,
                           separations_angstrom: Sequence[float]) -> GrainBoundaryConvergence:
    """:func:`compute` at each separation (the other settings kept); separations that build the same bicrystal
    height are run once."""
    if len(separations_angstrom) < 2:
        raise ValueError(f"separation_convergence needs at least two separations, got {list(separations_angstrom)}")
    symbol, a0 = fcc_lattice_parameter(atoms)
    heights: dict[float, float] = {}  # cell height -> the first separation that builds it
    for separation in sorted(separations_angstrom):
        height = round(float(bicrystal(symbol, a0, settings.boundary, separation).cell[2, 2]), 6)
        heights.setdefault(height, float(separation))
    if len(heights) < 2:
        raise ValueError(f"the separations {list(separations_angstrom)} all build the same {settings.boundary} "
                         "bicrystal; spread them further apart")
    ordered = [compute(atoms, calc, dataclasses.replace(settings, separation_angstrom=separation))
               for separation in tqdm(heights.values(), desc="separations", disable=not settings.progress)]
    energies = np.array([r.energy_mJ_per_m2 for r in ordered])
    return GrainBoundaryConvergence(
        boundary=settings.boundary,
        separation_angstrom=np.array([r.separation_angstrom for r in ordered]),
        n_atoms=np.array([r.n_atoms for r in ordered]),
        energy_mJ_per_m2=energies,
        excess_volume_angstrom=np.array([r.excess_volume_angstrom for r in ordered]),
        change_mJ_per_m2=float(energies[-1] - energies[-2]),
        provenance=provenance(calc, **dataclasses.asdict(settings), separations_angstrom=list(separations_angstrom)),
    )


def comparison_rows(results: Sequence[GrainBoundaryResult], table: dict | None = None) -> list[dict]:
    """One row per boundary result, as :func:`references.comparison_rows` gives them: the preferred reference in
    data/references and the percent error (None, "no reference", where none has been read)."""
    from .references import compare_to_reference

    return [{"property": REFERENCE_QUANTITIES[r.boundary],
             **compare_to_reference(REFERENCE_QUANTITIES[r.boundary], r.energy_mJ_per_m2, table), "unit": "mJ/m^2"}
            for r in results]


__all__ = ["BOUNDARIES", "Boundary", "GrainBoundaryConvergence", "GrainBoundaryResult", "GrainBoundarySettings",
           "bicrystal", "comparison_rows", "compute", "grain_boundary_energy", "separation_convergence"]
