"""Vacancy formation energy of an elemental crystal, with its convergence in supercell size.

Takes the *relaxed* bulk crystal (relax it first with :func:`umlip_helpers.properties.relax.relax`); a bulk cell far
from zero pressure gets a warning, since E_vac is referenced to its energy per atom.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from ..io import provenance
from ..results import Result
from ._common import bulk_energy_per_atom, settings_keywords, single_point_energy
from .relax import relax

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator


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


@dataclasses.dataclass(frozen=True)
class VacancySettings:
    """sizes: the bulk cell is repeated n x n x n for each n; relax_positions: relax the N-1 atoms (cell fixed) to
    ``fmax`` (eV/Å) in at most ``steps`` optimiser steps, else unrelaxed energies only."""

    sizes: Sequence[int] = (2, 3)
    relax_positions: bool = True
    fmax: float = 0.01
    steps: int = 300
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.sizes or any(int(n) < 1 for n in self.sizes):
            raise ValueError(f"VacancySettings.sizes must be positive integers, got {self.sizes}")


def compute(atoms: Atoms, calc: "Calculator", settings: VacancySettings = VacancySettings()) -> VacancyResult:
    """Relaxed vacancy formation energy in ``atoms`` repeated ``n x n x n`` for each n in ``settings.sizes``.

    The perfect supercell's energy is N times the bulk energy per atom (exact for a periodic calculator); the cell
    stays fixed (constant-volume vacancy, the usual dilute limit) and the positions relax to ``fmax`` (eV/Å).
    Compare the sizes to judge convergence: E_vac should change by little between the last two.
    """
    relax_positions, fmax, steps = settings.relax_positions, settings.fmax, settings.steps
    sizes = sorted(int(n) for n in settings.sizes)
    e_bulk = bulk_energy_per_atom(atoms, calc, "vacancy_formation_energy")
    relaxed_values, unrelaxed_values, n_atoms = [], [], []
    for n in tqdm(sizes, desc="vacancy supercells", disable=not settings.progress):
        cell = atoms.repeat((n, n, n))
        n_perfect = len(cell)
        if n_perfect < 8:
            raise ValueError(f"a {n}x{n}x{n} supercell has only {n_perfect} atoms; use a larger size")
        del cell[0]
        result = relax(cell, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False) if relax_positions \
            else None
        e_unrelaxed = single_point_energy(cell, calc) if result is None else result.energy_initial_ev
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
                              bulk_formula=atoms.get_chemical_formula(), bulk_cell=atoms.cell.array),
    )


@settings_keywords(VacancySettings)
def vacancy_formation_energy(bulk: Atoms, calc: "Calculator", **settings: Any) -> VacancyResult:
    """:func:`compute` with the fields of :class:`VacancySettings` as keywords: ``vacancy_formation_energy(bulk,
    calc, sizes=(2,))``."""
    return compute(bulk, calc, VacancySettings(**settings))
