"""The student: a small model of a family's architecture built from scratch (its output scale and energy references
from the labels) and trained on every weight with the project's trainer (:func:`train_student`).

The student is saved in its family's native format (``student.model`` for MACE, ``student.pth`` for SevenNet), so
``load_calculator(path)`` loads it; ``student.json`` beside it records the teacher, the data hash and the settings.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from ..active.settings import settings_from
from ..choices import StudentArchitecture
from ..data import DFTDataset, check_frames, fit_energy_shifts, random_split
from ..errors import DataValidationError, UmlipError
from ..io import atomic_write_json, provenance, sha256_file
from ..models import adapter_for, family_of, get_family, load_calculator
from ..results import Result
from .settings import DISTILLATION_LOSS_WEIGHTS, StudentSettings

SIDECAR_SUFFIX = ".json"


def student_size(architecture: StudentArchitecture) -> dict[str, Any]:
    """The default student hyperparameters of an architecture: its family's ``SIZES["student"]`` (two interactions,
    scalars and vectors, a 5 Å cutoff, SevenNet-0's)."""
    return dict(importlib.import_module(f"umlip_helpers.models.{architecture}").SIZES["student"])


def refuse_silent_restart(out: Path, resume: bool) -> None:
    from ..finetune.trainer import CHECKPOINT_NAME

    if (out / CHECKPOINT_NAME).exists() and not resume:
        raise UmlipError(f"{out} already holds a student training run: pass resume=True to continue it, or choose a "
                         "new directory")


def _mean_neighbours(dataset: DFTDataset, cutoff: float) -> float:
    from vesin import NeighborList

    counts = []
    for frame in dataset:
        atoms = frame.atoms
        i, _ = NeighborList(cutoff=cutoff, full_list=True).compute(
            points=atoms.positions, box=atoms.cell.array, periodic=bool(atoms.pbc.any()), quantities="ij")
        counts.append(len(i) / len(atoms))
    return float(np.mean(counts))


def _statistics(dataset: DFTDataset, cutoff: float) -> dict[str, Any]:
    """Per-element energy references (least squares), force RMS and mean neighbour count: the student's scales."""
    e0 = fit_energy_shifts(dataset, np.zeros(len(dataset)))
    forces = np.concatenate([f.forces_ev_per_angstrom for f in dataset])
    return {"e0_ev": e0, "force_rms_ev_per_angstrom": float(max(np.sqrt(np.mean(forces ** 2)), 1e-3)),
            "mean_neighbours": max(_mean_neighbours(dataset, cutoff), 1.0)}


def _recentre_energy(calc: Any, data: DFTDataset, predicted_ev: Sequence[float]) -> None:
    """Add per-element shifts to the untrained model's energy references so that its energies start on the labels'
    (a random network's energies can be off by hundreds of meV/atom, which would swamp the force loss)."""
    import torch

    delta = fit_energy_shifts(data, predicted_ev)
    table, row = family_of(calc).energy_references(calc)
    with torch.no_grad():
        for symbol, value in delta.items():
            table[row[symbol]] += value


