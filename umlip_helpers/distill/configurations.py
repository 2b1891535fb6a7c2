"""The student's training data: configurations around start structures (:func:`generate_configurations`) and
their labels from any calculator (:func:`label_with`), the teacher or a DFT parent."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from ..active.settings import settings_from
from ..data import DFTDataset, LabelledFrame, check_frames
from ..errors import DataValidationError
from ..io import model_info
from ..models import check_elements
from .settings import GenerationSettings


def check_structures(structures: Sequence[Atoms] | Atoms, what: str = "structures") -> list[Atoms]:
    if isinstance(structures, Atoms):
        structures = [structures]
    structures = list(structures)
    if not structures:
        raise DataValidationError([(what, None, "structures", "no structures given")])
    for i, atoms in enumerate(structures):
        if not isinstance(atoms, Atoms):
            raise DataValidationError([(what, i, "structure", f"expected ase.Atoms, got {type(atoms).__name__}")])
        if len(atoms) == 0:
            raise DataValidationError([(what, i, "structure", "has no atoms")])
    return structures


def structures_sha256(structures: Sequence[Atoms]) -> str:
    digest = hashlib.sha256()
    for atoms in structures:
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
    return digest.hexdigest()


def generate_configurations(
    structures: Sequence[Atoms] | Atoms,
    calc: Any = None,
    *,
    settings: GenerationSettings | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    **options: Any,
) -> list[Atoms]:
    """Configurations around each structure (see :class:`GenerationSettings`, given as ``settings`` or as its fields'
    keyword arguments), each tagged in ``atoms.info["distill_source"]``: rattles, lightly rattled strains, and NVT
    frames of ``calc`` (the teacher; none when ``calc`` is None). The returned ``Atoms`` carry no calculator: label
    them with :func:`label_with`."""
    settings = settings_from(GenerationSettings, settings, options, "generate_configurations")
    structures = check_structures(structures)
    rng = np.random.default_rng(seed)
    out: list[Atoms] = []
    for index, structure in enumerate(structures):
        out += _displaced(structure, index, settings, rng)
        if calc is None or settings.md_steps <= 0:
            continue
        check_elements(structure, calc, where=f"structures[{index}]")
        base = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="umlip-distill-md-"))
        out += _teacher_md(structure, index, calc, settings, rng, base, progress)
    return out


def _tagged(atoms: Atoms, source: str) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = None
    atoms.info = {"distill_source": source}
    return atoms


def _displaced(structure: Atoms, index: int, settings: GenerationSettings, rng: np.random.Generator) -> list[Atoms]:
    """The rattles at each amplitude, then the strains (each lightly rattled)."""
    out = []
    for amplitude in settings.rattle_amplitudes_angstrom:
        for _ in range(settings.rattles_per_amplitude):
            atoms = structure.copy()
            atoms.positions += rng.normal(0.0, amplitude, atoms.positions.shape)
            out.append(_tagged(atoms, f"structure {index}: rattle {amplitude:g} A"))
    for strain in settings.strains:
        atoms = structure.copy()
        atoms.set_cell(atoms.cell.array * (1.0 + strain), scale_atoms=True)
        atoms.positions += rng.normal(0.0, settings.strain_rattle_angstrom, atoms.positions.shape)
        out.append(_tagged(atoms, f"structure {index}: strain {strain:+g}"))
    return out


def _teacher_md(structure: Atoms, index: int, calc: Any, settings: GenerationSettings, rng: np.random.Generator,
                base: Path, progress: bool) -> list[Atoms]:
    """Every ``md_interval``-th frame (after the start) of the teacher's NVT run at each temperature."""
    from ..md import run_md

    out = []
    for temperature in tqdm(settings.temperatures_k, desc=f"teacher MD, structure {index}", disable=not progress):
        run = run_md(structure, calc, ensemble="nvt", temperature_k=float(temperature),
                     timestep_fs=settings.timestep_fs, steps=settings.md_steps,
                     out_dir=base / f"md_{index}_{temperature:g}K", traj_interval=settings.md_interval,
                     overwrite=True, seed=int(rng.integers(2**31)), progress=False)
        for frame in run.frames():
            if frame.info.get("md_step", 0) > 0:
                out.append(_tagged(frame, f"structure {index}: MD {temperature:g} K step {frame.info['md_step']}"))
    return out


def label_with(calc: Any, configurations: Sequence[Atoms], *, stress: bool = True, name: str | None = None,
               progress: bool = True) -> DFTDataset:
    """Energy, forces (and stress) of every configuration from ``calc``, as labelled frames."""
    configurations = check_structures(configurations, "configurations")
    label = name or model_info(calc).name
    for i, atoms in enumerate(configurations):
        check_elements(atoms, calc, where=f"configuration {i}")
    frames = []
    for i, atoms in enumerate(tqdm(configurations, desc=f"labelling with {label}", disable=not progress)):
        work = atoms.copy()
        work.calc = calc
        frames.append(LabelledFrame(
            atoms=atoms.copy(), energy_ev=float(work.get_potential_energy()),
            forces_ev_per_angstrom=np.array(work.get_forces()),
            stress_ev_per_angstrom3=np.array(work.get_stress(voigt=True)) if stress else None,
            source=f"{label} labels", index=i))
    dataset = DFTDataset(frames, name=f"{label} labels")
    check_frames(dataset, require=("energy", "forces") + (("stress",) if stress else ()))
    return dataset
