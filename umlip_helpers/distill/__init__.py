"""Distillation (PFD: pre-train, fine-tune, distil): a fine-tuned teacher labels many configurations and a small,
fast student is trained on them from scratch.

The steps are separate functions, so each can be replaced (your own configurations, a DFT parent as labeller):

* :func:`generate_configurations`: teacher MD at several temperatures, rattles and strains of the start structures;
* :func:`label_with`: energies, forces and stresses from any calculator, as a :class:`~umlip_helpers.data.DFTDataset`;
* :func:`train_student`: a small MACE or SevenNet built from scratch and trained with the project's trainer;
* :func:`md_speed`: MD cost of several calculators on one system, measured interleaved in one run;
* :func:`distill`: all of it, returning a :class:`DistillationResult`.

Each takes its frozen settings (:class:`GenerationSettings`, :class:`StudentSettings`, :class:`DistillSettings`) or
their fields as keyword arguments. The student is saved in its family's native format, so ``load_calculator(path)``
loads it (see :mod:`.student`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from ase import Atoms

from ..data import DFTDataset, read_dataset
from ..errors import UmlipError
from ..io import atomic_write_json, model_info, provenance
from ..models import check_elements, load_calculator
from ..results import Result
from .configurations import check_structures, generate_configurations, label_with, structures_sha256
from .settings import (ARCHITECTURES, DISTILLATION_LOSS_WEIGHTS, DistillSettings, GenerationSettings,
                       StudentSettings)
from .speed import MDSpeed, md_speed
from .student import SIDECAR_SUFFIX, StudentTraining, refuse_silent_restart, student_size, train_student

__all__ = ["ARCHITECTURES", "DISTILLATION_LOSS_WEIGHTS", "SIDECAR_SUFFIX", "DistillSettings", "DistillationResult",
           "GenerationSettings", "MDSpeed", "StudentSettings", "StudentTraining", "cli_distill", "distill",
           "generate_configurations", "label_with", "md_speed", "student_size", "train_student"]


@dataclasses.dataclass(frozen=True)
class DistillationResult(Result):
    """Teacher -> student. Errors against the parent are on ``parent_data`` (None when none was given)."""

    student_path: str
    architecture: str
    teacher: str
    teacher_sha256: str | None
    n_configurations: int
    labels_sha256: str
    student_parameters: int
    labelling_seconds: float
    training_seconds: float
    student_force_mae_vs_teacher_ev_per_angstrom: float
    student_energy_mae_vs_teacher_mev_per_atom: float
    teacher_force_mae_vs_parent_ev_per_angstrom: float | None
    student_force_mae_vs_parent_ev_per_angstrom: float | None
    force_mae_ratio_student_to_teacher: float | None
    teacher_energy_mae_vs_parent_mev_per_atom: float | None
    student_energy_mae_vs_parent_mev_per_atom: float | None
    md_ms_per_step_teacher: float | None
    md_ms_per_step_student: float | None
    md_speedup_student_over_teacher: float | None
    training: dict
    speed: dict | None
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = (
        "architecture", "teacher", "n_configurations", "student_parameters",
        "student_force_mae_vs_teacher_ev_per_angstrom",
        "teacher_force_mae_vs_parent_ev_per_angstrom", "student_force_mae_vs_parent_ev_per_angstrom",
        "force_mae_ratio_student_to_teacher", "md_ms_per_step_teacher", "md_ms_per_step_student",
        "md_speedup_student_over_teacher")

    def calculator(self, device: str = "auto"):
        return load_calculator(self.student_path, device=device)

    def plot(self, ax=None):
        """Two bars each: force MAE against the parent and MD cost per step, teacher and student."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(1, 2, figsize=(8, 3))
        ax_err, ax_speed = ax
        labels = ["teacher", f"student ({self.architecture})"]
        ax_err.bar(labels, [self.teacher_force_mae_vs_parent_ev_per_angstrom or np.nan,
                            self.student_force_mae_vs_parent_ev_per_angstrom or np.nan], color=["C0", "C1"])
        ax_err.set(ylabel="force MAE vs parent (eV/Å)")
        ax_speed.bar(labels, [self.md_ms_per_step_teacher or np.nan, self.md_ms_per_step_student or np.nan],
                     color=["C0", "C1"])
        ax_speed.set(ylabel="ms per MD step", yscale="log")
        if self.md_speedup_student_over_teacher:
            ax_speed.set_title(f"student {self.md_speedup_student_over_teacher:.1f}x faster")
        return ax