@dataclasses.dataclass(frozen=True)
class StudentTraining(Result):
    """A trained student: where it is, its size, and its errors against the teacher's labels (validation frames,
    or the training frames when there are none)."""

    path: str
    architecture: str
    size: dict
    n_parameters: int
    n_train_frames: int
    n_val_frames: int
    epochs_run: int
    best_epoch: int
    seconds_per_epoch: float
    energy_mae_vs_labels_mev_per_atom: float
    force_mae_vs_labels_ev_per_angstrom: float
    stress_mae_vs_labels_gpa: float | None
    log: list
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = (
        "architecture", "n_parameters", "n_train_frames", "n_val_frames", "epochs_run", "seconds_per_epoch",
        "energy_mae_vs_labels_mev_per_atom", "force_mae_vs_labels_ev_per_angstrom", "stress_mae_vs_labels_gpa")

    def calculator(self, device: str = "auto"):
        return load_calculator(self.path, device=device)

    def plot(self, ax=None):
        """Learning curve: training and validation force RMSE per epoch."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        epochs = [row["epoch"] for row in self.log]
        for key, label in (("train_forces_rmse", "train"), ("val_forces_rmse", "validation")):
            if self.log and key in self.log[0]:
                ax.semilogy(epochs, [row[key] for row in self.log], "o-", ms=3, label=label)
        ax.set(xlabel="epoch", ylabel="force RMSE vs labels (eV/Å)", title=f"student ({self.architecture})")
        ax.legend()
        return ax


def train_student(
    data: DFTDataset,
    out: str | os.PathLike,
    *,
    settings: StudentSettings | None = None,
    val: DFTDataset | None = None,
    teacher: dict[str, Any] | None = None,
    resume: bool = False,
    callback: Any = None,
    progress: bool = True,
    **options: Any,
) -> StudentTraining:
    """Build a small model (:class:`StudentSettings`, given as ``settings`` or as its fields' keyword arguments:
    ``architecture=``, ``epochs=``, ...) from scratch and train every weight on ``data`` (labelled frames).

    Its output scale is the labels' force RMS and its per-element energy references are fitted so that the untrained
    model's energies already match the labels on average (least squares). ``size`` overrides the family's
    ``SIZES["student"]`` (:func:`student_size`). ``out`` receives the untrained model, the student
    (``student.model`` or ``student.pth``) with its sidecar ``.json``, and the training log and checkpoint. A killed
    run continues with ``resume=True`` (same arguments, same ``out``) from its last epoch checkpoint, to the same
    weights as an uninterrupted run; ``callback`` gets each optimiser step (see
    :func:`umlip_helpers.finetune.trainer.train`).
    """
    settings = settings_from(StudentSettings, settings, options, "train_student")
    data, val = _checked_data(data, val, settings)
    out = Path(out)
    refuse_silent_restart(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    size = {**student_size(settings.architecture), **(settings.size or {})}
    student = _Student(settings, size, data, val, out, progress)
    outcome = student.train(resume, callback)
    return student.save(outcome, teacher or {})


def _checked_data(data: DFTDataset, val: DFTDataset | None, settings: StudentSettings):
    if data is None or len(data) == 0:
        raise DataValidationError([("student data", None, "dataset", "no labelled frames given")])
    check_frames(data, require=("energy", "forces"))
    if val is None and len(data) >= 10 and settings.val_fraction > 0:
        data, val = random_split(data, (1 - settings.val_fraction, settings.val_fraction), seed=settings.seed)
    if val is not None:
        check_frames(val, require=("energy", "forces"))
    return data, val


class _Student:
    """One student's training: built untrained with the labels' scales, recentred, trained, saved with its sidecar."""

    def __init__(self, settings: StudentSettings, size: dict[str, Any], data: DFTDataset, val: DFTDataset | None,
                 out: Path, progress: bool):
        from ..finetune.trainer import make_samples, predict_all, prepare_samples

        self.settings, self.size, self.data, self.val = settings, size, data, val
        self.out, self.progress = out, progress
        architecture = settings.architecture
        self.stats = _statistics(data, size["r_max"] if architecture == "mace" else size["cutoff"])
        elements = sorted(set(data.elements) | set(val.elements if val is not None else []))
        missing = sorted(set(elements) - set(self.stats["e0_ev"]))
        if missing:
            raise DataValidationError([(val.name, None, "elements", f"{', '.join(missing)} only in the validation "
                                                                     "set")])
        self.family = get_family(architecture)
        suffix = ".model" if architecture == "mace" else ".pth"
        untrained = self.family.build(out / f"untrained{suffix}", elements, settings.seed, size="student",
                                      energy_references_ev=self.stats["e0_ev"],
                                      force_scale_ev_per_angstrom=self.stats["force_rms_ev_per_angstrom"],
                                      avg_num_neighbours=self.stats["mean_neighbours"], **size)
        self.path = out / f"student{suffix}"
        self.calc = load_calculator(untrained, device=settings.device)
        self.adapter = adapter_for(self.calc)
        self.module = self.adapter.module(self.calc)
        frozen = ("rescale_atomic_energy",)  # SevenNet's fixed shift and scale
        for name, param in self.module.named_parameters():
            param.requires_grad_(not any(part in name for part in frozen))
        self.n_parameters = sum(p.numel() for p in self.module.parameters() if p.requires_grad)
        device = str(getattr(self.calc, "device", "cpu"))
        self.prepared_train = prepare_samples(self.adapter, self.calc, data, "student train", progress)
        initial = predict_all(self.adapter, self.module, self.prepared_train, "untrained student", progress)
        _recentre_energy(self.calc, data, [p["energy"] for p in initial])
        self.train_samples = make_samples(data, self.prepared_train, {}, device)
        self.prepared_val = prepare_samples(self.adapter, self.calc, val, "student val", progress) \
            if val is not None else None
        self.val_samples = make_samples(val, self.prepared_val, {}, device) if val is not None else None

    def hyperparameters(self):
        from ..finetune.trainer import Hyperparameters, LossWeights

        settings = self.settings
        weights = settings.loss_weights or LossWeights(**DISTILLATION_LOSS_WEIGHTS)
        if not (self.data.has("stress") and (self.val is None or self.val.has("stress"))):
            weights = dataclasses.replace(weights, stress_gpa=0.0)
        return Hyperparameters(strategy="full", epochs=settings.epochs, batch_size=settings.batch_size,
                               lr=settings.lr, patience=settings.patience, seed=settings.seed, weights=weights)

    def train(self, resume: bool, callback: Any) -> dict[str, Any]:
        import torch

        from ..finetune.trainer import train

        self.hp = self.hyperparameters()
        torch.manual_seed(self.settings.seed)
        val = self.val
        run_identity = {"architecture": self.settings.architecture, "size": self.size,
                        "train_sha256": self.data.sha256(), "val_sha256": val.sha256() if val is not None else None,
                        "hyperparameters": dataclasses.asdict(self.hp)}
        outcome = train(self.adapter, self.module, self.train_samples, self.val_samples, self.hp, self.out,
                        resume=resume, progress=self.progress, callback=callback, run_identity=run_identity)
        self.module.eval()
        return outcome

    def save(self, outcome: dict[str, Any], teacher: dict[str, Any]) -> StudentTraining:
        from ..finetune.trainer import errors, predict_all

        data, val, path, architecture = self.data, self.val, self.path, self.settings.architecture
        eval_set, prepared = (val, self.prepared_val) if val is not None else (data, self.prepared_train)
        final = errors(eval_set, predict_all(self.adapter, self.module, prepared, "student", self.progress), {})
        self.family.save(self.calc, path)
        log = outcome["log"]
        hyperparameters = {**dataclasses.asdict(self.hp), "size": self.size, "architecture": architecture}
        atomic_write_json(path.with_suffix(SIDECAR_SUFFIX), {
            "format": "umlip-distilled-student/1", "student_file": path.name, "student_sha256": sha256_file(path),
            "architecture": architecture, "teacher": teacher, "hyperparameters": hyperparameters,
            "data": {"train": _data_record(data), "val": _data_record(val) if val is not None else None},
            "scales": self.stats, "errors_vs_labels": final,
        })
        return StudentTraining(
            path=str(path), architecture=architecture, size=self.size, n_parameters=self.n_parameters,
            n_train_frames=len(data), n_val_frames=len(val) if val is not None else 0, epochs_run=len(log),
            best_epoch=outcome["best_epoch"], seconds_per_epoch=float(np.mean([row["seconds"] for row in log])),
            energy_mae_vs_labels_mev_per_atom=final["energy_mae_mev_per_atom"],
            force_mae_vs_labels_ev_per_angstrom=final["forces_mae_ev_per_angstrom"],
            stress_mae_vs_labels_gpa=final["stress_mae_gpa"], log=log,
            provenance=provenance(None, architecture=architecture, teacher=teacher, hyperparameters=hyperparameters,
                                  train_sha256=data.sha256()),
        )


def _data_record(dataset: DFTDataset) -> dict[str, Any]:
    return {"name": dataset.name, "n_frames": len(dataset), "sha256": dataset.sha256()}
