"""Elastic constants from finite strains: ± several strain magnitudes per Voigt component, a linear fit of
stress against strain, the full 6×6 Cij, its cubic reduction, Voigt/Reuss/Hill moduli and the Born
stability check (all eigenvalues of Cij positive; Mouhat & Coudert, Phys. Rev. B 90, 224104 (2014))."""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from ase import Atoms, units

from ..io import provenance
from ..models import check_elements
from ..results import Result
from ._common import settings_keywords

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

VOIGT = ("xx", "yy", "zz", "yz", "xz", "xy")
_VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: residual stress (GPa) of the unstrained input above which the input is probably not relaxed
RESIDUAL_STRESS_WARNING_GPA = 0.5


def crystal_system(atoms: Atoms, symprec: float = 1e-3) -> str:
    import spglib

    dataset = spglib.get_symmetry_dataset((atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers),
                                          symprec=symprec)
    number = dataset.number if dataset is not None else 1
    for upper, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                        (167, "trigonal"), (194, "hexagonal"), (230, "cubic")):
        if number <= upper:
            return name
    raise ValueError(f"space group number {number} out of range")


def voigt_reuss_hill(cij_gpa: np.ndarray) -> dict[str, float]:
    """Bulk and shear moduli (GPa) in the Voigt, Reuss and Hill averages of a 6×6 stiffness matrix."""
    c = np.asarray(cij_gpa, dtype=float)
    s = np.linalg.inv(c)
    bulk_voigt = (c[0, 0] + c[1, 1] + c[2, 2] + 2 * (c[0, 1] + c[0, 2] + c[1, 2])) / 9
    shear_voigt = (c[0, 0] + c[1, 1] + c[2, 2] - (c[0, 1] + c[0, 2] + c[1, 2])
                   + 3 * (c[3, 3] + c[4, 4] + c[5, 5])) / 15
    bulk_reuss = 1 / (s[0, 0] + s[1, 1] + s[2, 2] + 2 * (s[0, 1] + s[0, 2] + s[1, 2]))
    shear_reuss = 15 / (4 * (s[0, 0] + s[1, 1] + s[2, 2]) - 4 * (s[0, 1] + s[0, 2] + s[1, 2])
                        + 3 * (s[3, 3] + s[4, 4] + s[5, 5]))
    return {"bulk_voigt_gpa": bulk_voigt, "bulk_reuss_gpa": bulk_reuss, "bulk_hill_gpa": (bulk_voigt + bulk_reuss) / 2,
            "shear_voigt_gpa": shear_voigt, "shear_reuss_gpa": shear_reuss,
            "shear_hill_gpa": (shear_voigt + shear_reuss) / 2}


