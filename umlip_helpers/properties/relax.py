"""Structure relaxation: positions, and optionally the cell (full, fixed volume or masked), with an honest
convergence report. A relaxation that stops before ``fmax`` is reached raises, unless the caller asks for an
unconverged result, which then says so loudly (``converged=False`` plus a warning)."""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
from ase import Atoms, units

from ..choices import Optimizer
from ..errors import UmlipError, UnstableStructure
from ..io import provenance
from ..models import check_elements
from ..results import Result
from ._common import settings_keywords

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

CellMode = Literal["full", "fixed_volume", "positions"]


class RelaxationNotConverged(UmlipError, RuntimeError):
    """The optimiser used up its steps before the largest force (and stress) fell below ``fmax``."""


@dataclasses.dataclass(frozen=True)
class RelaxResult(Result):
    """A relaxed structure and how the relaxation went. ``atoms`` is a copy without a calculator
    (constraints, tags, magnetic moments and ``info`` of the input are kept)."""

    atoms: Atoms
    converged: bool
    steps: int
    cell_mode: str
    optimizer: str
    fmax_target_ev_per_angstrom: float
    #: largest force on any atom at the end (what ``fmax`` limits in positions mode)
    max_force_ev_per_angstrom: float
    #: largest stress component at the end; 0 in positions mode; in fixed_volume mode the pressure remains by design
    max_stress_gpa: float
    energy_initial_ev: float
    energy_ev: float
    volume_initial_angstrom3: float
    volume_angstrom3: float
    #: energy after each optimiser step, starting with the initial structure
    energies_ev: np.ndarray
    provenance: dict

    summary_fields = ("converged", "steps", "cell_mode", "max_force_ev_per_angstrom", "max_stress_gpa",
                      "energy_ev", "volume_angstrom3")

    @property
    def energy_per_atom_ev(self) -> float:
        return self.energy_ev / len(self.atoms)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["atoms"] = {
            "symbols": self.atoms.get_chemical_symbols(),
            "positions_angstrom": self.atoms.positions.tolist(),
            "cell_angstrom": self.atoms.cell.array.tolist(),
            "pbc": self.atoms.pbc.tolist(),
        }
        return out

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2), layout="constrained")
        ax.plot(np.arange(len(self.energies_ev)), self.energies_ev - self.energies_ev[-1], marker=".")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel("E - E_final (eV)")
        state = "converged" if self.converged else "NOT converged"
        ax.set_title(f"{self.optimizer}, {self.cell_mode}: {state} in {self.steps} steps")
        return ax


def _max_force(atoms: Atoms) -> float:
    forces = atoms.get_forces()  # constrained components are already zeroed by ASE
    return float(np.sqrt((forces**2).sum(axis=1)).max()) if len(forces) else 0.0


@dataclasses.dataclass(frozen=True)
class RelaxSettings:
    """relax_cell: relax the cell together with the positions (ASE's FrechetCellFilter); False relaxes positions only.
    fixed_volume: with relax_cell, keep the volume and relax only the cell shape.
    cell_mask: with relax_cell, six booleans (Voigt order xx yy zz yz xz xy) saying which strain components may
        relax, e.g. ``(0, 0, 1, 0, 0, 0)`` for a slab or stacking-fault cell that may only change its height.
    fmax: convergence threshold in eV/Å on every atom; with the cell relaxed, also on the stress times the volume
        per atom, as FrechetCellFilter defines it. steps: optimiser steps allowed.
    allow_unconverged: False (default) raises RelaxationNotConverged when ``steps`` run out; True returns the
        result with ``converged=False`` and warns.
    trajectory: an ASE trajectory file the optimiser writes, or None."""

    fmax: float = 0.01
    steps: int = 500
    relax_cell: bool = True
    fixed_volume: bool = False
    cell_mask: Sequence[bool] | None = None
    scalar_pressure_gpa: float = 0.0
    optimizer: Optimizer = "FIRE"
    allow_unconverged: bool = False
    trajectory: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("FIRE", "BFGS"):
            raise ValueError(f"RelaxSettings.optimizer must be 'FIRE' or 'BFGS', not {self.optimizer!r}")
        if self.fixed_volume and not self.relax_cell:
            raise ValueError("RelaxSettings: fixed_volume=True needs relax_cell=True (positions-only relaxations "
                             "never change the cell)")
        if self.cell_mask is not None and (not self.relax_cell or len(self.cell_mask) != 6):
            raise ValueError("RelaxSettings: cell_mask needs relax_cell=True and six entries in Voigt order "
                             "(xx yy zz yz xz xy)")