def _mae(reference: DFTDataset, calc: Any, progress: bool) -> dict[str, float]:
    from ..metrics import evaluate

    result = evaluate(calc, reference, progress=progress)
    return {"force": result.force_mae_ev_per_angstrom, "energy": result.energy_mae_mev_per_atom}


def distill(
    teacher_calc: Any,
    structures: Sequence[Atoms] | Atoms,
    out: str | os.PathLike,
    *,
    settings: DistillSettings | None = None,
    parent_data: DFTDataset | None = None,
    speed_structure: Atoms | None = None,
    resume: bool = False,
    callback: Any = None,
    progress: bool = True,
    **options: Any,
) -> DistillationResult:
    """The PFD distillation step: generate configurations around ``structures``, label them with the teacher, train
    a student from scratch, and measure it. ``settings`` (a :class:`DistillSettings`) or its keyword arguments: the
    student's fields (``architecture=``, ``epochs=``, ``lr=``, ...), ``generation=`` (a dict of
    :class:`GenerationSettings` fields) and ``speed_steps=``.

    ``parent_data`` (labelled frames the teacher never saw, e.g. held-out DFT) gives both models' errors against
    the parent; ``speed_structure`` gives the MD speed ratio, measured in one run. The teacher's labels are saved
    in ``out`` (``teacher_labels.extxyz``) and the student is trained on them as saved. A killed run continues with
    ``resume=True`` (same arguments): it reuses the saved labels, if they come from the same teacher, structures
    and generation settings, and continues the student's training from its last checkpoint. ``callback`` is passed
    to :func:`train_student`.
    """
    settings = DistillSettings.from_options(settings, **options)
    structures = check_structures(structures)
    for i, atoms in enumerate(structures):
        check_elements(atoms, teacher_calc, where=f"structures[{i}]")
    out = Path(out)
    refuse_silent_restart(out, resume)
    teacher_info = model_info(teacher_calc).to_dict()
    started = time.perf_counter()
    labels = _teacher_labels(teacher_calc, structures, out, settings, resume, progress)
    labelling = time.perf_counter() - started
    started = time.perf_counter()
    teacher = {"name": teacher_info.get("name"), "sha256": teacher_info.get("sha256"),
               "checkpoint": teacher_info.get("checkpoint")}
    training = train_student(labels, out, settings=settings.student, teacher=teacher, resume=resume,
                             callback=callback, progress=progress)
    training_seconds = time.perf_counter() - started
    student = training.calculator(device=settings.student.device)
    teacher_err = student_err = None
    if parent_data is not None:
        teacher_err = _mae(parent_data, teacher_calc, progress)
        student_err = _mae(parent_data, student, progress)
    speed = None
    if speed_structure is not None:
        speed = md_speed({"teacher": teacher_calc, "student": student}, speed_structure,
                         steps_per_round=settings.speed_steps, seed=settings.student.seed, progress=progress)
    student_settings = settings.student
    return DistillationResult(
        student_path=training.path, architecture=student_settings.architecture, teacher=str(teacher["name"]),
        teacher_sha256=teacher["sha256"], n_configurations=len(labels), labels_sha256=labels.sha256(),
        student_parameters=training.n_parameters, labelling_seconds=labelling, training_seconds=training_seconds,
        student_force_mae_vs_teacher_ev_per_angstrom=training.force_mae_vs_labels_ev_per_angstrom,
        student_energy_mae_vs_teacher_mev_per_atom=training.energy_mae_vs_labels_mev_per_atom,
        teacher_force_mae_vs_parent_ev_per_angstrom=teacher_err["force"] if teacher_err else None,
        student_force_mae_vs_parent_ev_per_angstrom=student_err["force"] if student_err else None,
        force_mae_ratio_student_to_teacher=student_err["force"] / teacher_err["force"] if teacher_err else None,
        teacher_energy_mae_vs_parent_mev_per_atom=teacher_err["energy"] if teacher_err else None,
        student_energy_mae_vs_parent_mev_per_atom=student_err["energy"] if student_err else None,
        md_ms_per_step_teacher=speed.ms_per_step["teacher"] if speed else None,
        md_ms_per_step_student=speed.ms_per_step["student"] if speed else None,
        md_speedup_student_over_teacher=speed.speedup["student"] if speed else None,
        training=training.summary(), speed=speed.to_dict() if speed else None,
        provenance=provenance(teacher_calc, architecture=student_settings.architecture, size=training.size,
                              epochs=student_settings.epochs, batch_size=student_settings.batch_size,
                              lr=student_settings.lr, seed=student_settings.seed,
                              generation=dataclasses.asdict(settings.generation), n_structures=len(structures),
                              labels_sha256=labels.sha256(),
                              parent_data=parent_data.name if parent_data is not None else None,
                              parent_data_sha256=parent_data.sha256() if parent_data is not None else None),
    )


