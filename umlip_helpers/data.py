"""DFT data: read VASP (vasprun.xml, OUTCAR) and extxyz into labelled frames, validate them, split them,
and align a model's energy reference to them.

Labels are kept apart from the ``Atoms`` (in :class:`LabelledFrame`), so attaching a model's calculator
never overwrites the DFT numbers. Units follow ASE: eV, eV/Å, and stress in eV/Å^3 with ASE's sign
(negative under compression; VASP prints the opposite sign in kBar).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list
from ase.units import GPa

from .errors import DataValidationError

Field = Literal["energy", "forces", "stress"]
Format = Literal["vasp-xml", "vasp-out", "extxyz"]

#: Closest approach allowed between two atoms, in Å.
MIN_DISTANCE_ANGSTROM = 0.5
#: Above this |stress| (eV/Å^3, about 160 GPa) a stress is taken to be in kBar or GPa, not eV/Å^3.
MAX_PLAUSIBLE_STRESS_EV_A3 = 1.0


@dataclasses.dataclass(frozen=True)
class LabelledFrame:
    """One DFT frame: the structure and its labels, and where it came from."""

    atoms: Atoms
    energy_ev: float | None
    forces_ev_per_angstrom: np.ndarray | None
    #: Voigt order (xx, yy, zz, yz, xz, xy), eV/Å^3, ASE sign convention
    stress_ev_per_angstrom3: np.ndarray | None
    source: str
    index: int

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)

    def where(self) -> str:
        return f"{self.source}: frame {self.index}"

    def to_atoms(self) -> Atoms:
        """A copy of the structure carrying the labels as a SinglePointCalculator (for ase.io.write)."""
        atoms = self.atoms.copy()
        results = {}
        if self.energy_ev is not None:
            results["energy"] = self.energy_ev
        if self.forces_ev_per_angstrom is not None:
            results["forces"] = self.forces_ev_per_angstrom
        if self.stress_ev_per_angstrom3 is not None:
            results["stress"] = self.stress_ev_per_angstrom3
        atoms.calc = SinglePointCalculator(atoms, **results)
        return atoms


class DFTDataset(Sequence[LabelledFrame]):
    """An ordered list of labelled frames (file order is time order for MD and relaxations)."""

    def __init__(self, frames: Iterable[LabelledFrame], name: str = ""):
        self.frames = list(frames)
        self.name = name or (self.frames[0].source if self.frames else "empty")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return DFTDataset(self.frames[item], self.name)
        if isinstance(item, (list, np.ndarray)):
            return DFTDataset([self.frames[i] for i in item], self.name)
        return self.frames[item]

    def __iter__(self) -> Iterator[LabelledFrame]:
        return iter(self.frames)

    def __repr__(self) -> str:
        return f"DFTDataset({self.name!r}, {len(self)} frames, elements={self.elements})"

    @property
    def elements(self) -> list[str]:
        return sorted({s for f in self.frames for s in f.atoms.get_chemical_symbols()})

    @property
    def n_atoms_total(self) -> int:
        return sum(f.n_atoms for f in self.frames)

    def has(self, field: Field) -> bool:
        attr = {"energy": "energy_ev", "forces": "forces_ev_per_angstrom", "stress": "stress_ev_per_angstrom3"}
        return bool(self.frames) and all(getattr(f, attr[field]) is not None for f in self.frames)

    def energies_ev(self) -> np.ndarray:
        return np.array([f.energy_ev for f in self.frames], dtype=float)

    def composition_matrix(self, elements: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
        """Counts of each element per frame: shape (n_frames, n_elements)."""
        elements = list(elements or self.elements)
        column = {el: i for i, el in enumerate(elements)}
        counts = np.zeros((len(self.frames), len(elements)))
        for row, frame in enumerate(self.frames):
            for symbol in frame.atoms.get_chemical_symbols():
                counts[row, column[symbol]] += 1
        return counts, elements

    def sha256(self) -> str:
        """Hash of the structures and labels, for provenance of training and evaluation sets."""
        digest = hashlib.sha256()
        for f in self.frames:
            for array in (f.atoms.numbers, f.atoms.positions, f.atoms.cell.array, f.forces_ev_per_angstrom,
                          f.stress_ev_per_angstrom3, np.array([np.nan if f.energy_ev is None else f.energy_ev])):
                if array is not None:
                    digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
        return digest.hexdigest()

    def to_atoms_list(self) -> list[Atoms]:
        return [f.to_atoms() for f in self.frames]

    def write_extxyz(self, path: str | os.PathLike) -> Path:
        from ase.io import write

        from .io import atomic_write_bytes
        import io as _io

        buffer = _io.StringIO()
        write(buffer, self.to_atoms_list(), format="extxyz")
        return atomic_write_bytes(path, buffer.getvalue().encode())


# ---------------------------------------------------------------------------------------------------- reading


def detect_format(path: str | os.PathLike) -> Format:
    name = Path(path).name.lower().removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")
    if name.endswith(".xml") or "vasprun" in name:
        return "vasp-xml"
    if "outcar" in name:
        return "vasp-out"
    if name.endswith((".xyz", ".extxyz")):
        return "extxyz"
    raise DataValidationError([(str(path), None, "format",
                                "cannot tell the format from the name; expected vasprun*.xml, *OUTCAR*, "
                                "*.xyz or *.extxyz (optionally .gz); pass format= explicitly")])


def _read_images(path: Path, fmt: Format, allow_truncated: bool, max_frames: int | None) -> list[Atoms]:
    from ase.io import iread

    images: list[Atoms] = []
    try:
        for atoms in islice(iread(str(path), index=":", format=fmt), max_frames):
            images.append(atoms)
    except Exception as exc:  # every ASE parser fails its own way on a truncated file
        problem = (f"the file is truncated or malformed after {len(images)} complete frame(s) "
                   f"({type(exc).__name__}: {exc})")
        if not allow_truncated or not images:
            raise DataValidationError([(str(path), len(images), "file", problem +
                                        "; pass allow_truncated=True to keep the complete frames")]) from exc
        warnings.warn(f"{path}: {problem}; keeping the {len(images)} complete frame(s)", stacklevel=3)
    return images


def _labels(atoms: Atoms, energy_key: str) -> tuple[float | None, np.ndarray | None, np.ndarray | None]:
    calc = atoms.calc
    results = dict(calc.results) if calc is not None else {}
    energy = results.get(energy_key, atoms.info.get(energy_key))
    forces = results.get("forces", atoms.arrays.get("forces"))
    stress = results.get("stress", atoms.info.get("stress"))
    energy = None if energy is None else float(np.asarray(energy).reshape(-1)[0])
    forces = None if forces is None else np.array(forces, dtype=float)
    if stress is not None:
        stress = np.array(stress, dtype=float)
        if stress.shape == (3, 3):
            stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        elif stress.shape == (9,):
            stress = stress.reshape(3, 3)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return energy, forces, stress


def read_dataset(
    path: str | os.PathLike,
    *,
    format: Format | None = None,
    max_frames: int | None = None,
    require: Sequence[Field] = ("energy", "forces"),
    energy_key: str = "energy",
    stress_unit: Literal["ev/a3", "kbar", "gpa"] = "ev/a3",
    allow_truncated: bool = False,
    validate: bool = True,
) -> DFTDataset:
    """Read every ionic step of a vasprun.xml or OUTCAR, or every frame of an extxyz (plain or gzipped).

    ``max_frames`` keeps the first N frames in file order (reproducible). ``stress_unit`` converts a
    stress given in kBar or GPa with ASE's sign; VASP's own files are converted by ASE already.
    Validation (see :func:`validate`) raises :class:`DataValidationError` listing file, frame and field.
    """
    path = Path(path)
    if not path.is_file():
        raise DataValidationError([(str(path), None, "file", "does not exist")])
    fmt = format or detect_format(path)
    images = _read_images(path, fmt, allow_truncated, max_frames)
    if fmt == "vasp-out" and images and \
            "General timing and accounting" not in path.read_text(errors="replace")[-20000:]:
        warnings.warn(f"{path}: VASP did not finish this run (no timing block at the end); "
                      f"{len(images)} complete ionic step(s) were read", stacklevel=2)
    scale = {"ev/a3": 1.0, "kbar": 0.1 * GPa, "gpa": GPa}[stress_unit]
    frames = []
    for index, atoms in enumerate(images):
        energy, forces, stress = _labels(atoms, energy_key)
        if stress is not None:
            stress = stress * scale
        bare = Atoms(atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        if atoms.has("initial_magmoms"):
            bare.set_initial_magnetic_moments(atoms.get_initial_magnetic_moments())
        frames.append(LabelledFrame(bare, energy, forces, stress, str(path), index))
    dataset = DFTDataset(frames, name=path.name)
    if validate:
        problems = validate_frames(dataset, require=require)
        if not frames:
            problems.append((str(path), 0, "file", "holds no complete frame: the file is empty or truncated "
                                                   "(a run that was killed or is still running?)"))
        if problems:
            raise DataValidationError(problems)
    return dataset


# ------------------------------------------------------------------------------------------------- validation


def validate_frames(dataset: Iterable[LabelledFrame], require: Sequence[Field] = ("energy", "forces")) -> list:
    """Every problem as (file, frame, field, message); an empty list means the data are sound."""
    problems: list[tuple[str, int | None, str, str]] = []
    for frame in dataset:
        src, i, n = frame.source, frame.index, frame.n_atoms

        def bad(field: str, message: str) -> None:
            problems.append((src, i, field, message))

        if n == 0:
            bad("atoms", "frame has no atoms")
            continue
        positions = frame.atoms.positions
        if not np.isfinite(positions).all():
            rows = np.unique(np.nonzero(~np.isfinite(positions))[0])
            bad("positions", f"non-finite coordinates for atom(s) {rows[:10].tolist()}")
            continue
        if frame.atoms.pbc.any():
            cell = frame.atoms.cell.array
            if not np.isfinite(cell).all() or abs(np.linalg.det(cell[frame.atoms.pbc][:, frame.atoms.pbc])) < 1e-6:
                bad("cell", "periodic cell is non-finite or singular")
                continue
        first, second, dist = neighbor_list("ijd", frame.atoms, MIN_DISTANCE_ANGSTROM)
        if len(dist):
            k = int(np.argmin(dist))
            bad("positions", f"atoms {first[k]} and {second[k]} are {dist[k]:.3f} Å apart "
                             f"(< {MIN_DISTANCE_ANGSTROM} Å): overlapping atoms")

        if frame.energy_ev is None:
            if "energy" in require:
                bad("energy", "missing")
        elif not np.isfinite(frame.energy_ev):
            bad("energy", f"not finite ({frame.energy_ev})")

        forces = frame.forces_ev_per_angstrom
        if forces is None:
            if "forces" in require:
                bad("forces", "missing (the file carries no forces for this frame)")
        elif forces.shape != (n, 3):
            bad("forces", f"shape {forces.shape}, expected ({n}, 3)")
        elif not np.isfinite(forces).all():
            atoms_bad = np.unique(np.nonzero(~np.isfinite(forces))[0])[:10].tolist()
            bad("forces", f"non-finite values for atom(s) {atoms_bad}")

        stress = frame.stress_ev_per_angstrom3
        if stress is None:
            if "stress" in require:
                bad("stress", "missing")
        elif stress.shape != (6,):
            bad("stress", f"shape {stress.shape}, expected 6 Voigt components or 3x3")
        elif not np.isfinite(stress).all():
            bad("stress", "non-finite values")
        elif np.abs(stress).max() > MAX_PLAUSIBLE_STRESS_EV_A3:
            worst = np.abs(stress).max()
            bad("stress", f"|stress| up to {worst:.3g} 'eV/Å^3' = {worst / GPa:.3g} GPa is implausible: the values "
                          "look like kBar or GPa. ASE expects eV/Å^3 with negative values under compression; "
                          "pass stress_unit='kbar' or 'gpa' to convert")
    return problems


def check_frames(dataset: DFTDataset, require: Sequence[Field] = ("energy", "forces")) -> None:
    """Raise DataValidationError unless every frame passes :func:`validate_frames`."""
    if len(dataset) == 0:
        raise DataValidationError([(dataset.name, None, "dataset", "is empty")])
    problems = validate_frames(dataset, require)
    if problems:
        raise DataValidationError(problems)


# ------------------------------------------------------------------------------------------------------ splits


def random_split(dataset: DFTDataset, fractions: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> tuple[DFTDataset, ...]:
    """Shuffled split. Frames from one MD run are correlated in time, so neighbours of a test frame
    leak into training: use :func:`block_split` to measure transfer along a trajectory."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    return _cut(dataset, order, fractions)


