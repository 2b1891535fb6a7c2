"""Phonon fine-tuning from a few rattled supercells: label them with a parent (EMT, GPAW, VASP), LoRA-fine-tune
the base model, and compare the phonons of base, fine-tuned and parent.

Universal potentials trained on near-equilibrium data underestimate the curvature of the energy surface, so their
phonons come out soft (Deng et al., npj Comput. Mater. 11, 9 (2025), doi:10.1038/s41524-024-01500-6). A few
rattled cells labelled by the parent and a parameter-efficient (LoRA) fine-tune correct the curvature (Grandel,
Benner and George, Equitrain, arXiv:2604.01017). The softening is reported
as the mean ratio of model to parent frequencies along the band path: below 1 is soft, above 1 is stiff.

Every phonon calculation uses the structure you pass: relax it with the parent first, so that all three models
are compared at the parent's geometry (the one the rattled training cells are built from)."""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
from ase import Atoms
from ase.build import make_supercell
from ase.neighborlist import neighbor_list
from tqdm.auto import tqdm

from ..choices import Strategy
from ..io import model_info, provenance, to_jsonable
from ..models import check_elements, load_calculator
from ..parents import parent_calculator
from ..results import Result
from .phonons import PhononResult, _pretty, phonons

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

    from ..finetune import FinetuneReport
    from ..parents import Parent

#: rattle amplitudes above this fraction of the nearest-neighbour distance leave the harmonic regime
MAX_AMPLITUDE_FRACTION_OF_NN = 0.1
#: learning rates for the few-cell force fits (measured on Ni: LoRA at 2e-3, the trainer's default, barely moves in 10
#: epochs; 1e-2 cuts the force error tenfold)
DEFAULT_LR = {"lora": 1e-2, "head": 3e-3, "full": 3e-4}
#: forces carry the curvature; a small energy weight keeps the energy scale from drifting
DEFAULT_LOSS_WEIGHTS = {"energy_per_atom_mev": 0.001, "forces_ev_per_angstrom": 1.0, "stress_gpa": 0.0}
#: frequencies of the parent below this (THz) are left out of the frequency ratio (acoustic branches near Γ)
RATIO_MIN_FREQUENCY_THZ = 1.0

MODEL_STYLES = {"parent": {"color": "k", "ls": "-"}, "base": {"color": "C0", "ls": "--"},
                "finetuned": {"color": "C3", "ls": "-"}}


