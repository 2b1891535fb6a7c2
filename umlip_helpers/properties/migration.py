"""Vacancy migration in an elemental FCC crystal: the nearest-neighbour hop with ASE's nudged elastic band
(``ase.mep.NEB``, climbing image) between relaxed endpoints, and the self-diffusion activation energy
Q = E_f(vacancy) + E_m.

Takes the *relaxed* bulk crystal (relax it first with :func:`umlip_helpers.properties.relax.relax`). One calculator is
shared by all images (``allow_shared_calculator``), which is how a uMLIP is used: the images are evaluated one
after the other. The hop is symmetric, so the path is checked for symmetry and a single maximum; a path that fails
either check is reported (``symmetric`` / ``single_maximum``) and warned about.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from ase import Atoms
from ase.build import bulk as build_bulk
from ase.constraints import FixedPlane
from ase.geometry import find_mic
from tqdm.auto import tqdm

from ..io import provenance, to_jsonable
from ..results import Result
from ._common import fcc_lattice_parameter
from .relax import relax
from .vacancy import vacancy_formation_energy

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

NEBMethod = Literal["aseneb", "improvedtangent", "eb", "spline", "string"]
#: "ode": ASE's NEBOptimizer (adaptive ODE integration, fewest force calls in our measurements); FIRE or BFGS
NEBOptimizerName = Literal["ode", "FIRE", "BFGS"]
#: optimiser steps allowed to the endpoint (and vacancy) relaxations; ``MigrationSettings.steps`` limits the band
ENDPOINT_STEPS = 500


@dataclasses.dataclass(frozen=True)
class MigrationSettings:
    """supercell: the cubic cell repeated n x n x n (n = 3 is 108 sites). n_images: intermediate NEB images (odd
    puts one on the saddle by symmetry). fmax: NEB force threshold (eV/Å); endpoint_fmax: the endpoints'.
    symmetry_tolerance_ev: largest allowed difference between mirror images of the path.
    with_formation_energy: also compute E_f in the same supercell (vacancy workflow) and Q = E_f + E_m."""

    supercell: int = 3
    n_images: int = 5
    climb: bool = True
    spring_ev_per_angstrom2: float = 0.1
    method: NEBMethod = "improvedtangent"
    interpolation: Literal["idpp", "linear"] = "idpp"
    optimizer: NEBOptimizerName = "ode"
    fmax: float = 0.03
    endpoint_fmax: float = 0.01
    steps: int = 500
    symmetry_tolerance_ev: float = 0.02
    with_formation_energy: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if int(self.supercell) != self.supercell or self.supercell < 2:
            raise ValueError(f"MigrationSettings.supercell must be an integer of at least 2 (32 sites), got "
                             f"{self.supercell}")
        if int(self.n_images) != self.n_images or self.n_images < 1:
            raise ValueError(f"MigrationSettings.n_images must be a positive integer, got {self.n_images}")
        if self.optimizer not in ("ode", "FIRE", "BFGS"):
            raise ValueError(f"MigrationSettings.optimizer must be 'ode', 'FIRE' or 'BFGS', got {self.optimizer!r}")
        if self.interpolation not in ("idpp", "linear"):
            raise ValueError(f"MigrationSettings.interpolation must be 'idpp' or 'linear', got {self.interpolation!r}")
        for name in ("spring_ev_per_angstrom2", "fmax", "endpoint_fmax", "symmetry_tolerance_ev"):
            if not getattr(self, name) > 0:
                raise ValueError(f"MigrationSettings.{name} must be positive, got {getattr(self, name)}")
        if self.steps < 1:
            raise ValueError(f"MigrationSettings.steps must be at least 1, got {self.steps}")


@dataclasses.dataclass(frozen=True)
class MigrationResult(Result):
    """Nearest-neighbour vacancy hop. ``barrier_ev`` = E_saddle - E_initial (climbing image); the path is the
    image energies relative to the initial state against the reaction coordinate (cumulative distance), with
    ASE's force-curve spline (ase.utils.forcecurve) through them for plotting. ``saddle_atoms``: the highest
    image, no calculator."""

    barrier_ev: float
    barrier_reverse_ev: float
    reaction_coordinate_angstrom: np.ndarray
    path_energies_ev: np.ndarray
    fit_coordinate_angstrom: np.ndarray
    fit_energies_ev: np.ndarray
    symmetric: bool
    single_maximum: bool
    neb_converged: bool
    hop_distance_angstrom: float
    n_sites: int
    vacancy_formation_ev: float | None
    activation_energy_ev: float | None
    a0_angstrom: float
    saddle_atoms: Atoms
    provenance: dict

    summary_fields = ("barrier_ev", "vacancy_formation_ev", "activation_energy_ev", "symmetric", "single_maximum",
                      "neb_converged", "n_sites")

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["saddle_atoms"] = {"symbols": self.saddle_atoms.get_chemical_symbols(),
                               "positions_angstrom": self.saddle_atoms.positions,
                               "cell_angstrom": self.saddle_atoms.cell.array}
        return to_jsonable(out)

    def plot(self, ax=None, label: str | None = None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        line, = ax.plot(self.fit_coordinate_angstrom, self.fit_energies_ev, "-",
                        label=label or f"E_m = {self.barrier_ev:.2f} eV")
        ax.plot(self.reaction_coordinate_angstrom, self.path_energies_ev, "o", color=line.get_color())
        ax.set_xlabel("reaction coordinate (Å)")
        ax.set_ylabel("E - E_initial (eV)")
        ax.set_title("vacancy hop, climbing-image NEB")
        ax.legend()
        return ax


def hop_endpoints(atoms: Atoms, supercell: int) -> tuple[Atoms, Atoms, int]:
    """(initial, final, index of the hopping atom): an n x n x n cubic supercell of the FCC crystal ``atoms`` with
    site 0 vacant, and the same with its nearest neighbour moved into site 0. Both unrelaxed."""
    symbol, a0 = fcc_lattice_parameter(atoms)
    perfect = build_bulk(symbol, "fcc", a=a0, cubic=True).repeat(supercell)
    distances = perfect.get_distances(0, range(1, len(perfect)), mic=True)
    neighbour = int(np.argmin(distances)) + 1
    site = perfect.positions[0].copy()
    initial = perfect.copy()
    del initial[0]
    hopper = neighbour - 1  # its index once site 0 is gone
    final = initial.copy()
    final.positions[hopper] = site
    return initial, final, hopper


def _path_checks(energies: np.ndarray, tolerance: float) -> tuple[bool, bool]:
    """(symmetric, single maximum) of image energies from initial to final state."""
    symmetric = bool(np.all(np.abs(energies - energies[::-1]) <= tolerance))
    rises = np.diff(energies) > 0
    single_maximum = bool(rises[0] and not rises[-1] and np.count_nonzero(rises[1:] != rises[:-1]) == 1)
    return symmetric, single_maximum


def _run_neb(initial: Atoms, final: Atoms, calc: "Calculator", settings: MigrationSettings) -> tuple[list, bool]:
    from ase.mep import NEB
    from ase.mep.neb import NEBOptimizer
    from ase.optimize import BFGS, FIRE

    images = [initial] + [initial.copy() for _ in range(settings.n_images)] + [final]
    for image in images:
        image.calc = calc
    neb = NEB(images, k=settings.spring_ev_per_angstrom2, climb=settings.climb, method=settings.method,
              allow_shared_calculator=True)
    neb.interpolate(method=settings.interpolation, mic=True)
    optimizer = {"ode": NEBOptimizer, "FIRE": FIRE, "BFGS": BFGS}[settings.optimizer](neb, logfile=None)
    with tqdm(total=settings.steps, desc="NEB", disable=not settings.progress, leave=False) as bar:
        optimizer.attach(lambda: bar.update(1), interval=1)
        optimizer.run(fmax=settings.fmax, steps=settings.steps)
    neb.get_forces()  # judged by the band's residual for every optimizer (NEBOptimizer's run() says True anyway)
    converged = bool(neb.get_residual() <= settings.fmax)
    return images, converged


def compute(atoms: Atoms, calc: "Calculator", settings: MigrationSettings = MigrationSettings()) -> MigrationResult:
    """Migration barrier (eV) of a vacancy's nearest-neighbour hop in the FCC crystal ``atoms`` (relaxed bulk, any
    cell) with ``calc``, its energy path and checks, and (``settings.with_formation_energy``) E_f and Q = E_f + E_m
    in the same supercell. See :class:`MigrationSettings`."""
    from ase.geometry import find_mic
    from ase.utils.forcecurve import fit_images

    symbol, a0 = fcc_lattice_parameter(atoms)
    initial, final, hopper = hop_endpoints(atoms, settings.supercell)
    ends = [relax(end, calc, fmax=settings.endpoint_fmax, steps=ENDPOINT_STEPS, relax_cell=False,
                  progress=False).atoms for end in (initial, final)]
    images, converged = _run_neb(*ends, calc, settings)
    fit = fit_images(images)
    energies = np.asarray(fit.energies)  # relative to the initial image
    symmetric, single_maximum = _path_checks(energies, settings.symmetry_tolerance_ev)
    top = int(np.argmax(energies))
    if not (symmetric and single_maximum and converged):
        warnings.warn(f"migration.compute: the NEB path is {'' if symmetric else 'NOT '}symmetric within "
                      f"{settings.symmetry_tolerance_ev} eV, has {'one' if single_maximum else 'NOT one'} maximum and"
                      f" {'converged' if converged else 'did NOT converge'} (image energies "
                      f"{np.round(energies, 3).tolist()} eV); raise steps or n_images", RuntimeWarning, stacklevel=2)
    formation = None
    if settings.with_formation_energy:
        cubic = build_bulk(symbol, "fcc", a=a0, cubic=True)
        formation = vacancy_formation_energy(cubic, calc, sizes=(settings.supercell,), fmax=settings.endpoint_fmax,
                                             steps=ENDPOINT_STEPS, progress=False).e_vac_ev
    saddle = images[top].copy()
    saddle.calc = None
    return MigrationResult(
        barrier_ev=float(energies[top]),
        barrier_reverse_ev=float(energies[top] - energies[-1]),
        reaction_coordinate_angstrom=np.asarray(fit.path),
        path_energies_ev=energies,
        fit_coordinate_angstrom=np.asarray(fit.fit_path),
        fit_energies_ev=np.asarray(fit.fit_energies),
        symmetric=symmetric,
        single_maximum=single_maximum,
        neb_converged=converged,
        hop_distance_angstrom=float(find_mic(ends[1].positions[hopper] - ends[0].positions[hopper], initial.cell)[1]),
        n_sites=len(initial) + 1,
        vacancy_formation_ev=formation,
        activation_energy_ev=None if formation is None else float(formation + energies[top]),
        a0_angstrom=a0,
        saddle_atoms=saddle,
        provenance=provenance(calc, **dataclasses.asdict(settings), symbol=symbol, a0_angstrom=a0),
    )


#: the name the notebook reads best with
vacancy_migration = compute


def midpoint_saddle_barrier(atoms: Atoms, calc: "Calculator", supercell: int = 3, fmax: float = 0.01,
                            steps: int = 500) -> float:
    """The same barrier without an elastic band: the hop is mirror-symmetric, so its saddle lies on the plane
    halfway between the two sites. The hopping atom is put at the midpoint and kept on that plane (ASE FixedPlane),
    every other atom relaxes; E(constrained) - E(relaxed initial state) is the barrier."""
    initial, final, hopper = hop_endpoints(atoms, supercell)
    start = relax(initial, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
    saddle = initial.copy()
    # the nearest neighbour may sit across the periodic boundary: the hop is the minimum-image vector
    direction = find_mic(final.positions[hopper] - initial.positions[hopper], initial.cell, initial.pbc)[0]
    saddle.positions[hopper] += direction / 2
    saddle.set_constraint(FixedPlane(hopper, direction))
    top = relax(saddle, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
    return float(top.energy_ev - start.energy_ev)


def comparison_rows(result: MigrationResult, table: dict | None = None) -> list[dict]:
    """vacancy_migration_energy and (with E_f) self_diffusion_activation_energy against data/references, as
    :func:`references.comparison_rows` gives rows (E_f itself is the vacancy workflow's row)."""
    from .references import compare_to_reference

    values = {"vacancy_migration_energy": result.barrier_ev,
              "self_diffusion_activation_energy": result.activation_energy_ev}
    return [{"property": quantity, **compare_to_reference(quantity, value, table), "unit": "eV"}
            for quantity, value in values.items() if value is not None]


__all__ = ["MigrationResult", "MigrationSettings", "comparison_rows", "compute", "hop_endpoints",
           "midpoint_saddle_barrier", "vacancy_migration"]
