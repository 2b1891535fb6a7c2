"""Molecular dynamics with any ASE calculator: NVE, NVT and NPT from ase.md, a live progress bar, a trajectory and
a CSV log, exact restart after a kill, and a guard that stops a run that blows up.

Files in ``out_dir``:

* ``md.traj``: ASE trajectory (full-precision positions, momenta, cell, energy, forces, stress, and the step in
  ``atoms.info["md_step"]``). ASE's trajectory format appends a frame and only then updates the frame count in its
  header, so a frame torn by a kill is never read back. ``ase convert md.traj md.extxyz`` gives extxyz for OVITO.
* ``md_log.csv``: step, time, energies, temperature, pressure and volume every ``log_interval`` steps.
* ``md_run.json``: the run's settings; ``resume=True`` refuses to continue a run with different settings.
* ``unstable_frame.extxyz``: written only when the guard stops a run, the frame that tripped it.

The pieces: :mod:`.settings` (:class:`MDSettings`, which LAMMPS's runner shares), :mod:`.dynamics` (the ASE
integrators), :mod:`.files`, :mod:`.guard`, :mod:`.result` (:class:`MDResult`) and :mod:`.run` (:func:`run_md`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import LOG_COLUMNS, LOG_NAME, RUN_NAME, TRAJECTORY_NAME, UNSTABLE_NAME
from .guard import ProximityGuard
from .result import MDResult
from .run import PROGRESS_INTERVAL_S, run_md
from .settings import MDSettings, NPTCell

_ProximityGuard = ProximityGuard  # the name tests/test_md.py checks the guard by

__all__ = ["LOG_COLUMNS", "LOG_NAME", "PROGRESS_INTERVAL_S", "RUN_NAME", "TRAJECTORY_NAME", "UNSTABLE_NAME",
           "MDResult", "MDSettings", "NPTCell", "cli_md", "run_md"]


def cli_md(args) -> dict[str, Any]:
    """``umlip md``: run MD on a structure file; the trajectory and log go to ``--out`` (default md_<stem>)."""
    from ..data import read_structure
    from ..models import load_calculator

    atoms = read_structure(args.structure)
    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    out = args.out or f"md_{Path(args.structure).stem}"
    result = run_md(atoms, calc, ensemble=args.ensemble, temperature_k=args.temperature, timestep_fs=args.timestep,
                    steps=args.steps, out_dir=out, resume=args.resume)
    print(f"umlip md: {result.steps_completed} steps, mean T {result.mean_temperature_k:.1f} K, "
          f"{result.throughput_atom_steps_per_s:.4g} atom-steps/s; trajectory {result.trajectory_path}")
    return {"type": "MDResult", **result.to_dict()}
