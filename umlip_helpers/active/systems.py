"""Test systems for online active learning (FINETUNA's adsorbate-on-slab setting, plus vacancies and surfaces),
and the per-system comparison against parent-only optimisers (BFGS, and GPMin)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterator, Literal, get_args

if TYPE_CHECKING:
    from ase import Atoms

    from ..parents import Parent

ADSORBATES = ("H", "O", "C", "N", "CO", "OH")
METALS = ("Ni", "Cu", "Pt", "Pd", "Al")
BINDING_ATOM = {"CO": "C", "OH": "O"}  # the atom a molecular adsorbate binds to the surface with
Profile = Literal["ci", "small", "full", "all", "tuning"]
ParentOptimizer = Literal["BFGS", "GPMin"]
TUNING_SEED = 5000  # rattle seeds of the tuning set: the benchmark uses 0, pretraining 1000 + index
TILTED_SEED = 7000  # seeds of tilted_molecule_frames' starts


def parent_relax(atoms: "Atoms", parent: Parent, fmax: float = 0.03, optimizer: ParentOptimizer = "BFGS",
                 maxstep: float = 0.2, max_steps: int = 1000, keep_path: bool = False) -> dict[str, Any]:
    """A baseline on the parent alone: ASE's BFGS (``maxstep``), or ASE's GPMin (a Gaussian process on the parent's
    energies and forces, with its default hyperparameters and no other prior). Returns parent calls, final energy
    and fmax, and seconds; with ``keep_path`` also ``path``, the (positions, energy, forces) the optimiser reported
    at the start and after every step, all of them parent results it had already computed."""
    from ase.optimize import BFGS, GPMin

    from ..parents import parent_calculator
    from .surrogate import constrained_fmax

    if optimizer not in get_args(ParentOptimizer):
        raise ValueError(f"optimizer must be one of {get_args(ParentOptimizer)}, not {optimizer!r}")
    work = atoms.copy()
    work.calc = parent_calculator(parent)
    start = time.perf_counter()
    relax = BFGS(work, maxstep=maxstep, logfile=None) if optimizer == "BFGS" else GPMin(work, logfile=None)
    path = []
    if keep_path:
        relax.attach(lambda: path.append((work.get_positions(), float(work.get_potential_energy()),
                                          work.get_forces(apply_constraint=False).copy())))
    converged = relax.run(fmax=fmax, steps=max_steps)
    calls = relax.nsteps + 1 if optimizer == "BFGS" else relax.function_calls  # GPMin may re-evaluate within a step
    return {"n_parent_calls": calls, "converged": bool(converged),
            "final_energy_ev": float(work.get_potential_energy()),
            "final_fmax_ev_per_angstrom": constrained_fmax(work, work.get_forces(apply_constraint=False)),
            "seconds": time.perf_counter() - start, "positions_angstrom": work.get_positions(),
            **({"path": path} if keep_path else {})}


def adsorbate_slab(metal: str, facet: str, adsorbate: str, size: tuple[int, int, int] = (2, 2, 3),
                   fixed_layers: int = 1):
    """``adsorbate`` on the fcc/hollow site of an fcc(111)/(100) slab of ``size`` with the bottom layers fixed; CO
    stands upright on its C, OH on its O."""
    from ase.build import add_adsorbate, fcc100, fcc111, molecule
    from ase.constraints import FixAtoms

    build, site = (fcc111, "fcc") if facet == "111" else (fcc100, "hollow")
    slab = build(metal, size, vacuum=6.0)
    if adsorbate in ("CO", "OH"):
        mol = molecule(adsorbate)  # ASE lists O first in both
        binding = mol.get_chemical_symbols().index(BINDING_ATOM[adsorbate])
        if mol[binding].position[2] > mol[1 - binding].position[2]:
            mol.positions[:, 2] *= -1
        add_adsorbate(slab, mol, 1.8, site, mol_index=binding)
    else:
        add_adsorbate(slab, adsorbate, 1.5, site)
    layers = size[2]
    slab.set_constraint(FixAtoms(indices=[atom.index for atom in slab if atom.tag > layers - fixed_layers]))
    return slab


def bulk_vacancy(metal: str, repeat: tuple[int, int, int] = (2, 2, 1)):
    """A vacancy in a cubic fcc supercell, rattled by 0.02 Å."""
    from ase.build import bulk

    atoms = bulk(metal, "fcc", cubic=True).repeat(repeat)
    del atoms[0]
    atoms.rattle(0.02, seed=0)
    return atoms


def clean_surface(metal: str, facet: str = "111", size: tuple[int, int, int] = (2, 2, 4), fixed_layers: int = 2):
    """A clean fcc(111)/(100) slab with the bottom layers fixed, rattled by 0.03 Å."""
    from ase.build import fcc100, fcc111
    from ase.constraints import FixAtoms

    slab = (fcc111 if facet == "111" else fcc100)(metal, size, vacuum=6.0)
    slab.set_constraint(FixAtoms(indices=[atom.index for atom in slab if atom.tag > size[2] - fixed_layers]))
    slab.rattle(0.03, seed=1)
    return slab


def rattle_free_metal(atoms, stdev_angstrom: float = 0.1, seed: int = 0):
    """Displace the unconstrained metal atoms randomly (an unrelaxed surface, like OC20's initial structures);
    adsorbates keep their geometry."""
    import numpy as np

    from .surrogate import free_atoms

    movable = np.array([symbol in METALS for symbol in atoms.get_chemical_symbols()]) & free_atoms(atoms)
    atoms.positions[movable] += np.random.default_rng(seed).normal(0.0, stdev_angstrom, (movable.sum(), 3))
    return atoms


def benchmark_systems(profile: Profile = "ci") -> Iterator[tuple[str, Any]]:
    """(name, Atoms) pairs.

    * "ci": 3 small systems (tests, notebook 06).
    * "full": FINETUNA-sized, 30 systems of 31–38 atoms: per metal two adsorbates on 3×3×4 (111) and two on
      3×3×4 (100) slabs with the bottom two layers fixed (the adsorbates cycle so that every adsorbate meets every
      facet), a vacancy in a 2×2×2 cubic supercell (31 atoms) and a clean 3×3×4 (100) surface; the free metal
      atoms start displaced by 0.1 Å (:func:`rattle_free_metal`), as OC20's unrelaxed initial structures.
    * "small": the same 30 systems on 2×2×3 slabs (bottom layer fixed), 15-atom vacancy cells and 2×2×4 (111)
      surfaces (13–16 atoms; parent-only BFGS needs only ~15 steps there).
    * "all": every adsorbate on every facet of every metal at the "full" size (70 systems).
    * "tuning": the 45 "full"-sized slabs that are not benchmark systems (:func:`other_full_size_slabs`), each
      rattled with its own seed (``TUNING_SEED`` + index): a held-out set for choosing :func:`relax_active`'s
      settings without looking at the benchmark. Its structures are the full-size pretraining structures with
      other rattles, so a prior pretrained on them has seen their minima.
    """
    if profile == "tuning":
        for index, (name, atoms) in enumerate(other_full_size_slabs()):
            yield name, rattle_free_metal(atoms, 0.1, seed=TUNING_SEED + index)
        return
    if profile == "ci":
        yield "Cu(111)+O", adsorbate_slab("Cu", "111", "O")
        yield "Pt(100)+CO", adsorbate_slab("Pt", "100", "CO")
        yield "Ni vacancy", bulk_vacancy("Ni")
        return
    if profile not in ("small", "full", "all"):
        raise ValueError(f"profile must be ci, small, full, all or tuning, not {profile!r}")
    small = profile == "small"
    slab_size, fixed = ((2, 2, 3), 1) if small else ((3, 3, 4), 2)
    start = (lambda atoms: atoms) if small else rattle_free_metal
    for i, metal in enumerate(METALS):
        for f, facet in enumerate(("111", "100")):
            picked = ADSORBATES if profile == "all" else \
                [ADSORBATES[(2 * (2 * i + f) + t) % len(ADSORBATES)] for t in range(2)]
            for adsorbate in picked:
                yield f"{metal}({facet})+{adsorbate}", start(adsorbate_slab(metal, facet, adsorbate, slab_size, fixed))
        yield f"{metal} vacancy", start(bulk_vacancy(metal, (2, 2, 1) if small else (2, 2, 2)))
        if small:
            yield f"{metal}(111) clean", clean_surface(metal)
        else:
            yield f"{metal}(100) clean", start(clean_surface(metal, "100", (3, 3, 4), 2))


def pretraining_structures(size: Literal["small", "full"] = "small") -> list:
    """The unrattled structures :func:`pretraining_frames` labels, none of them a "full" benchmark system.

    * "small": every adsorbate on both facets of every metal on 2×2×3 slabs, plus 15-atom vacancy cells and 2×2×4
      (111) surfaces (70 structures).
    * "full": the benchmark's own size (3×3×4 slabs, bottom two layers fixed) with the 40 adsorbate-facet-metal
      combinations the benchmark does not use, plus 3×3×4 (111) surfaces (the benchmark's are (100)): 45
      structures, the same slabs as the benchmark's with other adsorbates on them, as OC20 holds for FINETUNA's
      prior.
    """
    structures = []
    if size == "small":
        for metal in METALS:
            structures += [adsorbate_slab(metal, facet, adsorbate) for facet in ("111", "100")
                           for adsorbate in ADSORBATES]
            structures += [bulk_vacancy(metal), clean_surface(metal)]
        return structures
    if size != "full":
        raise ValueError(f"size must be small or full, not {size!r}")
    return [atoms for _, atoms in other_full_size_slabs()]


def other_full_size_slabs() -> list[tuple[str, Any]]:
    """(name, unrattled Atoms) of the benchmark-sized slabs (3×3×4, bottom two layers fixed) that are not "full"
    benchmark systems: the 40 adsorbate-facet-metal combinations it does not use, and (111) surfaces."""
    benchmark = {name for name, _ in benchmark_systems("full")}
    slabs = []
    for metal in METALS:
        slabs += [(f"{metal}({facet})+{adsorbate}", adsorbate_slab(metal, facet, adsorbate, (3, 3, 4), 2))
                  for facet in ("111", "100") for adsorbate in ADSORBATES
                  if f"{metal}({facet})+{adsorbate}" not in benchmark]
        slabs.append((f"{metal}(111) clean", clean_surface(metal, "111", (3, 3, 4), 2)))
    return slabs


def pretraining_frames(parent_factory=None, fmax: float = 0.03, seed: int = 1000, path_frames: int = 0,
                       size: Literal["small", "full"] = "small") -> tuple[list, int]:
    """Parent-labelled frames for a prior matched to the parent's level of theory, as FINETUNA's prior was trained
    on OC20's DFT: the :func:`pretraining_structures` of ``size``, each rattled (:func:`rattle_free_metal`, 0.1 Å,
    its own seed, never the benchmark's) and labelled at its start and at its parent-only BFGS minimum, plus
    ``path_frames`` points evenly spaced along the relaxation between them (labels the relaxation computed anyway,
    so they cost no parent call).

    Returns (frames, parent calls spent), the calls counting the BFGS relaxations that found the minima.
    """
    import numpy as np

    from ..data import LabelledFrame
    from ..parents import emt_parent
    parent_factory = parent_factory or emt_parent
    structures = pretraining_structures(size)
    frames, calls = [], 0
    for index, atoms in enumerate(structures):
        start = rattle_free_metal(atoms, 0.1, seed=seed + index)
        relaxed = parent_relax(start, parent_factory(), fmax=fmax, keep_path=True)
        path = relaxed["path"]
        between = np.linspace(1, len(path) - 2, path_frames).round().astype(int) if len(path) > 2 else []
        for step in sorted({0, *between, len(path) - 1}):
            positions, energy, forces = path[step]
            labelled = start.copy()
            labelled.positions = positions
            frames.append(LabelledFrame(labelled, energy, forces, None, "pretraining", len(frames)))
        calls += relaxed["n_parent_calls"]
    return frames, calls


def tilt_molecule(atoms, adsorbate: str, degrees: float, azimuth_rad: float):
    """Rotate a molecular adsorbate (the last two atoms of :func:`adsorbate_slab`) in place about its binding atom by
    ``degrees``, about the horizontal axis at ``azimuth_rad``; returns ``atoms``."""
    import numpy as np
    from scipy.spatial.transform import Rotation

    binding, top = sorted((len(atoms) - 2, len(atoms) - 1), key=lambda i: atoms[i].symbol != BINDING_ATOM[adsorbate])
    axis = np.array([np.cos(azimuth_rad), np.sin(azimuth_rad), 0.0])
    bond = atoms.positions[top] - atoms.positions[binding]
    atoms.positions[top] = atoms.positions[binding] + Rotation.from_rotvec(np.radians(degrees) * axis).apply(bond)
    return atoms


def tilted_molecule_frames(parent_factory=None, fmax: float = 0.03, tilt_degrees: float = 30.0, starts: int = 2,
                           path_points: int = 10, seed: int = TILTED_SEED) -> tuple[list, int, list[dict]]:
    """Parent-labelled points along parent-only BFGS relaxations of the CO and OH slabs of
    :func:`other_full_size_slabs` (never a benchmark system), each started ``starts`` times rattled
    (:func:`rattle_free_metal`, 0.1 Å) with the molecule tilted by ``tilt_degrees`` at a random azimuth.

    From an upright start parent-only BFGS stops these molecules at a saddle point, where the tilt curvature is
    negative (:func:`prior_curvature`), so a prior trained on such paths knows nothing of the tilted basins an
    online learner can fall into. These frames show it them. ``path_points`` evenly spaced points of each
    relaxation are kept, start and minimum included.

    Returns (frames, parent calls spent, one record per relaxation).
    """
    import numpy as np

    from ..data import LabelledFrame
    from ..parents import emt_parent
    parent_factory = parent_factory or emt_parent
    rng = np.random.default_rng(seed)
    frames, calls, runs = [], 0, []
    for index, (name, atoms) in enumerate(other_full_size_slabs()):
        adsorbate = name.split("+")[-1]
        if adsorbate not in BINDING_ATOM:
            continue
        for repeat in range(starts):
            start = tilt_molecule(rattle_free_metal(atoms.copy(), 0.1, seed=seed + 10 * index + repeat), adsorbate,
                                  tilt_degrees, rng.uniform(0.0, 2 * np.pi))
            relaxed = parent_relax(start, parent_factory(), fmax=fmax, keep_path=True)
            path = relaxed["path"]
            for step in sorted(set(np.linspace(0, len(path) - 1, path_points).round().astype(int))):
                positions, energy, forces = path[step]
                labelled = start.copy()
                labelled.positions = positions
                frames.append(LabelledFrame(labelled, energy, forces, None, f"tilted {name}", len(frames)))
            calls += relaxed["n_parent_calls"]
            runs.append({"system": name, "start": repeat, "parent_calls": relaxed["n_parent_calls"],
                         "converged": relaxed["converged"], "final_energy_ev": relaxed["final_energy_ev"]})
    return frames, calls, runs


def compare_to_parent_only(atoms, calc, parent_factory, fmax: float = 0.03, **options) -> tuple[dict, Any]:
    """Relax ``atoms`` with parent-only BFGS (the baseline), parent-only GPMin (a Gaussian-process optimiser that
    needs no model, the bar any learned prior has to clear) and :func:`relax_active`; return a table row and the
    active result.

    Unless ``max_parent_calls`` is given, the online learner may use as many parent calls as the baseline needed.
    """
    from .online import relax_active

    baseline = parent_relax(atoms, parent_factory(), fmax=fmax)
    gpmin = parent_relax(atoms, parent_factory(), fmax=fmax, optimizer="GPMin")
    options.setdefault("max_parent_calls", baseline["n_parent_calls"])  # more would lose to the baseline anyway
    active = relax_active(atoms, calc, parent_factory(), fmax=fmax, progress=False, **options)
    row = {"n_atoms": len(atoms), "baseline_parent_calls": baseline["n_parent_calls"],
           "baseline_converged": baseline["converged"], "baseline_energy_ev": baseline["final_energy_ev"],
           "active_parent_calls": active.n_parent_calls, "active_converged": active.converged,
           "parent_call_reasons": active.parent_call_reasons,
           "active_energy_ev": active.final_parent_energy_ev,
           "energy_difference_ev": active.final_parent_energy_ev - baseline["final_energy_ev"],
           "parent_calls_percent": 100.0 * active.n_parent_calls / baseline["n_parent_calls"],
           "gpmin_parent_calls": gpmin["n_parent_calls"], "gpmin_converged": gpmin["converged"],
           "gpmin_energy_difference_ev": gpmin["final_energy_ev"] - baseline["final_energy_ev"],
           "surrogate_steps": active.n_surrogate_steps, "surrogate_seconds": active.surrogate_seconds,
           "parent_seconds": active.parent_seconds, "training_seconds": active.training_seconds,
           "baseline_seconds": baseline["seconds"]}
    return row, active


def mixed_prior(model, weight: float, parent_factory=None):
    """``(1 - weight) parent + weight model``: a prior between the parent itself (0) and ``model`` (1), to measure
    how good a prior must be. ``parent_factory`` defaults to EMT."""
    from ase.calculators.mixing import LinearCombinationCalculator

    from ..parents import emt_parent

    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the prior's weight must lie in [0, 1], got {weight}")
    parent = (parent_factory or emt_parent)()
    return parent if weight == 0 else LinearCombinationCalculator([parent, model], [1.0 - weight, weight])


def prior_force_error(atoms, prior, parent) -> tuple[float, float]:
    """Mean and max over the free atoms of ``|F_prior - F_parent|`` (eV/Å) at ``atoms``."""
    import numpy as np

    from .surrogate import free_atoms

    work = atoms.copy()
    work.calc = prior
    forces = work.get_forces(apply_constraint=False)
    work.calc = parent
    error = np.linalg.norm(forces - work.get_forces(apply_constraint=False), axis=1)[free_atoms(atoms)]
    return float(error.mean()), float(error.max())


def prior_curvature(atoms, prior, parent, n_soft: int = 6, delta_angstrom: float = 0.005) -> dict:
    """How well the prior's Hessian matches the parent's at ``atoms`` (free atoms; ASE's finite-difference
    :class:`~ase.vibrations.Vibrations`, central differences of ``delta_angstrom``; rigid translations are left out
    where no atom is held).

    Returns the parent's ``n_soft`` softest eigenvalues (eV/Å²), the prior's curvature along each of those modes as
    a ratio to the parent's, the relative (Frobenius) Hessian error, and ``newton_contraction``: the largest factor
    by which one step to the minimum of the prior corrected by the parent's force residual (what the online learner
    takes after a parent call) leaves the parent's force, ``‖I - H_parent H_prior⁻¹‖₂`` in the harmonic picture.
    Near 0 one parent call per step suffices; near or above 1 the learner needs several calls, or a bounded step,
    to converge.
    """
    import tempfile

    import numpy as np
    from ase.vibrations import Vibrations
    from scipy.linalg import null_space

    from .surrogate import free_atoms

    free = np.flatnonzero(free_atoms(atoms))

    def hessian(calc) -> np.ndarray:
        work = atoms.copy()
        work.calc = calc
        with tempfile.TemporaryDirectory() as tmp:
            vibrations = Vibrations(work, indices=free, delta=delta_angstrom, nfree=2, name=f"{tmp}/vib")
            vibrations.run()
            matrix = vibrations.get_vibrations().get_hessian_2d()
        return 0.5 * (matrix + matrix.T)

    parent_hessian, prior_hessian = hessian(parent), hessian(prior)
    if free.size == len(atoms):  # nothing held: rigid translations cost no energy, so leave them out
        rest = null_space(np.tile(np.eye(3), free.size))  # orthonormal basis orthogonal to the three translations
        parent_hessian, prior_hessian = (rest.T @ h @ rest for h in (parent_hessian, prior_hessian))
    eigenvalues, modes = np.linalg.eigh(parent_hessian)
    soft = modes[:, :n_soft]
    contraction = np.eye(len(eigenvalues)) - parent_hessian @ np.linalg.inv(prior_hessian)
    return {"parent_soft_eigenvalues_ev_per_angstrom2": eigenvalues[:n_soft].tolist(),
            "prior_over_parent_soft_curvature": (np.einsum("im,ij,jm->m", soft, prior_hessian, soft)
                                                 / eigenvalues[:n_soft]).tolist(),
            "relative_hessian_error": float(np.linalg.norm(prior_hessian - parent_hessian)
                                            / np.linalg.norm(parent_hessian)),
            "newton_contraction": float(np.linalg.norm(contraction, 2))}


def relax_with_mixed_prior(atoms, model, weight: float, baseline: dict, fmax: float = 0.03, **options) -> dict:
    """One point of the prior-quality sweep: :func:`relax_active` with the fixed prior :func:`mixed_prior` (EMT
    parent, the GP correction the only learner) against a :func:`parent_relax` ``baseline`` from the same start."""
    from ..parents import emt_parent
    from .online import relax_active

    prior = mixed_prior(model, weight)
    mean_error, max_error = prior_force_error(atoms, prior, emt_parent())
    options.setdefault("progress", False)
    active = relax_active(atoms, prior, emt_parent(), fmax=fmax, update="none", **options)
    return {"prior_force_error_mean_ev_per_angstrom": mean_error, "prior_force_error_max_ev_per_angstrom": max_error,
            "baseline_parent_calls": baseline["n_parent_calls"], "active_parent_calls": active.n_parent_calls,
            "active_converged": active.converged,
            "energy_difference_ev": active.final_parent_energy_ev - baseline["final_energy_ev"]}


def fraction_within(rows, tolerance_ev: float = 0.02, method: str = "active") -> float:
    """Fraction of rows whose ``method`` ("active" or "gpmin") converged to an energy at most ``tolerance_ev`` above
    the BFGS baseline's (FINETUNA's accuracy criterion)."""
    import numpy as np

    difference = "energy_difference_ev" if method == "active" else f"{method}_energy_difference_ev"
    return float(np.mean([bool(r[f"{method}_converged"]) and r[difference] <= tolerance_ev for r in rows]))
