"""Distillation (PFD: pre-train, fine-tune, distil): a fine-tuned teacher labels many configurations and a small,
fast student is trained on them from scratch.

The steps are separate functions, so each can be replaced (your own configurations, a DFT parent as labeller):

* :func:`generate_configurations`: teacher MD at several temperatures, rattles and strains of the start structures;
* :func:`label_with`: energies, forces and stresses from any calculator, as a :class:`~umlip_helpers.data.DFTDataset`;
* :func:`train_student`: a small MACE or SevenNet built from scratch and trained with the project's trainer;
* :func:`md_speed`: MD cost of several calculators on one system, measured interleaved in one run;
* :func:`distill`: all of it, returning a :class:`DistillationResult`.

The student is saved in its family's native format (``student.model`` for MACE, ``student.pth`` for SevenNet), so
``load_calculator(path)`` loads it; ``student.json`` beside it records the teacher, the data hash and the settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from ase import Atoms
from tqdm.auto import tqdm

from .choices import StudentArchitecture, options
from .data import DFTDataset, LabelledFrame, check_frames, fit_energy_shifts, random_split, read_dataset
from .errors import DataValidationError, UmlipError
from .io import atomic_write_json, model_info, provenance, sha256_file
from .models import adapter_for, check_elements, get_family, load_calculator
from .results import Result

Architecture = StudentArchitecture
ARCHITECTURES: tuple[str, ...] = options(StudentArchitecture)
SIDECAR_SUFFIX = ".json"


def student_size(architecture: Architecture) -> dict[str, Any]:
    """The default student hyperparameters of an architecture: its family's ``SIZES["student"]`` (two interactions,
    scalars and vectors, a 5 Å cutoff, SevenNet-0's)."""
    import importlib

    return dict(importlib.import_module(f"umlip_helpers.models.{architecture}").SIZES["student"])
#: Loss weights (see :class:`~umlip_helpers.finetune.trainer.LossWeights`) for training from scratch: forces lead;
#: 10 meV/atom of energy error weighs as much as 0.03 eV/Å of force error.
DISTILLATION_LOSS_WEIGHTS = {"energy_per_atom_mev": 1e-5, "forces_ev_per_angstrom": 1.0, "stress_gpa": 1e-3}


# ------------------------------------------------------------------------------------------- configurations


def _check_structures(structures: Sequence[Atoms] | Atoms, what: str = "structures") -> list[Atoms]:
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


def _refuse_silent_restart(out: Path, resume: bool) -> None:
    from .finetune.trainer import CHECKPOINT_NAME

    if (out / CHECKPOINT_NAME).exists() and not resume:
        raise UmlipError(f"{out} already holds a student training run: pass resume=True to continue it, or choose a "
                         "new directory")


def _structures_sha256(structures: Sequence[Atoms]) -> str:
    digest = hashlib.sha256()
    for atoms in structures:
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array, dtype=float).tobytes())
    return digest.hexdigest()