@dataclasses.dataclass(frozen=True)
class ElasticResult(Result):
    """Stiffness in GPa, Voigt notation (xx yy zz yz xz xy, engineering shear strains), Cartesian axes of the
    input cell. ``c11_gpa``, ``c12_gpa``, ``c44_gpa`` are the cubic averages, NaN unless the crystal is cubic."""

    crystal_system: str
    cij_gpa: np.ndarray
    c11_gpa: float
    c12_gpa: float
    c44_gpa: float
    bulk_voigt_gpa: float
    bulk_reuss_gpa: float
    bulk_hill_gpa: float
    shear_voigt_gpa: float
    shear_reuss_gpa: float
    shear_hill_gpa: float
    born_stable: bool
    min_eigenvalue_gpa: float
    residual_stress_gpa: np.ndarray
    #: largest deviation (GPa) of any stress from its straight-line fit: large means non-linear, shrink the strains
    fit_max_residual_gpa: float
    strains: np.ndarray
    #: stresses_gpa[j, k, i]: stress component i under strain ``strains[k]`` of Voigt component j
    stresses_gpa: np.ndarray
    provenance: dict

    summary_fields = ("crystal_system", "c11_gpa", "c12_gpa", "c44_gpa", "bulk_hill_gpa", "shear_hill_gpa",
                      "born_stable", "min_eigenvalue_gpa")

    def plot(self, ax=None):
        """Heat map of the 6×6 Cij with values."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.6, 4), layout="constrained")
        c = self.cij_gpa
        limit = float(np.abs(c).max())
        image = ax.imshow(c, cmap="RdBu_r", vmin=-limit, vmax=limit)
        for i in range(6):
            for j in range(6):
                text = f"{c[i, j]:.0f}"
                ax.text(j, i, "0" if text == "-0" else text, ha="center", va="center", fontsize=8,
                        color="white" if abs(c[i, j]) > 0.6 * limit else "black")
        ax.set_xticks(range(6), [f"{k + 1}" for k in range(6)])
        ax.set_yticks(range(6), [f"{k + 1}" for k in range(6)])
        ax.set_title(f"Cij (GPa), {self.crystal_system}, Born {'stable' if self.born_stable else 'UNSTABLE'}")
        plt.colorbar(image, ax=ax, shrink=0.8)
        return ax


def strain_cell(atoms: Atoms, component: int, magnitude: float) -> Atoms:
    """A copy of ``atoms`` under a Voigt strain (engineering shear: ε_yz = ε_zy = magnitude / 2)."""
    strain = np.zeros((3, 3))
    i, j = _VOIGT_PAIRS[component]
    if i == j:
        strain[i, i] = magnitude
    else:
        strain[i, j] = strain[j, i] = magnitude / 2
    strained = atoms.copy()
    strained.set_cell(atoms.cell.array @ (np.eye(3) + strain).T, scale_atoms=True)
    return strained


@dataclasses.dataclass(frozen=True)
class ElasticSettings:
    """strains: the non-zero strain magnitudes applied to each Voigt component (two or more).
    relax_ions: relax the positions at each strain to ``fmax`` (eV/Å); needed when not every atom is at an inversion
    centre (hcp, diamond, most compounds); without it the result is the clamped-ion stiffness."""

    strains: Sequence[float] = (-0.01, -0.005, 0.005, 0.01)
    relax_ions: bool = False
    fmax: float = 0.005
    progress: bool = True

    def __post_init__(self) -> None:
        if len(self.strains) < 2 or any(s == 0 for s in self.strains):
            raise ValueError(f"ElasticSettings.strains must be two or more non-zero magnitudes, got "
                             f"{list(self.strains)}")


def compute(atoms: Atoms, calc: "Calculator", settings: ElasticSettings = ElasticSettings()) -> ElasticResult:
    """Cij from the slopes of stress against strain for each of the six Voigt strains (:class:`ElasticSettings`).

    ``atoms`` should be relaxed (cell included) first: a residual stress above 0.5 GPa gives a warning.
    """
    from tqdm.auto import tqdm

    from .relax import relax

    check_elements(atoms, calc, where=f"elastic constants of {atoms.get_chemical_formula()}")
    strains = np.asarray(sorted(settings.strains), dtype=float)
    relax_ions, fmax = settings.relax_ions, settings.fmax
    reference = atoms.copy()
    reference.calc = calc
    residual = reference.get_stress(voigt=True) / units.GPa
    if np.abs(residual).max() > RESIDUAL_STRESS_WARNING_GPA:
        warnings.warn(f"elastic constants: the input has a residual stress of up to {np.abs(residual).max():.2f} "
                      "GPa; relax it (properties.relax.relax) first", RuntimeWarning, stacklevel=2)

    all_strains = np.sort(np.append(strains, 0.0))
    stresses = np.empty((6, len(all_strains), 6))
    with tqdm(total=6 * len(strains), desc="elastic strains", disable=not settings.progress, leave=False) as bar:
        for j in range(6):
            for k, magnitude in enumerate(all_strains):
                if magnitude == 0.0:
                    stresses[j, k] = residual
                    continue
                strained = strain_cell(atoms, j, magnitude)
                if relax_ions:
                    strained = relax(strained, calc, fmax=fmax, relax_cell=False, progress=False).atoms
                strained.calc = calc
                stresses[j, k] = strained.get_stress(voigt=True) / units.GPa
                bar.update(1)

    cij = np.empty((6, 6))
    worst = 0.0
    for j in range(6):
        slopes, intercepts = np.polyfit(all_strains, stresses[j], 1)
        cij[:, j] = slopes
        worst = max(worst, float(np.abs(stresses[j] - (np.outer(all_strains, slopes) + intercepts)).max()))
    system = crystal_system(atoms)
    if system == "cubic":
        c11 = float(np.mean(np.diag(cij)[:3]))
        c12 = float(np.mean([cij[0, 1], cij[1, 0], cij[0, 2], cij[2, 0], cij[1, 2], cij[2, 1]]))
        c44 = float(np.mean(np.diag(cij)[3:]))
    else:
        c11 = c12 = c44 = float("nan")
    eigenvalues = np.linalg.eigvalsh(0.5 * (cij + cij.T))
    return ElasticResult(
        crystal_system=system,
        cij_gpa=cij,
        c11_gpa=c11,
        c12_gpa=c12,
        c44_gpa=c44,
        **{k: float(v) for k, v in voigt_reuss_hill(cij).items()},
        born_stable=bool(eigenvalues.min() > 0),
        min_eigenvalue_gpa=float(eigenvalues.min()),
        residual_stress_gpa=residual,
        fit_max_residual_gpa=worst,
        strains=all_strains,
        stresses_gpa=stresses,
        provenance=provenance(calc, strains=strains, relax_ions=relax_ions, fmax=fmax if relax_ions else None),
    )


@settings_keywords(ElasticSettings)
def elastic_constants(atoms: Atoms, calc: "Calculator", **settings: Any) -> ElasticResult:
    """:func:`compute` with the fields of :class:`ElasticSettings` as keywords: ``elastic_constants(atoms, calc,
    relax_ions=True)``."""
    return compute(atoms, calc, ElasticSettings(**settings))


def cli_elastic(args) -> dict[str, Any]:
    """``umlip elastic --model M --structure Ni|FILE``: relax the cell, then the elastic constants."""
    from ..models import load_calculator
    from ._common import structure_from_argument
    from .relax import relax

    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    relaxed = relax(structure_from_argument(args.structure), calc, fmax=0.005).atoms
    result = elastic_constants(relaxed, calc, relax_ions=args.relax_ions)
    return {"type": "ElasticResult", **result.to_dict()}