def block_split(dataset: DFTDataset, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> tuple[DFTDataset, ...]:
    """Contiguous blocks in file (time) order: the first block trains, later ones validate and test."""
    return _cut(dataset, np.arange(len(dataset)), fractions)


def _cut(dataset: DFTDataset, order: np.ndarray, fractions: Sequence[float]) -> tuple[DFTDataset, ...]:
    fractions = np.asarray(fractions, dtype=float)
    if (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"split fractions must be non-negative with a positive sum, got {fractions.tolist()}")
    bounds = np.round(np.cumsum(fractions / fractions.sum()) * len(order)).astype(int)
    parts, start = [], 0
    for stop in bounds:
        parts.append(dataset[order[start:stop].tolist()])
        start = stop
    return tuple(parts)


# ------------------------------------------------------------------------------------ energy-reference alignment


def fit_energy_shifts(dataset: DFTDataset, predicted_energies_ev: Sequence[float]) -> dict[str, float]:
    """Per-element shifts s so that E_DFT ≈ E_model + Σ_el n_el s_el, by least squares.

    When every frame has the same composition (one system), only the composition-weighted sum is
    determined; the minimum-norm solution is returned, which applies one common per-atom offset.
    """
    predicted = np.asarray(predicted_energies_ev, dtype=float)
    if len(predicted) != len(dataset):
        raise ValueError(f"{len(predicted)} predicted energies for {len(dataset)} frames")
    if not dataset.has("energy"):
        raise DataValidationError([(dataset.name, None, "energy", "alignment needs DFT energies on every frame")])
    counts, elements = dataset.composition_matrix()
    shifts, *_ = np.linalg.lstsq(counts, dataset.energies_ev() - predicted, rcond=None)
    return {el: float(s) for el, s in zip(elements, shifts)}


def shift_for(atoms: Atoms, shifts: dict[str, float]) -> float:
    """The total energy shift (eV) that ``shifts`` adds to a structure; unknown elements add 0."""
    return float(sum(shifts.get(symbol, 0.0) for symbol in atoms.get_chemical_symbols()))


# ------------------------------------------------------------------------------------------------- structures


def read_structure(path: str | os.PathLike) -> Atoms:
    """The last frame of a structure file, for the command line (the shipped tobermorite cell goes through its
    explicit reader). A missing or unreadable file raises DataValidationError naming it."""
    from ase.io import read

    from .analysis import TOBERMORITE_FILE, read_tobermorite

    path = Path(path)
    if not path.is_file():
        raise DataValidationError([(str(path), None, "structure", "file does not exist")])
    if path.resolve() == TOBERMORITE_FILE:
        return read_tobermorite(path)
    try:
        return read(path, index=-1)
    except Exception as exc:  # ASE raises many types for unreadable files
        raise DataValidationError([(str(path), None, "structure", f"ASE cannot read it: {exc}")]) from exc