def _teacher_labels(teacher_calc: Any, structures: list[Atoms], out: Path, settings: DistillSettings, resume: bool,
                    progress: bool) -> DFTDataset:
    """The teacher's labels of the generated configurations, written to ``out/teacher_labels.extxyz`` with a record
    of what made them; on resume, read back if the record matches."""
    teacher_info = model_info(teacher_calc).to_dict()
    labels_path, labels_record = out / "teacher_labels.extxyz", out / "teacher_labels.json"
    seed = settings.student.seed
    record = json.loads(json.dumps({"teacher": teacher_info.get("name"), "teacher_sha256": teacher_info.get("sha256"),
                                    "structures_sha256": structures_sha256(structures),
                                    "generation": dataclasses.asdict(settings.generation), "seed": seed},
                                   default=str))
    if resume and labels_path.exists() and labels_record.exists():
        if json.loads(labels_record.read_text()) != record:
            raise UmlipError(f"{labels_path} was made by another teacher, from other structures or with other "
                             f"generation settings ({labels_record}); use a new out directory")
    else:
        configurations = generate_configurations(structures, teacher_calc, settings=settings.generation, seed=seed,
                                                 out_dir=out / "teacher_md", progress=progress)
        label_with(teacher_calc, configurations, progress=progress).write_extxyz(labels_path)
        atomic_write_json(labels_record, record)
    return read_dataset(labels_path)


def cli_distill(args) -> dict[str, Any]:
    """``umlip distill --model TEACHER --structure FILE --out DIR``: teacher MD, rattles and strains around the
    structure, labelled by the teacher; a student trained on them and timed against the teacher."""
    from ..data import read_structure

    atoms = read_structure(args.structure)
    teacher = load_calculator(args.model, device=args.device, threads=args.threads)
    result = distill(teacher, atoms, args.out, architecture=args.architecture, epochs=args.epochs,
                     generation={"md_steps": args.md_steps}, speed_structure=atoms, device=args.device,
                     resume=args.resume)
    print(f"umlip distill: student {result.student_path}, {result.student_parameters} parameters, force MAE vs "
          f"teacher {result.student_force_mae_vs_teacher_ev_per_angstrom:.3f} eV/Å, "
          f"{result.md_speedup_student_over_teacher or float('nan'):.1f}x faster in MD")
    return {"type": "DistillationResult", **result.to_dict()}
