"""Test systems for online active learning (FINETUNA's adsorbate-on-slab setting, plus vacancies and surfaces),
and the per-system comparison against parent-only BFGS."""

from __future__ import annotations

from typing import Any, Iterator

ADSORBATES = ("H", "O", "C", "N", "CO", "OH")
METALS = ("Ni", "Cu", "Pt", "Pd", "Al")


def adsorbate_slab(metal: str, facet: str, adsorbate: str):
    from ase.build import add_adsorbate, fcc100, fcc111, molecule
    from ase.constraints import FixAtoms

    build, site = (fcc111, "fcc") if facet == "111" else (fcc100, "hollow")
    slab = build(metal, (2, 2, 3), vacuum=6.0)
    if adsorbate in ("CO", "OH"):
        mol = molecule(adsorbate)
        if mol[0].position[2] > mol[1].position[2]:  # bind through C (CO) or O (OH)
            mol.positions[:, 2] *= -1
        mol.translate(-mol[0].position)
        add_adsorbate(slab, mol, 1.8, site)
    else:
        add_adsorbate(slab, adsorbate, 1.5, site)
    slab.set_constraint(FixAtoms(indices=[atom.index for atom in slab if atom.tag == 3]))
    return slab


def bulk_vacancy(metal: str):
    from ase.build import bulk

    atoms = bulk(metal, "fcc", cubic=True).repeat((2, 2, 1))
    del atoms[0]
    atoms.rattle(0.02, seed=0)
    return atoms


def clean_surface(metal: str):
    from ase.build import fcc111
    from ase.constraints import FixAtoms

    slab = fcc111(metal, (2, 2, 4), vacuum=6.0)
    slab.set_constraint(FixAtoms(indices=[atom.index for atom in slab if atom.tag >= 3]))
    slab.rattle(0.03, seed=1)
    return slab


def benchmark_systems(profile: str = "ci") -> Iterator[tuple[str, Any]]:
    """(name, Atoms) pairs. "ci": 3 systems. "full": 30, like FINETUNA's set: per metal two adsorbates on (111)
    and two on (100), cycling through the adsorbates so that every adsorbate meets every facet, plus the metal's
    bulk vacancy and clean (111) surface. "all": every adsorbate on every facet of every metal (70 systems)."""
    if profile == "ci":
        yield "Cu(111)+O", adsorbate_slab("Cu", "111", "O")
        yield "Pt(100)+CO", adsorbate_slab("Pt", "100", "CO")
        yield "Ni vacancy", bulk_vacancy("Ni")
        return
    for i, metal in enumerate(METALS):
        for f, facet in enumerate(("111", "100")):
            picked = ADSORBATES if profile == "all" else \
                [ADSORBATES[(2 * (2 * i + f) + t) % len(ADSORBATES)] for t in range(2)]
            for adsorbate in picked:
                yield f"{metal}({facet})+{adsorbate}", adsorbate_slab(metal, facet, adsorbate)
        yield f"{metal} vacancy", bulk_vacancy(metal)
        yield f"{metal}(111) clean", clean_surface(metal)


def compare_to_parent_bfgs(atoms, calc, parent_factory, fmax: float = 0.03, **options) -> tuple[dict, Any]:
    """Relax ``atoms`` with parent-only BFGS and with :func:`relax_active`; return a table row and the active result.

    Unless ``max_parent_calls`` is given, the online learner may use as many parent calls as the baseline needed.
    """
    from .online import parent_bfgs, relax_active

    baseline = parent_bfgs(atoms, parent_factory(), fmax=fmax)
    options.setdefault("max_parent_calls", baseline["n_parent_calls"])  # more would lose to the baseline anyway
    active = relax_active(atoms, calc, parent_factory(), fmax=fmax, progress=False, **options)
    row = {"n_atoms": len(atoms), "baseline_parent_calls": baseline["n_parent_calls"],
           "baseline_converged": baseline["converged"], "baseline_energy_ev": baseline["final_energy_ev"],
           "active_parent_calls": active.n_parent_calls, "active_converged": active.converged,
           "active_energy_ev": active.final_parent_energy_ev,
           "energy_difference_ev": active.final_parent_energy_ev - baseline["final_energy_ev"],
           "parent_calls_percent": 100.0 * active.n_parent_calls / baseline["n_parent_calls"],
           "surrogate_steps": active.n_surrogate_steps, "surrogate_seconds": active.surrogate_seconds,
           "parent_seconds": active.parent_seconds, "training_seconds": active.training_seconds,
           "baseline_seconds": baseline["seconds"]}
    return row, active
