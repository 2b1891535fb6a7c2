"""The generalized stacking-fault curve of an elemental FCC crystal on (111) along <112>: the intrinsic (ISF) and
unstable (USF) stacking-fault energies.

Takes the *relaxed* bulk crystal (relax it first with :func:`umlip_helpers.properties.relax.relax`): the fault
column is built at its lattice parameter.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.build import fcc111
from ase.constraints import FixedLine
from tqdm.auto import tqdm

from ..io import provenance
from ..models import check_elements
from ..results import Result
from ._common import EV_PER_A2_TO_J_PER_M2, fcc_lattice_parameter, layers_by_height, plane_area, settings_keywords
from ._common import single_point_energy
from .relax import relax

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator


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
    layers = layers_by_height(column)
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


@dataclasses.dataclass(frozen=True)
class StackingFaultSettings:
    """n_layers: (111) planes in the periodic column (a multiple of 3, at least 6); n_points: slips from 0 to one
    Shockley partial; relax_normal: relax each atom along the fault normal only, to ``fmax`` (eV/Å) in at most
    ``steps`` steps, else rigid shifts."""

    n_layers: int = 12
    n_points: int = 9
    relax_normal: bool = True
    fmax: float = 0.01
    steps: int = 300
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n_points < 3:
            raise ValueError(f"StackingFaultSettings.n_points must be at least 3 (no slip, the unstable point, the "
                             f"ISF), got {self.n_points}")


def compute(atoms: Atoms, calc: "Calculator",
            settings: StackingFaultSettings = StackingFaultSettings()) -> StackingFaultResult:
    """Generalized stacking-fault energy of the elemental FCC crystal ``atoms`` on (111) along <112>
    (:class:`StackingFaultSettings`).

    A periodic column of ``n_layers`` (111) planes gets one fault per cell by tilting its third cell vector by the
    slip u (no free surfaces). With ``relax_normal`` each atom then relaxes only along the fault normal
    (ase FixedLine), as the GSF definition asks; the cell height stays fixed. γ(u) = (E(u) - E(0)) / area.
    """
    n_layers, n_points, relax_normal = settings.n_layers, settings.n_points, settings.relax_normal
    fmax, steps = settings.fmax, settings.steps
    check_elements(atoms, calc, where="generalized_stacking_fault")
    symbol, a0 = fcc_lattice_parameter(atoms)
    column = _fcc111_column(symbol, a0, n_layers)
    partial = _stacking_vector(column)
    b_p = float(np.linalg.norm(partial))
    area = plane_area(column)
    fractions = np.linspace(0.0, 1.0, n_points)
    relaxed, rigid = [], []
    for fraction in tqdm(fractions, desc="stacking-fault slips", disable=not settings.progress):
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
            energy = single_point_energy(faulted, calc)
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


@settings_keywords(StackingFaultSettings)
def generalized_stacking_fault(bulk: Atoms, calc: "Calculator", **settings: Any) -> StackingFaultResult:
    """:func:`compute` with the fields of :class:`StackingFaultSettings` as keywords:
    ``generalized_stacking_fault(bulk, calc, n_layers=9)``."""
    return compute(bulk, calc, StackingFaultSettings(**settings))


def _parabolic_peak(x: np.ndarray, y: np.ndarray) -> float:
    """Maximum of y(x): the parabola through the highest interior sample and its neighbours, else the sample."""
    top = int(np.argmax(y))
    if top in (0, len(y) - 1):
        return float(y[top])
    coefficients = np.polyfit(x[top - 1:top + 2], y[top - 1:top + 2], 2)
    if coefficients[0] >= 0:
        return float(y[top])
    return float(max(y[top], np.polyval(coefficients, -coefficients[1] / (2 * coefficients[0]))))