@dataclasses.dataclass(frozen=True)
class PhononFinetuneResult(Result):
    """Frequency errors of the base and fine-tuned models against the parent, over every branch along the band path.

    ``mean_frequency_ratio_*`` averages model/parent over the band-path frequencies where the parent's is above
    ``ratio_min_frequency_thz`` (1 = no softening). ``*_phonons`` hold the three full :class:`PhononResult` s.
    """

    base_model: str
    parent_model: str
    finetuned_model_dir: str
    strategy: str
    n_rattled: int
    rattle_supercell_matrix: np.ndarray
    n_atoms_per_rattled_cell: int
    amplitude_angstrom: float
    frequency_mae_thz_base: float
    frequency_mae_thz_finetuned: float
    #: frequency_mae_thz_finetuned / frequency_mae_thz_base; below 1: fine-tuning moved the phonons to the parent
    mae_ratio_finetuned_over_base: float
    mean_frequency_ratio_base: float
    mean_frequency_ratio_finetuned: float
    ratio_min_frequency_thz: float
    max_frequency_thz_parent: float
    #: force MAE against the parent on the fine-tuning validation frames (training frames when none), before/after
    forces_mae_ev_per_angstrom_base: float
    forces_mae_ev_per_angstrom_finetuned: float
    parent_seconds: float
    finetune_seconds: float
    phonon_seconds: float
    parent_phonons: PhononResult
    base_phonons: PhononResult
    finetuned_phonons: PhononResult
    finetune_report: "FinetuneReport"
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = (
        "base_model", "parent_model", "n_rattled", "amplitude_angstrom", "frequency_mae_thz_base",
        "frequency_mae_thz_finetuned", "mae_ratio_finetuned_over_base", "mean_frequency_ratio_base",
        "mean_frequency_ratio_finetuned", "parent_seconds", "finetune_seconds", "phonon_seconds")

    def to_dict(self) -> dict[str, Any]:
        nested = ("parent_phonons", "base_phonons", "finetuned_phonons", "finetune_report")
        return {f.name: getattr(self, f.name).to_dict() if f.name in nested else to_jsonable(getattr(self, f.name))
                for f in dataclasses.fields(self)}

    @property
    def phonon_results(self) -> dict[str, PhononResult]:
        return {"parent": self.parent_phonons, "base": self.base_phonons, "finetuned": self.finetuned_phonons}

    def qpoint_frequencies(self, label: str) -> dict[str, np.ndarray]:
        """Sorted frequencies (THz) at a named q-point ("X", "L", "GAMMA", ...) for parent, base and fine-tuned."""
        return {name: np.sort(np.asarray(result.qpoint_frequencies_thz[label]))
                for name, result in self.phonon_results.items()}

    def plot(self, ax=None):
        """The three band structures on one set of axes, with their DOS beside (``ax``: a pair of axes)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(1, 2, figsize=(9, 4), sharey=True, gridspec_kw={"width_ratios": [3, 1]},
                                 layout="constrained")
        band_ax, dos_ax = ax
        labels = {"parent": f"parent ({self.parent_model})", "base": f"base ({self.base_model})",
                  "finetuned": f"fine-tuned ({self.strategy}, {self.n_rattled} cells)"}
        for name, result in self.phonon_results.items():
            for i, (d, f) in enumerate(zip(result.band_distances, result.band_frequencies_thz)):
                band_ax.plot(d, f, lw=1.1, **MODEL_STYLES[name], label=labels[name] if i == 0 else None)
            dos_ax.plot(result.dos_states_per_thz, result.dos_frequencies_thz, lw=1.1, **MODEL_STYLES[name])
        ticks: dict[float, str] = {}
        for d, (start, end) in zip(self.parent_phonons.band_distances, self.parent_phonons.band_segments):
            for tick, label in ((d[0], start), (d[-1], end)):
                key = round(float(tick), 8)
                ticks[key] = f"{ticks[key]}|{_pretty(label)}" if key in ticks and ticks[key] != _pretty(label) \
                    else _pretty(label)
        band_ax.set_xticks(list(ticks), list(ticks.values()))
        for tick in ticks:
            band_ax.axvline(tick, color="0.8", lw=0.6)
        band_ax.set_xlim(min(ticks), max(ticks))
        band_ax.set_ylabel("frequency (THz)")
        band_ax.set_title(f"MAE vs parent: base {self.frequency_mae_thz_base:.3f} THz, "
                          f"fine-tuned {self.frequency_mae_thz_finetuned:.3f} THz", fontsize=9)
        band_ax.legend(fontsize=8, loc="lower right")
        dos_ax.set_xlabel("DOS (states/THz)")
        return band_ax


def _supercell_matrix(supercell: int | Sequence[int] | Sequence[Sequence[int]]) -> np.ndarray:
    matrix = np.asarray(supercell, dtype=int)
    if matrix.ndim == 0:
        matrix = np.eye(3, dtype=int) * int(matrix)
    elif matrix.shape == (3,):
        matrix = np.diag(matrix)
    if matrix.shape != (3, 3) or round(abs(np.linalg.det(matrix))) < 1:
        raise ValueError(f"supercell must be an int, three ints or a non-singular 3x3 integer matrix, "
                         f"got {supercell!r}")
    return matrix


def _nearest_neighbour_distance(atoms: Atoms) -> float:
    _, _, distances = neighbor_list("ijd", atoms, 6.0)
    if len(distances) == 0:
        raise ValueError(f"{atoms.get_chemical_formula()}: no neighbours within 6 Å; is this a bulk crystal?")
    return float(distances.min())


def rattled_supercells(
    atoms: Atoms,
    n_rattled: int = 10,
    *,
    supercell: int | Sequence[int] | Sequence[Sequence[int]] = 2,
    amplitude_angstrom: float = 0.03,
    seed: int = 0,
) -> list[Atoms]:
    """``n_rattled`` copies of the ``supercell`` of ``atoms``, each with Gaussian displacements of standard deviation
    ``amplitude_angstrom`` on every Cartesian component (the same seed gives the same cells)."""
    if int(n_rattled) != n_rattled or n_rattled < 1:
        raise ValueError(f"n_rattled must be a positive integer, got {n_rattled!r}")
    if not np.isfinite(amplitude_angstrom) or amplitude_angstrom <= 0:
        raise ValueError(f"amplitude_angstrom must be > 0, got {amplitude_angstrom!r}")
    if not all(atoms.pbc):
        raise ValueError(f"{atoms.get_chemical_formula()}: phonon fine-tuning needs a periodic crystal (pbc all True)")
    nn = _nearest_neighbour_distance(atoms)
    if amplitude_angstrom > MAX_AMPLITUDE_FRACTION_OF_NN * nn:
        raise ValueError(f"amplitude_angstrom={amplitude_angstrom} is more than {MAX_AMPLITUDE_FRACTION_OF_NN:.0%} "
                         f"of the nearest-neighbour distance ({nn:.3f} Å) of {atoms.get_chemical_formula()}: "
                         "that leaves the harmonic regime; phonon fine-tuning wants 0.01-0.05 Å")
    base = make_supercell(atoms, _supercell_matrix(supercell))
    base.calc = None
    cells = []
    for i in range(int(n_rattled)):
        cell = base.copy()
        displacements = np.random.default_rng([seed, i]).normal(0.0, amplitude_angstrom, size=cell.positions.shape)
        cell.positions += displacements
        cell.info["rattle"] = {"index": i, "seed": seed, "amplitude_angstrom": amplitude_angstrom,
                               "rms_displacement_angstrom": float(np.sqrt((displacements ** 2).sum(axis=1).mean()))}
        cells.append(cell)
    return cells


def label_with_parent(cells: Sequence[Atoms], parent: "Parent", progress: bool = True) -> list:
    """Parent energy and forces for each cell, as :class:`umlip_helpers.data.LabelledFrame` s."""
    from ..parents import parent_info, parent_label

    name = parent_info(parent)["name"]
    return [parent_label(parent, cell, f"rattled cells labelled by {name}", i)
            for i, cell in enumerate(tqdm(cells, desc=f"parent labels ({name})", disable=not progress, leave=False))]


def frequency_agreement(model: PhononResult, reference: PhononResult,
                        min_frequency_thz: float = RATIO_MIN_FREQUENCY_THZ) -> tuple[float, float]:
    """(MAE in THz, mean model/reference ratio) over every branch at every band-path q-point of both results."""
    mine = np.concatenate([np.asarray(f) for f in model.band_frequencies_thz])
    ref = np.concatenate([np.asarray(f) for f in reference.band_frequencies_thz])
    if mine.shape != ref.shape:
        raise ValueError(f"band paths differ ({mine.shape} against {ref.shape}): compute both phonons on the same "
                         "structure with the same band_points")
    keep = ref > min_frequency_thz
    if not keep.any():
        raise ValueError(f"no reference frequency above {min_frequency_thz} THz to form a ratio")
    return float(np.abs(mine - ref).mean()), float((mine[keep] / ref[keep]).mean())


def phonon_finetune(
    atoms: Atoms,
    calc: "Calculator",
    parent: "Parent",
    n_rattled: int = 10,
    *,
    supercell: int | Sequence[int] | Sequence[Sequence[int]] = 2,
    amplitude_angstrom: float = 0.03,
    phonon_supercell: int | Sequence[int] = 3,
    displacement: float = 0.01,
    mesh: int | Sequence[int] = 12,
    band_points: int = 31,
    strategy: Strategy = "lora",
    epochs: int = 10,
    batch_size: int = 1,
    lr: float | None = None,
    lora_rank: int | None = None,
    val_fraction: float = 0.1,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    ratio_min_frequency_thz: float = RATIO_MIN_FREQUENCY_THZ,
    progress: bool = True,
) -> PhononFinetuneResult:
    """Fine-tune ``calc`` on ``n_rattled`` rattled supercells of ``atoms`` labelled by ``parent`` and compare the
    phonons of parent, base and fine-tuned model.

    ``atoms``: the crystal relaxed with the parent (e.g. a primitive cell from ``ase.build.bulk``). ``calc``: the base
    model (from ``load_calculator``; it is copied, never changed). ``parent``: an ASE calculator or a factory
    ``parent(atoms) -> calculator`` (see :mod:`umlip_helpers.parents`; GPAW must be a factory). ``supercell`` and
    ``amplitude_angstrom`` shape the training cells (:func:`rattled_supercells`); ``phonon_supercell``,
    ``displacement``, ``mesh`` and ``band_points`` go to :func:`~umlip_helpers.properties.phonons.phonons` for all
    three models. Training goes through :func:`umlip_helpers.finetune.finetune`, weighted toward forces
    (``DEFAULT_LOSS_WEIGHTS``; the rattled cells carry no stress labels), with ``lr`` from ``DEFAULT_LR`` when
    None; the fine-tuned model is written to ``out`` and reloaded from there with ``load_calculator``. Parent calls
    come first, so a parent that cannot do the element fails before any training.
    """
    from ..finetune import LossWeights, finetune

    if strategy not in DEFAULT_LR:
        raise ValueError(f"strategy must be one of {', '.join(DEFAULT_LR)}, got {strategy!r}")
    check_elements(atoms, calc, where=f"phonon fine-tuning of {atoms.get_chemical_formula()}")
    cells = rattled_supercells(atoms, n_rattled, supercell=supercell, amplitude_angstrom=amplitude_angstrom,
                               seed=seed)
    parent_calc = parent_calculator(parent)
    check_elements(atoms, parent_calc, where=f"parent of {atoms.get_chemical_formula()}")
    phonon_options = dict(supercell=phonon_supercell, displacement=displacement, mesh=mesh, band_points=band_points,
                          progress=progress)

    started = time.perf_counter()
    frames = label_with_parent(cells, parent, progress=progress)
    parent_phonons = phonons(atoms, parent_calc, **phonon_options)
    parent_seconds = time.perf_counter() - started

    started = time.perf_counter()
    base_phonons = phonons(atoms, calc, **phonon_options)
    phonon_seconds = time.perf_counter() - started

    started = time.perf_counter()
    lr = DEFAULT_LR[strategy] if lr is None else lr
    report = finetune(copy.deepcopy(calc), frames, strategy=strategy, out=out, epochs=epochs, batch_size=batch_size,
                      lr=lr, lora_rank=lora_rank, val_fraction=val_fraction, seed=seed,
                      loss_weights=LossWeights(**DEFAULT_LOSS_WEIGHTS), progress=progress)
    finetune_seconds = time.perf_counter() - started

    started = time.perf_counter()
    device = model_info(calc).device or "auto"
    finetuned_phonons = phonons(atoms, load_calculator(report.out_dir, device=device), **phonon_options)
    phonon_seconds += time.perf_counter() - started

    mae_base, ratio_base = frequency_agreement(base_phonons, parent_phonons, ratio_min_frequency_thz)
    mae_tuned, ratio_tuned = frequency_agreement(finetuned_phonons, parent_phonons, ratio_min_frequency_thz)
    parent_name = model_info(parent_calc).name
    return PhononFinetuneResult(
        base_model=report.base_model,
        parent_model=parent_name,
        finetuned_model_dir=report.out_dir,
        strategy=strategy,
        n_rattled=int(n_rattled),
        rattle_supercell_matrix=_supercell_matrix(supercell),
        n_atoms_per_rattled_cell=len(cells[0]),
        amplitude_angstrom=float(amplitude_angstrom),
        frequency_mae_thz_base=mae_base,
        frequency_mae_thz_finetuned=mae_tuned,
        mae_ratio_finetuned_over_base=mae_tuned / mae_base if mae_base > 0 else float("nan"),
        mean_frequency_ratio_base=ratio_base,
        mean_frequency_ratio_finetuned=ratio_tuned,
        ratio_min_frequency_thz=float(ratio_min_frequency_thz),
        max_frequency_thz_parent=float(max(np.max(f) for f in parent_phonons.band_frequencies_thz)),
        forces_mae_ev_per_angstrom_base=float(report.before["forces_mae_ev_per_angstrom"]),
        forces_mae_ev_per_angstrom_finetuned=float(report.after["forces_mae_ev_per_angstrom"]),
        parent_seconds=parent_seconds,
        finetune_seconds=finetune_seconds,
        phonon_seconds=phonon_seconds,
        parent_phonons=parent_phonons,
        base_phonons=base_phonons,
        finetuned_phonons=finetuned_phonons,
        finetune_report=report,
        provenance=provenance(calc, parent=parent_name, n_rattled=n_rattled, supercell=_supercell_matrix(supercell),
                              amplitude_angstrom=amplitude_angstrom, seed=seed, strategy=strategy, epochs=epochs,
                              batch_size=batch_size, lr=lr, lora_rank=lora_rank, phonon_supercell=phonon_supercell,
                              displacement=displacement, mesh=mesh, band_points=band_points,
                              finetuned_model_dir=report.out_dir),
    )
