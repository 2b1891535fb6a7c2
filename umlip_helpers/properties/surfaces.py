"""Surface energies of the low-index facets (111), (100) and (110) of an elemental FCC crystal, from symmetric
slabs with relaxed positions.

Takes the *relaxed* bulk crystal (relax it first with :func:`umlip_helpers.properties.relax.relax`); a bulk cell far
from zero pressure gets a warning, since γ is referenced to its energy per atom.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.build import fcc100, fcc110, fcc111
from tqdm.auto import tqdm

from ..io import provenance
from ..results import Result
from ._common import EV_PER_A2_TO_J_PER_M2, bulk_energy_per_atom, fcc_lattice_parameter, plane_area, settings_keywords
from ._common import single_point_energy
from .relax import relax

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

Facet = Literal["111", "100", "110"]


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


@dataclasses.dataclass(frozen=True)
class SurfaceSettings:
    """facets: any of "111", "100", "110"; each slab 1x1 in plane, at least ``thickness_angstrom`` thick, with
    ``vacuum_angstrom`` on each side; relax_positions: relax all atoms to ``fmax`` (eV/Å) in at most ``steps``."""

    facets: Sequence[Facet] = ("111", "100", "110")
    thickness_angstrom: float = 10.0
    vacuum_angstrom: float = 10.0
    relax_positions: bool = True
    fmax: float = 0.01
    steps: int = 300
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [f for f in self.facets if f not in _SLAB_BUILDERS]
        if unknown:
            raise ValueError(f"SurfaceSettings.facets: unknown facet(s) {unknown}; choose from "
                             f"{sorted(_SLAB_BUILDERS)}")


def compute(atoms: Atoms, calc: "Calculator", settings: SurfaceSettings = SurfaceSettings()) -> SurfaceEnergyResult:
    """Surface energies (J/m² and meV/Å²) of low-index facets of the elemental FCC crystal ``atoms``
    (:class:`SurfaceSettings`).

    Each slab is 1x1 in plane and at least ``thickness_angstrom`` thick (the number of layers is reported; (110)
    has the closest planes, so it gets the most), with ``vacuum_angstrom`` on each side. All atoms relax.
    """
    facets, thickness_angstrom, vacuum_angstrom = settings.facets, settings.thickness_angstrom, settings.vacuum_angstrom
    relax_positions, fmax, steps = settings.relax_positions, settings.fmax, settings.steps
    symbol, a0 = fcc_lattice_parameter(atoms)
    e_bulk = bulk_energy_per_atom(atoms, calc, "surface_energies")
    gamma, gamma_unrelaxed, layers_used = {}, {}, {}
    for facet in tqdm(list(facets), desc="surface slabs", disable=not settings.progress):
        n_layers = max(4, math.ceil(thickness_angstrom / (_INTERLAYER[facet] * a0)) + 1)
        slab = _SLAB_BUILDERS[facet](symbol, size=(1, 1, n_layers), a=a0, vacuum=vacuum_angstrom, periodic=True)
        if relax_positions:
            result = relax(slab, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
            e_unrelaxed, e_relaxed = result.energy_initial_ev, result.energy_ev
        else:
            e_unrelaxed = e_relaxed = single_point_energy(slab, calc)
        two_areas = 2 * plane_area(slab)
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


@settings_keywords(SurfaceSettings)
def surface_energies(bulk: Atoms, calc: "Calculator", **settings: Any) -> SurfaceEnergyResult:
    """:func:`compute` with the fields of :class:`SurfaceSettings` as keywords: ``surface_energies(bulk, calc,
    facets=("111",))``."""
    return compute(bulk, calc, SurfaceSettings(**settings))
