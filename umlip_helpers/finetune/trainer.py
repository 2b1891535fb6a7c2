"""One training loop for every family: energy-reference alignment, weighted energy/force/stress loss, AdamW with a
warm-up + cosine schedule, gradient clipping, early stopping, per-epoch atomic checkpoints and exact resume."""

from __future__ import annotations

import copy
import csv
import dataclasses
import io as _io
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from ase.units import GPa
from tqdm.auto import tqdm

from ..data import DFTDataset, fit_energy_shifts, shift_for
from ..errors import UmlipError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text, check_same_settings
from ..models.base import FamilyAdapter
from ..models.finetuned import load_trainable_state
from .strategies import trainable_state

CHECKPOINT_NAME = "checkpoint.pt"
LOG_JSON, LOG_CSV = "training_log.json", "training_log.csv"
#: AdamW learning rates, from short scans on YMnO3 with SevenNet-0 (benchmarks/finetune_ymno3.py): LoRA at 2e-3
#: hardly moved forces and stress in 30 steps, 5e-2 diverged; full at 2e-3 threw the energies off by ~40 meV/atom
DEFAULT_LR = {"lora": 1e-2, "head": 1e-3, "full": 5e-4}


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """Weights of the squared errors, each in its natural unit: meV/atom, eV/Å and GPa.

    1 meV/atom, 0.1 eV/Å and 1 GPa weigh the same (0.01). A stress weight of 0.001 let a 6-9 GPa pressure offset
    (foundation models on VASP cells) survive training: it is fixed through dE/dV, which energies and forces of
    frames at one volume do not constrain.
    """

    energy_per_atom_mev: float = 0.01
    forces_ev_per_angstrom: float = 1.0
    stress_gpa: float = 0.01


@dataclasses.dataclass
class Hyperparameters:
    strategy: str
    epochs: int = 10
    batch_size: int = 4
    lr: float | None = None
    weight_decay: float = 0.0
    max_grad_norm: float = 10.0
    patience: int = 5
    seed: int = 0
    lora_rank: int | None = None
    lora_alpha: float | None = None
    weights: LossWeights = dataclasses.field(default_factory=LossWeights)

    def __post_init__(self):
        if self.lr is None:
            self.lr = DEFAULT_LR[self.strategy]
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")


@dataclasses.dataclass
class Sample:
    prepared: Any
    n_atoms: int
    #: DFT energy minus the fitted per-element shifts: what the model itself should predict (eV)
    energy_target_ev: float
    forces: torch.Tensor | None
    stress_ev_a3: torch.Tensor | None


def prepare_samples(adapter: FamilyAdapter, calc: Any, dataset: DFTDataset, label: str,
                    progress: bool = True) -> list[Any]:
    return [adapter.prepare(calc, frame.atoms)
            for frame in tqdm(dataset.frames, desc=f"graphs ({label})", disable=not progress, leave=False)]


def batched_by_default(adapter: FamilyAdapter, module: torch.nn.Module) -> bool:
    """Whether to run several frames per forward: when the family batches graphs (its adapter overrides
    ``predict_batch``) and on a GPU, where a step is bound by kernel launches (SevenNet-0 on an H100: 4x faster per
    step at batch size 4, 15x at 16). Not on CPU, where batching gained nothing (1 thread, small cells and 37-atom
    slabs: SevenNet-0 0.94x and 0.74x, CHGNet 0.3.0 1.07x and 0.79x) and a forward per frame holds one frame's graph
    at a time. See ``benchmarks/finetune_batching.py``."""
    batches = type(adapter).predict_batch is not FamilyAdapter.predict_batch
    return batches and any(param.is_cuda for param in module.parameters())


def predict_all(adapter: FamilyAdapter, module: torch.nn.Module, prepared: Sequence[Any], label: str,
                progress: bool = True, batched: bool | None = None) -> list[dict[str, np.ndarray]]:
    """Energy (eV), forces (eV/Å) and stress (eV/Å^3, Voigt) for each prepared frame, without parameter grads."""
    batch_size = 8 if (batched_by_default(adapter, module) if batched is None else batched) else 1
    outputs = []
    with tqdm(total=len(prepared), desc=f"predict ({label})", disable=not progress, leave=False) as bar:
        for start in range(0, len(prepared), batch_size):
            chunk = list(prepared[start:start + batch_size])
            for energy, forces, stress in adapter.predict_batch(module, chunk, training=False):
                outputs.append({"energy": float(energy.detach()), "forces": forces.detach().cpu().numpy(),
                                "stress": stress.detach().cpu().numpy()})
            module.zero_grad(set_to_none=True)
            bar.update(len(chunk))
    return outputs