def generate_configurations(
    structures: Sequence[Atoms] | Atoms,
    calc: Any = None,
    *,
    temperatures_k: Sequence[float] = (300.0, 600.0),
    md_steps: int = 20,
    md_interval: int = 5,
    timestep_fs: float = 1.0,
    rattle_amplitudes_angstrom: Sequence[float] = (0.02, 0.05),
    rattles_per_amplitude: int = 2,
    strains: Sequence[float] = (-0.02, 0.02),
    strain_rattle_angstrom: float = 0.02,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> list[Atoms]:
    """Configurations around each structure, each tagged in ``atoms.info["distill_source"]``:

    * NVT (Langevin) MD with ``calc`` (the teacher) at each temperature, one frame every ``md_interval`` steps
      (skipped when ``calc`` is None or ``md_steps`` is 0);
    * ``rattles_per_amplitude`` random displacements (Gaussian, standard deviation in Å) per amplitude;
    * isotropic strains (fractional change of the lattice constants), each lightly rattled.

    The returned ``Atoms`` carry no calculator: label them with :func:`label_with`.
    """
    structures = _check_structures(structures)
    rng = np.random.default_rng(seed)
    out: list[Atoms] = []

    def add(atoms: Atoms, source: str) -> None:
        atoms = atoms.copy()
        atoms.calc = None
        atoms.info = {"distill_source": source}
        out.append(atoms)

    for index, structure in enumerate(structures):
        for amplitude in rattle_amplitudes_angstrom:
            for _ in range(rattles_per_amplitude):
                atoms = structure.copy()
                atoms.positions += rng.normal(0.0, amplitude, atoms.positions.shape)
                add(atoms, f"structure {index}: rattle {amplitude:g} A")
        for strain in strains:
            atoms = structure.copy()
            atoms.set_cell(atoms.cell.array * (1.0 + strain), scale_atoms=True)
            atoms.positions += rng.normal(0.0, strain_rattle_angstrom, atoms.positions.shape)
            add(atoms, f"structure {index}: strain {strain:+g}")
        if calc is None or md_steps <= 0:
            continue
        from .md import run_md

        check_elements(structure, calc, where=f"structures[{index}]")
        base = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="umlip-distill-md-"))
        for temperature in tqdm(temperatures_k, desc=f"teacher MD, structure {index}", disable=not progress):
            run = run_md(structure, calc, ensemble="nvt", temperature_k=float(temperature), timestep_fs=timestep_fs,
                         steps=md_steps, out_dir=base / f"md_{index}_{temperature:g}K", traj_interval=md_interval,
                         overwrite=True, seed=int(rng.integers(2**31)), progress=False)
            for frame in run.frames():
                if frame.info.get("md_step", 0) > 0:
                    add(frame, f"structure {index}: MD {temperature:g} K step {frame.info['md_step']}")
    return out


def label_with(calc: Any, configurations: Sequence[Atoms], *, stress: bool = True, name: str | None = None,
               progress: bool = True) -> DFTDataset:
    """Energy, forces (and stress) of every configuration from ``calc``, as labelled frames."""
    configurations = _check_structures(configurations, "configurations")
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


