"""Fine-tuning: one entry point, :func:`finetune`, for every family and strategy (full, head, LoRA).

Families (each ``models/<family>.py`` holds its trainer adapter): SevenNet, CHGNet, MACE, NequIP/Allegro, UMA and
other eSCN-MD models (fairchem) and PET (a metatrain ``.ckpt``; an exported TorchScript ``.pt`` cannot be trained).

The output directory holds the fine-tuned weights (LoRA adapters or trained tensors, safetensors), the manifest
``umlip_model.json`` and the training log; ``load_calculator(out_dir)`` loads it as an ASE calculator.

One piece: the one entry point of fine-tuning: its settings, the run around the trainer, its report and its
command.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from ..data import DFTDataset, check_frames, read_dataset, random_split
from ..errors import DataValidationError, ModelUnavailable, UmlipError, UnsupportedElements
from ..io import atomic_write_json, model_info, provenance, sha256_file
from ..models import MANIFEST_NAME, adapter_for, load_calculator, read_manifest, supported_elements, unshifted
from ..models.finetuned import MANIFEST_FORMAT, WEIGHTS_FILE, Strategy, apply_saved_weights
from ..results import Result
from .distributed import local_device, ranks
from .replay import replay_samples
from .strategies import STRATEGIES, apply_strategy, parameter_counts, save_weights
from .trainer import (CHECKPOINT_NAME, DEFAULT_LOSS, LOG_JSON, Hyperparameters, LossWeights, align_energies, errors,
                      make_samples, peak_memory_mb, predict_all, prepare_samples)
from .trainer import train as run_training

__all__ = ["FinetuneReport", "FinetuneSettings", "LossWeights", "cli_finetune", "finetune"]


@dataclasses.dataclass(frozen=True)
class FinetuneReport(Result):
    out_dir: str
    strategy: str
    base_model: str
    n_train_frames: int
    n_val_frames: int
    epochs_run: int
    best_epoch: int
    trainable_parameters: int
    total_parameters: int
    trainable_fraction: float
    #: per-element shifts (eV) fitted on the training frames: for the base model (``before``) and for the
    #: fine-tuned one (``after``; saved with the model, which ``load_calculator`` applies)
    base_energy_shifts_ev: dict
    energy_shifts_ev: dict
    #: MAEs before/after on the validation frames (training frames when there are none):
    #: energy_mae_mev_per_atom (base after alignment), forces_mae_ev_per_angstrom, stress_mae_gpa
    before: dict
    after: dict
    base_energy_mae_unaligned_mev_per_atom: float
    seconds_per_epoch: float
    peak_memory_mb: float
    log: list
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = (
        "strategy", "base_model", "n_train_frames", "epochs_run", "best_epoch", "trainable_fraction",
        "seconds_per_epoch", "peak_memory_mb")

    def calculator(self, device: str = "auto"):
        """The fine-tuned model as an ASE calculator."""
        return load_calculator(self.out_dir, device=device)

    def plot(self, ax=None):
        """Learning curves: training and validation loss per epoch."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        epochs = [row["epoch"] for row in self.log]
        ax.semilogy(epochs, [row["train_loss"] for row in self.log], "o-", label="train")
        if self.log and "val_loss" in self.log[0]:
            ax.semilogy(epochs, [row["val_loss"] for row in self.log], "s-", label="validation")
        ax.axvline(self.best_epoch, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("weighted loss")
        ax.set_title(f"{self.base_model}, {self.strategy}")
        ax.legend()
        return ax


def _as_dataset(data: Any, label: str, require: tuple[str, ...], max_frames: int | None) -> DFTDataset:
    if isinstance(data, (str, os.PathLike)):
        return read_dataset(data, max_frames=max_frames, require=require)
    dataset = data if isinstance(data, DFTDataset) else DFTDataset(list(data), name=label)
    if max_frames is not None:
        dataset = dataset[:max_frames]
    check_frames(dataset, require=require)
    return dataset


def _base_descriptor(calc: Any, out: Path | None = None) -> dict[str, Any]:
    """How to load ``calc`` again: by name, or by path for a checkpoint file or a fine-tuned directory (then also
    relative to ``out``, so that a tree of fine-tuned directories can be moved as a whole)."""
    info = model_info(calc)
    by_path = info.version == "user checkpoint" or info.base_model is not None  # a checkpoint or fine-tuned dir
    load = info.checkpoint if by_path else info.name
    descriptor = {"name": info.name, "family": info.family, "version": info.version, "sha256": info.sha256,
                  "load": load}
    if by_path and load and out is not None:
        descriptor["load_relative"] = os.path.relpath(Path(load).resolve(), Path(out).resolve())
    return descriptor


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Everything :func:`finetune` does besides the model, the data and where it writes: the trainer's
    :class:`Hyperparameters`, how the frames are taken, and where and how the forward runs."""

    hyperparameters: Hyperparameters = dataclasses.field(default_factory=lambda: Hyperparameters(strategy="lora"))
    max_frames: int | None = None
    val_fraction: float = 0.1
    device: str = "auto"
    #: one forward per batch of frames (None: on a GPU) or a forward per frame
    batched: bool | None = None

    @classmethod
    def from_options(cls, strategy: Strategy = "lora", loss_weights: LossWeights | None = None,
                     **options: Any) -> "FinetuneSettings":
        """From :func:`finetune`'s keyword arguments: the Hyperparameters fields, ``loss_weights`` and the rest."""
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        own = {f.name for f in dataclasses.fields(cls)}
        trainer = {k: v for k, v in options.items() if k not in own}
        hp = Hyperparameters(strategy=strategy, weights=loss_weights, **trainer)
        return cls(hyperparameters=hp, **{k: v for k, v in options.items() if k in own})

    @property
    def required_labels(self) -> tuple[str, ...]:
        weights = self.hyperparameters.weights
        return ("energy",) + (("forces",) if weights.forces_ev_per_angstrom else ()) + (
            ("stress",) if weights.stress_gpa else ())


def finetune(
    model: Any = "sevennet-0",
    train: Any = None,
    val: Any = None,
    strategy: Strategy = "lora",
    out: str | os.PathLike | None = None,
    *,
    settings: FinetuneSettings | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> FinetuneReport:
    """Fine-tune ``model`` (name, checkpoint, or a calculator from ``load_calculator``, trained in place) on DFT
    frames; the fine-tuned model is written to ``out`` (a new temporary directory when None).

    ``train``/``val``: a file (vasprun.xml, OUTCAR, extxyz), a :class:`DFTDataset` or labelled frames. Without
    ``val``, ``val_fraction`` of the training frames (when there are 10 or more) are held out for early stopping.
    The base model's energy reference is first aligned to DFT with per-element shifts fitted on the training
    frames; the loss then weights energy per atom, forces and stress (see :class:`LossWeights`); after training
    the shifts are fitted again for the fine-tuned model (saved with it). The same inputs
    and ``seed`` give the same model. ``resume=True`` continues a killed run from its last epoch checkpoint, and
    refuses one written for other data, hyperparameters or base model; for a run that finished there it returns its
    report without recomputing it, the saved weights loaded into the model. ``batched``: one forward per batch of frames
    (the default on a GPU) or a forward per frame (the default on CPU); the same gradients up to rounding.

    ``settings`` (a :class:`FinetuneSettings`) or its fields as keyword arguments (``epochs=``, ``lr=``,
    ``loss_weights=``, ``lora_rank=``, ...; ``strategy`` may be given either way).
    """
    if settings is None:
        settings = FinetuneSettings.from_options(strategy, **{k: v for k, v in options.items() if v is not None})
    elif options:
        raise TypeError(f"finetune: pass settings= or keyword options, not both ({', '.join(options)})")
    if train is None:
        raise DataValidationError([("train", None, "dataset", "no training data given")])
    train_set, val_set = _datasets(train, val, settings)
    if out is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UmlipError("finetune under torchrun needs out= (--out): every rank must write to the same directory")
    out = _output_directory(out, resume)
    return _Run(model, train, train_set, val_set, settings, out, resume, progress, callback).execute()


def _datasets(train: Any, val: Any, settings: FinetuneSettings) -> tuple[DFTDataset, DFTDataset | None]:
    require = settings.required_labels
    train_set = _as_dataset(train, "train", require, settings.max_frames)
    val_set = _as_dataset(val, "val", require, None) if val is not None else None
    if val_set is None and len(train_set) >= 10 and settings.val_fraction > 0:
        train_set, val_set = random_split(train_set, (1 - settings.val_fraction, settings.val_fraction),
                                          seed=settings.hyperparameters.seed)
    return train_set, val_set


def _output_directory(out: str | os.PathLike | None, resume: bool) -> Path:
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="umlip-finetune-"))
    if (out / CHECKPOINT_NAME).exists() and not resume:
        raise UmlipError(f"{out} already holds a training run; pass resume=True (--resume) or choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_coverage(calc: Any, datasets: tuple[DFTDataset | None, ...]) -> None:
    covered = supported_elements(calc)
    if covered is None:
        return
    for dataset in datasets:
        missing = sorted(set(dataset.elements) - covered) if dataset is not None else []
        if missing:
            raise UnsupportedElements(f"{dataset.name}: element(s) {', '.join(missing)} are not covered by "
                                      f"{_base_descriptor(calc)['name']!r}")


class _Run:
    """One fine-tuning run: the base model's errors, training, the fine-tuned model's errors, the manifest."""

    def __init__(self, model, train, train_set, val_set, settings: FinetuneSettings, out: Path, resume: bool,
                 progress: bool, callback):
        import torch

        self.train_source, self.train_set, self.val_set = train, train_set, val_set
        self.settings, self.out, self.resume, self.progress, self.callback = settings, out, resume, progress, callback
        torch.manual_seed(settings.hyperparameters.seed)
        self.ranks = ranks(settings.device)
        calc = model if hasattr(model, "get_potential_energy") or hasattr(model, "calculate") else \
            load_calculator(model, device=local_device(settings.device))
        _check_coverage(calc, (train_set, val_set))
        self.base_info, self.base_calc = _base_descriptor(calc, out), calc
        self.calc = unshifted(calc)  # a fine-tuned model trains further: its shifts are fitted again below
        self.adapter = adapter_for(self.calc)
        self.module = self.adapter.module(self.calc)
        self.adapter.make_trainable(self.module)
        self.device = str(getattr(self.calc, "device", "cpu"))
        self.hp = settings.hyperparameters
        self.identity = {"base_model": self.base_info["sha256"] or self.base_info["name"],
                         "train_sha256": train_set.sha256(), "val_sha256": val_set.sha256() if val_set else None,
                         "hyperparameters": dataclasses.asdict(self.hp)}

    def predict(self, prepared, label: str):
        return predict_all(self.adapter, self.module, prepared, label, self.progress and self.ranks.main,
                           self.settings.batched, self.ranks)

    def execute(self) -> FinetuneReport:
        import torch

        finished = _finished_run(self.out, self.identity, self.adapter, self.module) if self.resume else None
        if finished is not None:
            return finished
        adapter, train_set, val_set = self.adapter, self.train_set, self.val_set
        show = self.progress and self.ranks.main
        prepared_train = prepare_samples(adapter, self.calc, train_set, "train", show)
        prepared_val = prepare_samples(adapter, self.calc, val_set, "val", show) if val_set else None
        base_train = self.predict(prepared_train, "base, train")
        base_val = self.predict(prepared_val, "base, val") if val_set else None
        shifts = align_energies(train_set, base_train)
        eval_set, base_eval = (val_set, base_val) if val_set else (train_set, base_train)
        before = errors(eval_set, base_eval, shifts)
        unaligned = errors(eval_set, base_eval, None)["energy_mae_mev_per_atom"]

        hp = self.hp
        replay = replay_samples(self.calc, train_set.elements, hp, self.device, self.predict, show)  # [] if off
        torch.manual_seed(hp.seed)  # LoRA's A matrices are random: same seed, same start
        peft_model = apply_strategy(self.module, adapter, hp.strategy, hp.lora_rank, hp.lora_alpha)
        self.ranks.broadcast_parameters(self.module)  # one start on every rank
        trainable, total = parameter_counts(self.module)
        started = time.perf_counter()
        outcome = run_training(
            adapter, self.module, make_samples(train_set, prepared_train, shifts, self.device),
            make_samples(val_set, prepared_val, shifts, self.device) if val_set else None, self.hp, self.out,
            resume=self.resume, progress=self.progress, callback=self.callback, run_identity=self.identity,
            batched=self.settings.batched, ranks=self.ranks, replay=replay)
        elapsed = time.perf_counter() - started
        weights_path = self.out / WEIGHTS_FILE[hp.strategy]
        if self.ranks.main:
            save_weights(self.out, self.module, peft_model, hp.strategy)
        if peft_model is not None:
            peft_model.merge_and_unload()  # inference now costs exactly what the base model costs
        self.module.eval()
        self.module.requires_grad_(False)  # inference differentiates positions only
        # training moves the model's energy zero; re-align it on the training frames, as was done for the base model
        tuned_train = self.predict(prepared_train, "fine-tuned, train")
        tuned_shifts = align_energies(train_set, tuned_train)
        tuned_eval = self.predict(prepared_val, "fine-tuned, val") if val_set else tuned_train
        after = errors(eval_set, tuned_eval, tuned_shifts)
        report = self.report(outcome["log"], outcome["best_epoch"], (trainable, total), shifts, tuned_shifts,
                             before, after, unaligned, elapsed)
        if self.ranks.main:
            self.write_manifest(report, weights_path, tuned_shifts, (trainable, total))
        self.ranks.barrier()
        return report

    def report(self, log, best_epoch, counts, shifts, tuned_shifts, before, after, unaligned, elapsed):
        trainable, total = counts
        train_set, val_set, s = self.train_set, self.val_set, self.hp
        train = self.train_source
        return FinetuneReport(
            out_dir=str(self.out), strategy=s.strategy, base_model=str(self.base_info["name"]),
            n_train_frames=len(train_set), n_val_frames=len(val_set) if val_set else 0, epochs_run=len(log),
            best_epoch=best_epoch, trainable_parameters=trainable, total_parameters=total,
            trainable_fraction=trainable / total, base_energy_shifts_ev=shifts, energy_shifts_ev=tuned_shifts,
            before=before, after=after, base_energy_mae_unaligned_mev_per_atom=unaligned,
            seconds_per_epoch=float(np.mean([row["seconds"] for row in log])) if log else float("nan"),
            peak_memory_mb=peak_memory_mb(self.device), log=log,
            provenance=provenance(self.base_calc, strategy=s.strategy, hyperparameters=dataclasses.asdict(self.hp),
                                  train=str(train) if isinstance(train, (str, os.PathLike)) else train_set.name,
                                  train_sha256=train_set.sha256(), training_seconds=elapsed,
                                  processes=self.ranks.world),
        )

    def write_manifest(self, report: FinetuneReport, weights_path: Path, tuned_shifts, counts) -> None:
        train_set, val_set, s = self.train_set, self.val_set, self.hp
        lora = None
        if s.strategy == "lora":
            lora = {"r": self.hp.lora_rank or self.adapter.lora_rank, "lora_alpha": s.lora_alpha,
                    "target_modules": self.adapter.lora_targets}
        manifest = {
            "format": MANIFEST_FORMAT, "base_model": self.base_info, "strategy": s.strategy,
            "weights_file": weights_path.name, "weights_sha256": sha256_file(weights_path), "lora": lora,
            "hyperparameters": dataclasses.asdict(self.hp),
            "data": {
                "train": {"name": train_set.name, "n_frames": len(train_set), "sha256": train_set.sha256()},
                "val": ({"name": val_set.name, "n_frames": len(val_set), "sha256": val_set.sha256()} if val_set
                        else None),
            },
            "energy_shifts_ev": tuned_shifts, "trainable_parameters": counts[0], "total_parameters": counts[1],
            "report": {k: v for k, v in report.to_dict().items() if k not in ("log", "provenance")},
            "provenance": report.provenance,
        }
        atomic_write_json(self.out / MANIFEST_NAME, manifest)
        _plot_learning_curve(report, self.out / "learning_curve.png")


def _finished_run(out: Path, run_identity: dict[str, Any], adapter: Any, module: Any) -> FinetuneReport | None:
    """The report of the run with this identity that finished in ``out``, its saved weights put into ``module`` as
    training leaves them; None when there is none (no manifest, another run's, or a rerun of it under way)."""
    try:
        manifest = read_manifest(out)
    except ModelUnavailable:
        return None
    base, data = manifest["base_model"], manifest["data"]
    recorded = {"base_model": base["sha256"] or base["name"], "train_sha256": data["train"]["sha256"],
                "val_sha256": data["val"]["sha256"] if data["val"] else None,
                "hyperparameters": manifest["hyperparameters"]}
    weights = out / manifest["weights_file"]
    if recorded != json.loads(json.dumps(run_identity)) or not weights.is_file() \
            or sha256_file(weights) != manifest["weights_sha256"] or not (out / LOG_JSON).is_file():
        return None
    log = json.loads((out / LOG_JSON).read_text())
    if len(log) != manifest["report"]["epochs_run"]:  # the log is rewritten each epoch by a rerun under way
        return None
    apply_saved_weights(module, adapter, out, manifest["strategy"], manifest.get("lora"))
    module.eval().requires_grad_(False)
    return FinetuneReport(**{**manifest["report"], "out_dir": str(out)}, log=log, provenance=manifest["provenance"])


def _plot_learning_curve(report: FinetuneReport, path: Path) -> None:
    import io as _io

    from matplotlib.figure import Figure

    from ..io import atomic_write_bytes

    figure = Figure(figsize=(5, 3.5))
    report.plot(figure.subplots())
    buffer = _io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def cli_finetune(args) -> dict[str, Any] | None:
    """``umlip finetune``: arguments are fixed in :mod:`umlip_helpers.cli`. With ``--nproc N`` (N > 1) it starts
    N processes with torchrun, each running this command; rank 0's report is returned."""
    from ..models.loading import set_threads

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args)
    set_threads(args.threads)
    weights = dataclasses.replace(DEFAULT_LOSS[args.strategy], **{field: value for field, value in (
        ("energy_per_atom_mev", args.energy_weight), ("forces_ev_per_angstrom", args.force_weight),
        ("stress_gpa", args.stress_weight), ("function", args.loss),
        ("huber_delta_ev_per_angstrom", args.huber_delta)) if value is not None})
    report = finetune(args.model, args.train, args.val, strategy=args.strategy, out=args.out, epochs=args.epochs,
                      batch_size=args.batch_size, max_frames=args.max_frames, device=args.device, resume=args.resume,
                      lr=args.lr, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha, loss_weights=weights,
                      patience=args.patience, seed=args.seed, precision=args.precision,
                      replay_weight=args.replay_weight, schedule=args.schedule)
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    return {k: v for k, v in report.to_dict().items() if k != "log"}


def _launch_torchrun(args) -> dict[str, Any]:
    """Run this command in ``args.nproc`` processes (``torchrun --standalone``); its output streams through."""
    import subprocess
    import sys

    argv, skip = [], False
    for item in args.argv:  # the command as given, less --nproc (each rank runs one process)
        if skip or item == "--nproc" or item.startswith("--nproc="):
            skip = item == "--nproc" and not skip
            continue
        argv.append(item)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "umlip_helpers.cli", *argv]
    done = subprocess.run(command)
    if done.returncode:
        raise UmlipError(f"the {args.nproc} fine-tuning processes stopped (torchrun exit code {done.returncode}); "
                         f"see the error above. {args.out} keeps the last epoch's checkpoint: add --resume")
    report = read_manifest(args.out)["report"]
    return {**report, "processes": args.nproc}
