"""Label a named set of structures with a parent (DFT) calculator, resumably: one extxyz file per frame, each
written atomically (a temporary file, then ``os.replace``) as soon as it is labelled, so a run killed at any moment
leaves only complete frames and a re-run labels only those still missing.

Each frame file holds the structure, ``energy`` (eV; what ASE's ``get_potential_energy`` returns, for a smeared
DFT run the energy extrapolated to zero width), ``free_energy`` (eV), ``forces`` (eV/Å), ``stress`` (Voigt,
eV/Å^3, ASE sign) and, for spin-polarised parents, per-atom ``magmoms`` and the total ``magmom`` (μB), plus the
frame's ``name``, ``kind`` and wall time ``label_seconds`` in its info.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import numpy as np

from .errors import DataValidationError
from .io import atomic_write_text

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

#: every per-frame field a labelled frame file must carry
FRAME_FIELDS = ("energy", "free_energy", "forces", "stress", "magmoms")


def frame_path(out_dir: str | os.PathLike, name: str) -> Path:
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise ValueError(f"frame name {name!r} must be a non-empty file name without '/', '\\', spaces or a "
                         "leading dot")
    return Path(out_dir) / f"{name}.extxyz"


def label_one(atoms: "Atoms", factory: Callable[["Atoms"], "Calculator"]) -> "Atoms":
    """A copy of ``atoms`` carrying the parent's energy, free energy, forces, stress and magnetic moments."""
    from ase.calculators.calculator import PropertyNotImplementedError
    from ase.calculators.singlepoint import SinglePointCalculator

    work = atoms.copy()
    work.calc = factory(work)
    start = time.perf_counter()
    results = {"energy": float(work.get_potential_energy()),
               "free_energy": float(work.get_potential_energy(force_consistent=True)),
               "forces": work.get_forces(), "stress": work.get_stress(voigt=True)}
    if np.any(work.get_initial_magnetic_moments()):
        try:
            results["magmoms"] = work.get_magnetic_moments()
            results["magmom"] = float(work.get_magnetic_moment())
        except PropertyNotImplementedError:  # a non-magnetic parent (EMT, a uMLIP) given a magnetic structure
            pass
    seconds = time.perf_counter() - start
    labelled = atoms.copy()
    labelled.calc = SinglePointCalculator(labelled, **results)
    labelled.info["label_seconds"] = round(seconds, 2)
    return labelled


def write_frame(atoms: "Atoms", path: str | os.PathLike) -> Path:
    """Write one labelled frame to ``path`` (extxyz) atomically."""
    from ase.io import write

    buffer = io.StringIO()
    write(buffer, atoms, format="extxyz")
    return atomic_write_text(path, buffer.getvalue())


def label_frames(structures: Mapping[str, "Atoms"], factory: Callable[["Atoms"], "Calculator"],
                 out_dir: str | os.PathLike, *, info: Mapping[str, Mapping] | None = None,
                 progress: bool = True) -> list[Path]:
    """Label every structure not yet in ``out_dir`` (``<name>.extxyz`` each) with a fresh calculator from
    ``factory(atoms)``; ``info[name]`` is stored in the frame's info. Returns the paths of all frames, in order.
    Several runs may share ``out_dir``: each skips a frame another has finished (two may label the same one at once;
    the file then holds whichever finished last, both complete)."""
    from tqdm.auto import tqdm

    todo = [name for name in structures if not frame_path(out_dir, name).exists()]
    with tqdm(total=len(structures), initial=len(structures) - len(todo), desc="labelling frames",
              disable=not progress, unit="frame") as bar:
        for name in todo:
            bar.set_postfix_str(name)
            if frame_path(out_dir, name).exists():  # written meanwhile by another run on the same folder
                bar.update(1)
                continue
            labelled = label_one(structures[name], factory)
            labelled.info.update({"name": name, **dict((info or {}).get(name, {}))})
            write_frame(labelled, frame_path(out_dir, name))
            bar.update(1)
    return [frame_path(out_dir, name) for name in structures]


def read_frame(path: str | os.PathLike, require: tuple[str, ...] = FRAME_FIELDS) -> "Atoms":
    """One labelled frame file; raises :class:`DataValidationError` naming the file and every missing field."""
    from ase.io import read

    path = Path(path)
    try:
        atoms = read(path, format="extxyz")
    except Exception as exc:
        raise DataValidationError([(str(path), 0, "file", f"cannot be read as extxyz ({type(exc).__name__}: "
                                                          f"{exc})")]) from exc
    results = atoms.calc.results if atoms.calc is not None else {}
    missing = [field for field in require if field not in results]
    if missing:
        raise DataValidationError([(str(path), 0, field, "missing") for field in missing])
    return atoms