def errors(dataset: DFTDataset, predictions: list[dict[str, np.ndarray]], shifts: dict[str, float] | None
           ) -> dict[str, float]:
    """MAEs against DFT: energy per atom (after adding ``shifts``), forces and stress."""
    shifts = shifts or {}
    e, f, s = [], [], []
    for frame, pred in zip(dataset.frames, predictions):
        if frame.energy_ev is not None:
            e.append((pred["energy"] + shift_for(frame.atoms, shifts) - frame.energy_ev) / frame.n_atoms)
        if frame.forces_ev_per_angstrom is not None:
            f.append(np.abs(pred["forces"] - frame.forces_ev_per_angstrom).ravel())
        if frame.stress_ev_per_angstrom3 is not None:
            s.append(np.abs(pred["stress"] - frame.stress_ev_per_angstrom3) / GPa)
    return {
        "energy_mae_mev_per_atom": float(np.mean(np.abs(e)) * 1000) if e else None,
        "forces_mae_ev_per_angstrom": float(np.mean(np.concatenate(f))) if f else None,
        "stress_mae_gpa": float(np.mean(np.concatenate(s))) if s else None,
    }


def make_samples(dataset: DFTDataset, prepared: list[Any], shifts: dict[str, float], device: str) -> list[Sample]:
    out = []
    for frame, prep in zip(dataset.frames, prepared):
        forces = stress = None
        if frame.forces_ev_per_angstrom is not None:
            forces = torch.as_tensor(frame.forces_ev_per_angstrom, device=device)
        if frame.stress_ev_per_angstrom3 is not None:
            stress = torch.as_tensor(frame.stress_ev_per_angstrom3, device=device)
        out.append(Sample(prep, frame.n_atoms, frame.energy_ev - shift_for(frame.atoms, shifts), forces, stress))
    return out