def compute(atoms: Atoms, calc: "Calculator", settings: RelaxSettings = RelaxSettings()) -> RelaxResult:
    """Relax ``atoms`` with ``calc`` (:class:`RelaxSettings`); the input is not modified."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    fmax, steps, relax_cell, fixed_volume = settings.fmax, settings.steps, settings.relax_cell, settings.fixed_volume
    cell_mask, optimizer, scalar_pressure_gpa = settings.cell_mask, settings.optimizer, settings.scalar_pressure_gpa
    check_elements(atoms, calc, where="relax")

    work = atoms.copy()
    work.calc = calc
    cell_mode: CellMode = ("fixed_volume" if fixed_volume else "full") if relax_cell else "positions"
    energy_initial = float(work.get_potential_energy())
    volume_initial = float(work.get_volume()) if work.pbc.all() else float("nan")
    if not np.isfinite(energy_initial):
        raise UnstableStructure(f"relax: the initial energy is {energy_initial}; check the structure for overlaps")

    target = work
    if relax_cell:
        target = FrechetCellFilter(work, mask=None if cell_mask is None else [bool(m) for m in cell_mask],
                                   constant_volume=fixed_volume, scalar_pressure=scalar_pressure_gpa * units.GPa)
    opt = (FIRE if optimizer == "FIRE" else BFGS)(target, logfile=None, trajectory=settings.trajectory)

    energies = [energy_initial]
    from tqdm.auto import tqdm

    with tqdm(total=steps, desc=f"relax ({cell_mode}, {optimizer})", disable=not settings.progress, leave=False) as bar:
        def observe() -> None:
            if opt.nsteps == 0:
                return  # the observer is also called before the first step
            energy = float(work.get_potential_energy())
            if not np.isfinite(energy):
                raise UnstableStructure(f"relax: energy became {energy} at step {opt.nsteps}")
            energies.append(energy)
            bar.update(1)

        opt.attach(observe, interval=1)
        converged = bool(opt.run(fmax=fmax, steps=steps))

    max_force = _max_force(work)
    max_stress = float(np.abs(work.get_stress()).max() / units.GPa) if relax_cell else 0.0
    result = RelaxResult(
        atoms=_detached_copy(work),
        converged=converged,
        steps=int(opt.nsteps),
        cell_mode=cell_mode,
        optimizer=optimizer,
        fmax_target_ev_per_angstrom=float(fmax),
        max_force_ev_per_angstrom=max_force,
        max_stress_gpa=max_stress,
        energy_initial_ev=energy_initial,
        energy_ev=float(work.get_potential_energy()),
        volume_initial_angstrom3=volume_initial,
        volume_angstrom3=float(work.get_volume()) if work.pbc.all() else float("nan"),
        energies_ev=np.asarray(energies),
        provenance=provenance(calc, fmax=fmax, steps=steps, cell_mode=cell_mode, cell_mask=cell_mask,
                              scalar_pressure_gpa=scalar_pressure_gpa, optimizer=optimizer),
    )
    if not converged:
        message = (f"relax ({cell_mode}, {optimizer}) did not converge in {steps} steps: max force "
                   f"{max_force:.4g} eV/Å, max stress {max_stress:.4g} GPa, target fmax {fmax} eV/Å")
        if not settings.allow_unconverged:
            raise RelaxationNotConverged(message + "; raise steps or pass allow_unconverged=True")
        warnings.warn("NOT CONVERGED: " + message, RuntimeWarning, stacklevel=2)
    return result


@settings_keywords(RelaxSettings)
def relax(atoms: Atoms, calc: "Calculator", **settings: Any) -> RelaxResult:
    """:func:`compute` with the fields of :class:`RelaxSettings` as keywords: ``relax(atoms, calc, fmax=0.005,
    relax_cell=False)``."""
    return compute(atoms, calc, RelaxSettings(**settings))


def _detached_copy(atoms: Atoms) -> Atoms:
    copy = atoms.copy()
    copy.calc = None
    return copy


def cli_relax(args) -> dict[str, Any]:
    """``umlip relax --model M --structure Ni|FILE [--fixed-cell] [--out relaxed.xyz]``: the relaxation's result."""
    from ..models import load_calculator
    from ._common import structure_from_argument

    atoms = structure_from_argument(args.structure)
    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    result = relax(atoms, calc, fmax=args.fmax, steps=args.steps, optimizer=args.optimizer,
                   relax_cell=not args.fixed_cell)
    if args.out:
        from ase.io import write

        write(args.out, result.atoms, format="extxyz")
    print(f"umlip relax: {'converged' if result.converged else 'NOT converged'} in {result.steps} steps, "
          f"E = {result.energy_per_atom_ev:.4f} eV/atom, "
          f"V = {result.volume_angstrom3 / len(result.atoms):.3f} Å^3/atom")
    return {"type": "RelaxResult", **result.to_dict()}