# ------------------------------------------------------------------------------------------------ the student


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
    table, row = get_family(model_info(calc).family).energy_references(calc)
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
    architecture: Architecture = "mace",
    size: dict[str, Any] | None = None,
    val: DFTDataset | None = None,
    val_fraction: float = 0.1,
    epochs: int = 50,
    batch_size: int = 2,
    lr: float = 1e-2,
    loss_weights: Any = None,
    patience: int = 20,
    seed: int = 0,
    device: str = "auto",
    teacher: dict[str, Any] | None = None,
    resume: bool = False,
    callback: Any = None,
    progress: bool = True,
) -> StudentTraining:
    """Build a small ``architecture`` model from scratch and train every weight on ``data`` (labelled frames).

    Its output scale is the labels' force RMS and its per-element energy references are fitted so that the untrained
    model's energies already match the labels on average (least squares). ``size`` overrides the family's
    ``SIZES["student"]`` (:func:`student_size`). ``out`` receives the untrained model, the student
    (``student.model`` or ``student.pth``) with its sidecar ``.json``, and the training log and checkpoint. Without
    ``val``, ``val_fraction`` of the frames (when there are 10 or more) validate. A killed run continues with
    ``resume=True`` (same arguments, same ``out``) from its last epoch checkpoint, to the same weights as an
    uninterrupted run; ``callback`` gets each optimiser step (see :func:`umlip_helpers.finetune.trainer.train`).
    """
    import torch

    from .finetune.trainer import (Hyperparameters, LossWeights, errors, make_samples,
                                   predict_all, prepare_samples, train)

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")
    if data is None or len(data) == 0:
        raise DataValidationError([("student data", None, "dataset", "no labelled frames given")])
    check_frames(data, require=("energy", "forces"))
    if val is None and len(data) >= 10 and val_fraction > 0:
        data, val = random_split(data, (1 - val_fraction, val_fraction), seed=seed)
    if val is not None:
        check_frames(val, require=("energy", "forces"))
    size = {**student_size(architecture), **(size or {})}
    weights = loss_weights or LossWeights(**DISTILLATION_LOSS_WEIGHTS)
    out = Path(out)
    _refuse_silent_restart(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    cutoff = size["r_max"] if architecture == "mace" else size["cutoff"]
    stats = _statistics(data, cutoff)
    elements = sorted(set(data.elements) | set(val.elements if val is not None else []))
    missing = sorted(set(elements) - set(stats["e0_ev"]))
    if missing:
        raise DataValidationError([(val.name, None, "elements", f"{', '.join(missing)} only in the validation set")])
    family = get_family(architecture)
    suffix = ".model" if architecture == "mace" else ".pth"
    untrained = family.build(out / f"untrained{suffix}", elements, seed, size="student",
                             energy_references_ev=stats["e0_ev"],
                             force_scale_ev_per_angstrom=stats["force_rms_ev_per_angstrom"],
                             avg_num_neighbours=stats["mean_neighbours"], **size)
    path = out / f"student{suffix}"
    calc = load_calculator(untrained, device=device)
    adapter = adapter_for(calc)
    module = adapter.module(calc)
    frozen = ("rescale_atomic_energy",)  # SevenNet's fixed shift and scale
    for name, param in module.named_parameters():
        param.requires_grad_(not any(part in name for part in frozen))
    n_parameters = sum(p.numel() for p in module.parameters() if p.requires_grad)
    run_device = str(getattr(calc, "device", "cpu"))
    has_stress = data.has("stress") and (val is None or val.has("stress"))
    if not has_stress:
        weights = dataclasses.replace(weights, stress_gpa=0.0)
    prepared_train = prepare_samples(adapter, calc, data, "student train", progress)
    initial = predict_all(adapter, module, prepared_train, "untrained student", progress)
    _recentre_energy(calc, data, [p["energy"] for p in initial])
    train_samples = make_samples(data, prepared_train, {}, run_device)
    prepared_val = prepare_samples(adapter, calc, val, "student val", progress) if val is not None else None
    val_samples = make_samples(val, prepared_val, {}, run_device) if val is not None else None
    hp = Hyperparameters(strategy="full", epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                         weights=weights)
    torch.manual_seed(seed)
    run_identity = {"architecture": architecture, "size": size, "train_sha256": data.sha256(),
                    "val_sha256": val.sha256() if val is not None else None, "hyperparameters": dataclasses.asdict(hp)}
    outcome = train(adapter, module, train_samples, val_samples, hp, out, resume=resume, progress=progress,
                    callback=callback, run_identity=run_identity)
    module.eval()
    eval_set = val if val is not None else data
    prepared_eval = prepared_val if val is not None else prepared_train
    final = errors(eval_set, predict_all(adapter, module, prepared_eval, "student", progress), {})
    family.save(calc, path)
    log = outcome["log"]
    hyperparameters = {**dataclasses.asdict(hp), "size": size, "architecture": architecture}
    atomic_write_json(path.with_suffix(SIDECAR_SUFFIX), {
        "format": "umlip-distilled-student/1", "student_file": path.name, "student_sha256": sha256_file(path),
        "architecture": architecture, "teacher": teacher or {}, "hyperparameters": hyperparameters,
        "data": {"train": {"name": data.name, "n_frames": len(data), "sha256": data.sha256()},
                 "val": {"name": val.name, "n_frames": len(val), "sha256": val.sha256()} if val is not None else None},
        "scales": stats, "errors_vs_labels": final,
    })
    return StudentTraining(
        path=str(path), architecture=architecture, size=size, n_parameters=n_parameters, n_train_frames=len(data),
        n_val_frames=len(val) if val is not None else 0, epochs_run=len(log), best_epoch=outcome["best_epoch"],
        seconds_per_epoch=float(np.mean([row["seconds"] for row in log])),
        energy_mae_vs_labels_mev_per_atom=final["energy_mae_mev_per_atom"],
        force_mae_vs_labels_ev_per_angstrom=final["forces_mae_ev_per_angstrom"],
        stress_mae_vs_labels_gpa=final["stress_mae_gpa"], log=log,
        provenance=provenance(None, architecture=architecture, teacher=teacher or {}, hyperparameters=hyperparameters,
                              train_sha256=data.sha256()),
    )


# -------------------------------------------------------------------------------------------------------- speed


@dataclasses.dataclass(frozen=True)
class MDSpeed(Result):
    """Wall time per MD step of several calculators on one system, measured in interleaved rounds of one run (so
    a busy machine slows every model alike); ``speedup`` is each model's speed relative to ``reference``."""

    formula: str
    n_atoms: int
    steps_per_round: int
    rounds: int
    reference: str
    ms_per_step: dict
    speedup: dict
    provenance: dict

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        names = list(self.ms_per_step)
        ax.bar(names, [self.ms_per_step[n] for n in names])
        ax.set(yscale="log", ylabel="ms per MD step", title=f"{self.formula} ({self.n_atoms} atoms)")
        for i, name in enumerate(names):
            ax.annotate(f"{self.speedup[name]:.1f}x", (i, self.ms_per_step[name]), ha="center", va="bottom")
        return ax


def md_speed(calcs: dict[str, Any], atoms: Atoms, *, steps_per_round: int = 5, rounds: int = 2,
             temperature_k: float = 300.0, reference: str | None = None, seed: int = 0,
             progress: bool = True) -> MDSpeed:
    """Milliseconds per NVT (Langevin) step of each calculator on ``atoms``; the first calculator is the reference
    unless ``reference`` names another. Rounds alternate between the models; the median round counts."""
    from .md import run_md

    if not calcs:
        raise ValueError("md_speed needs at least one calculator")
    reference = reference or next(iter(calcs))
    if reference not in calcs:
        raise ValueError(f"reference {reference!r} is not one of {', '.join(calcs)}")
    for name, calc in calcs.items():
        check_elements(atoms, calc, where=f"md_speed structure ({name})")
    times: dict[str, list[float]] = {name: [] for name in calcs}
    bar = tqdm(total=rounds * len(calcs), desc="MD speed", disable=not progress)
    for round_index in range(rounds):
        for name, calc in calcs.items():
            run = run_md(atoms, calc, ensemble="nvt", temperature_k=temperature_k, steps=steps_per_round,
                         out_dir=None, seed=seed + round_index, progress=False)
            times[name].append(1000.0 * len(atoms) / run.throughput_atom_steps_per_s)
            bar.update(1)
    bar.close()
    ms = {name: float(np.median(values)) for name, values in times.items()}
    return MDSpeed(
        formula=atoms.get_chemical_formula(), n_atoms=len(atoms), steps_per_round=steps_per_round, rounds=rounds,
        reference=reference, ms_per_step=ms, speedup={name: ms[reference] / value for name, value in ms.items()},
        provenance=provenance(None, models={name: model_info(c).to_dict()
                                            for name, c in calcs.items()},
                              steps_per_round=steps_per_round, rounds=rounds, temperature_k=temperature_k,
                              all_ms_per_step=times, load_average=os.getloadavg()),
    )


# ------------------------------------------------------------------------------------------------ all in one


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
    from .metrics import evaluate

    result = evaluate(calc, reference, progress=progress)
    return {"force": result.force_mae_ev_per_angstrom, "energy": result.energy_mae_mev_per_atom}


def distill(
    teacher_calc: Any,
    structures: Sequence[Atoms] | Atoms,
    out: str | os.PathLike,
    *,
    architecture: Architecture = "mace",
    size: dict[str, Any] | None = None,
    parent_data: DFTDataset | None = None,
    speed_structure: Atoms | None = None,
    speed_steps: int = 5,
    generation: dict[str, Any] | None = None,
    epochs: int = 50,
    batch_size: int = 2,
    lr: float = 1e-2,
    seed: int = 0,
    device: str = "auto",
    resume: bool = False,
    callback: Any = None,
    progress: bool = True,
) -> DistillationResult:
    """The PFD distillation step: generate configurations around ``structures`` (``generation`` is passed to
    :func:`generate_configurations`), label them with the teacher, train a student from scratch, and measure it.

    ``parent_data`` (labelled frames the teacher never saw, e.g. held-out DFT) gives both models' errors against
    the parent; ``speed_structure`` gives the MD speed ratio, measured in one run. The teacher's labels are saved
    in ``out`` (``teacher_labels.extxyz``) and the student is trained on them as saved. A killed run continues with
    ``resume=True`` (same arguments): it reuses the saved labels, if they come from the same teacher, structures
    and generation settings, and continues the student's training from its last checkpoint. ``callback`` is passed
    to :func:`train_student`.
    """
    structures = _check_structures(structures)
    for i, atoms in enumerate(structures):
        check_elements(atoms, teacher_calc, where=f"structures[{i}]")
    out = Path(out)
    _refuse_silent_restart(out, resume)
    teacher_info = model_info(teacher_calc).to_dict()
    started = time.perf_counter()
    labels_path, labels_record = out / "teacher_labels.extxyz", out / "teacher_labels.json"
    record = json.loads(json.dumps({"teacher": teacher_info.get("name"), "teacher_sha256": teacher_info.get("sha256"),
                                    "structures_sha256": _structures_sha256(structures),
                                    "generation": generation or {}, "seed": seed}, default=str))
    if resume and labels_path.exists() and labels_record.exists():
        if json.loads(labels_record.read_text()) != record:
            raise UmlipError(f"{labels_path} was made by another teacher, from other structures or with other "
                             f"generation settings ({labels_record}); use a new out directory")
    else:
        configurations = generate_configurations(structures, teacher_calc, seed=seed, out_dir=out / "teacher_md",
                                                 progress=progress, **(generation or {}))
        label_with(teacher_calc, configurations, progress=progress).write_extxyz(labels_path)
        atomic_write_json(labels_record, record)
    labels = read_dataset(labels_path)
    labelling = time.perf_counter() - started
    started = time.perf_counter()
    teacher = {"name": teacher_info.get("name"), "sha256": teacher_info.get("sha256"),
               "checkpoint": teacher_info.get("checkpoint")}
    training = train_student(labels, out, architecture=architecture, size=size, epochs=epochs,
                             batch_size=batch_size, lr=lr, seed=seed, device=device, teacher=teacher,
                             resume=resume, callback=callback, progress=progress)
    training_seconds = time.perf_counter() - started
    student = training.calculator(device=device)

    teacher_err = student_err = None
    if parent_data is not None:
        teacher_err = _mae(parent_data, teacher_calc, progress)
        student_err = _mae(parent_data, student, progress)
    speed = None
    if speed_structure is not None:
        speed = md_speed({"teacher": teacher_calc, "student": student}, speed_structure, steps_per_round=speed_steps,
                         seed=seed, progress=progress)
    return DistillationResult(
        student_path=training.path, architecture=architecture, teacher=str(teacher["name"]),
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
        provenance=provenance(teacher_calc, architecture=architecture, size=training.size, epochs=epochs,
                              batch_size=batch_size, lr=lr, seed=seed, generation=generation or {},
                              n_structures=len(structures), labels_sha256=labels.sha256(),
                              parent_data=parent_data.name if parent_data is not None else None,
                              parent_data_sha256=parent_data.sha256() if parent_data is not None else None),
    )


def cli_distill(args) -> dict[str, Any]:
    """``umlip distill --model TEACHER --structure FILE --out DIR``: teacher MD, rattles and strains around the
    structure, labelled by the teacher; a student trained on them and timed against the teacher."""
    from .data import read_structure

    atoms = read_structure(args.structure)
    teacher = load_calculator(args.model, device=args.device, threads=args.threads)
    result = distill(teacher, atoms, args.out, architecture=args.architecture, epochs=args.epochs,
                     generation={"md_steps": args.md_steps}, speed_structure=atoms, device=args.device,
                     resume=args.resume)
    print(f"umlip distill: student {result.student_path}, {result.student_parameters} parameters, force MAE vs "
          f"teacher {result.student_force_mae_vs_teacher_ev_per_angstrom:.3f} eV/Å, "
          f"{result.md_speedup_student_over_teacher or float('nan'):.1f}x faster in MD")
    return {"type": "DistillationResult", **result.to_dict()}