def batch_loss(adapter: FamilyAdapter, module: torch.nn.Module, samples: list[Sample], weights: LossWeights,
               training: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean of the frames' weighted losses (one forward for the batch where the family batches graphs), and
    the sums over the frames of the loss and of each squared error."""
    predictions = adapter.predict_batch(module, [sample.prepared for sample in samples], training)
    terms: dict[str, list[torch.Tensor]] = {"loss": []}
    for sample, (energy, forces, stress) in zip(samples, predictions):
        parts = {"energy": ((energy - sample.energy_target_ev) / sample.n_atoms * 1000) ** 2}
        loss = weights.energy_per_atom_mev * parts["energy"]
        if weights.forces_ev_per_angstrom and sample.forces is not None:
            parts["forces"] = ((forces - sample.forces.to(forces.dtype)) ** 2).mean()
            loss = loss + weights.forces_ev_per_angstrom * parts["forces"]
        if weights.stress_gpa and sample.stress_ev_a3 is not None:
            parts["stress"] = (((stress - sample.stress_ev_a3.to(stress.dtype)) / GPa) ** 2).mean()
            loss = loss + weights.stress_gpa * parts["stress"]
        for key, value in {"loss": loss, **parts}.items():
            terms.setdefault(key, []).append(value)
    keys = list(terms)
    sums = torch.stack([torch.stack(terms[key]).sum().detach() for key in keys]).tolist()  # one device sync
    return torch.stack(terms["loss"]).mean(), dict(zip(keys, sums))


def accumulate_gradients(adapter: FamilyAdapter, module: torch.nn.Module, samples: list[Sample],
                         weights: LossWeights, batched: bool) -> dict[str, float]:
    """Backpropagate the mean of the frames' losses, in one forward (``batched``) or a forward and backward per
    frame; return :func:`batch_loss`'s sums over the frames."""
    sums: Counter[str] = Counter()
    for group in [samples] if batched else [[sample] for sample in samples]:
        loss, group_sums = batch_loss(adapter, module, group, weights, training=True)
        (loss * (len(group) / len(samples))).backward()
        sums.update(group_sums)
    return sums


def warmup_cosine(total_steps: int, warmup_fraction: float = 0.1, floor: float = 0.05) -> Callable[[int], float]:
    """LR factor per optimiser step: linear warm-up over the first 10% of steps (Adam's first steps overshoot
    otherwise), then a cosine decay to ``floor``."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))

    return factor


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = _io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _write_log(out: Path, log: list[dict[str, Any]]) -> None:
    atomic_write_json(out / LOG_JSON, log)
    if log:
        text = _io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
        atomic_write_text(out / LOG_CSV, text.getvalue())


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train(
    adapter: FamilyAdapter,
    module: torch.nn.Module,
    train_samples: list[Sample],
    val_samples: list[Sample] | None,
    hp: Hyperparameters,
    out: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
    run_identity: dict[str, Any] | None = None,
    batched: bool | None = None,
) -> dict[str, Any]:
    """Train the parameters of ``module`` that require grad; return the log and the best epoch.

    ``batched``: one forward per batch (default on a GPU, :func:`batched_by_default`) or per frame; the two give the
    same gradients up to rounding.

    A checkpoint (trainable weights, optimiser, schedule, early-stopping state, log, and ``run_identity``: what
    defines the run, such as data hashes and hyperparameters) is written atomically after every epoch;
    ``resume=True`` continues from it, giving the same weights as an uninterrupted run, and refuses a checkpoint
    whose run identity differs.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    batched = batched_by_default(adapter, module) if batched is None else batched
    if not params:
        raise UmlipError("no trainable parameters: check the strategy and the family's head/LoRA targets")
    optimiser = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)
    n_train = len(train_samples)
    steps_per_epoch = -(-n_train // hp.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_cosine(hp.epochs * steps_per_epoch))
    checkpoint = out / CHECKPOINT_NAME
    log: list[dict[str, Any]] = []
    start_epoch, best_loss, best_epoch, best_state, bad_epochs = 0, float("inf"), -1, None, 0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        check_same_run(checkpoint, state.get("run"), run_identity)
        load_trainable_state(module, state["trainable"])
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, log = state["epoch"] + 1, state["log"]
        best_loss, best_epoch, best_state, bad_epochs = (state["best_loss"], state["best_epoch"],
                                                         state["best_state"], state["bad_epochs"])

    bar = tqdm(total=hp.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc="fine-tuning",
               disable=not progress)
    for epoch in range(start_epoch, hp.epochs):
        if bad_epochs > hp.patience:
            break
        started = time.perf_counter()
        order = np.random.default_rng([hp.seed, epoch]).permutation(n_train)
        sums: Counter[str] = Counter()
        for step in range(steps_per_epoch):
            batch = order[step * hp.batch_size:(step + 1) * hp.batch_size]
            optimiser.zero_grad(set_to_none=True)
            batch_sums = accumulate_gradients(adapter, module, [train_samples[i] for i in batch], hp.weights, batched)
            sums.update(batch_sums)
            torch.nn.utils.clip_grad_norm_(params, hp.max_grad_norm)
            optimiser.step()
            scheduler.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / ((step * hp.batch_size) + len(batch)):.4g}")
            if callback is not None:
                callback({"epoch": epoch, "step": step, "loss": batch_sums["loss"] / len(batch)})
        row = {"epoch": epoch, "lr": optimiser.param_groups[0]["lr"]}
        row |= {f"train_{k}": v / n_train for k, v in sums.items()}
        row |= {f"train_{k}_rmse": float(np.sqrt(row.pop(f"train_{k}"))) for k in ("energy", "forces", "stress")
                if f"train_{k}" in row}
        monitored = row["train_loss"]
        if val_samples:
            val_sums: Counter[str] = Counter()
            val_batch = hp.batch_size if batched else 1
            for start in range(0, len(val_samples), val_batch):
                _, batch_sums = batch_loss(adapter, module, val_samples[start:start + val_batch], hp.weights,
                                           training=False)
                module.zero_grad(set_to_none=True)
                val_sums.update(batch_sums)
            row["val_loss"] = val_sums["loss"] / len(val_samples)
            row |= {f"val_{k}_rmse": float(np.sqrt(v / len(val_samples))) for k, v in val_sums.items() if k != "loss"}
            monitored = row["val_loss"]
        if monitored < best_loss:
            best_loss, best_epoch, best_state, bad_epochs = monitored, epoch, trainable_state(module), 0
        else:
            bad_epochs += 1
        row["seconds"] = time.perf_counter() - started
        log.append(row)
        bar.set_postfix(epoch=epoch, train=f"{row['train_loss']:.4g}",
                        val=f"{row.get('val_loss', float('nan')):.4g}")
        _save_checkpoint(checkpoint, {
            "epoch": epoch, "trainable": trainable_state(module), "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(), "best_loss": best_loss, "best_epoch": best_epoch,
            "best_state": best_state, "bad_epochs": bad_epochs, "log": copy.deepcopy(log), "run": run_identity,
        })
        _write_log(out, log)
    bar.close()
    if best_state is not None:
        load_trainable_state(module, best_state)
    return {"log": log, "best_epoch": best_epoch, "best_loss": best_loss,
            "stopped_early": len(log) < hp.epochs}


def check_same_run(checkpoint: Path, saved: dict[str, Any] | None, current: dict[str, Any] | None) -> None:
    """Refuse to resume ``checkpoint`` for a run that differs from the one that wrote it."""
    if current is None:
        return
    if saved is None:
        raise UmlipError(f"{checkpoint} records no run identity (written by an older umlip_helpers), so resuming it "
                         "cannot be checked against this run's data and hyperparameters; choose a new output "
                         "directory or delete the checkpoint")
    check_same_settings(checkpoint, saved, current, "choose a new output directory or delete the checkpoint")


def align_energies(dataset: DFTDataset, base_predictions: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Per-element shifts (eV) that bring the base model's energies onto the DFT reference (least squares)."""
    return fit_energy_shifts(dataset, [p["energy"] for p in base_predictions])
