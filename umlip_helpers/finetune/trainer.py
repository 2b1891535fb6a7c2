"""One training loop for every family: energy-reference alignment, weighted energy/force/stress loss, AdamW with a
warm-up + cosine schedule, gradient clipping, early stopping, per-epoch atomic checkpoints and exact resume, and an
optional bf16 autocast forward (:func:`forward_precision`).

One piece: the one training loop: loss, precision, schedule, checkpoints and resume all serve train().
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import io as _io
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from ase.units import GPa
from torch.overrides import TorchFunctionMode
from tqdm.auto import tqdm

from ..choices import LossFunction, LrSchedule, Precision, options
from ..data import DFTDataset, fit_energy_shifts, shift_for
from ..errors import UmlipError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text, check_same_settings
from ..models.base import FamilyAdapter
from ..models.finetuned import load_trainable_state
from .distributed import Ranks
from .strategies import trainable_state

CHECKPOINT_NAME = "checkpoint.pt"
LOG_JSON, LOG_CSV = "training_log.json", "training_log.csv"
#: AdamW learning rates. lora, head: short scans on YMnO3 with SevenNet-0 (benchmarks/finetune_ymno3.py; LoRA at 2e-3
#: hardly moved forces and stress in 30 steps, 5e-2 diverged). full: chosen with DEFAULT_LOSS on validation frames
#: (benchmarks/finetune_vs_native.py --sweep, results in benchmarks/results/finetune_vs_native/sweep_small_*.json)
DEFAULT_LR = {"lora": 1e-2, "head": 1e-3, "full": 4e-3}


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
    #: "mse", or "huber": twice Huber's loss per component, equal to the squared error below the delta and linear
    #: above it (sevenn's fine-tuning preset uses Huber); the delta in eV/Å for forces, the same in the equivalent
    #: units above for energy (x10 meV/atom) and stress (x10 GPa)
    function: LossFunction = "mse"
    huber_delta_ev_per_angstrom: float = 0.01

    def __post_init__(self):
        if self.function not in options(LossFunction):
            raise ValueError(f"loss function must be one of {', '.join(options(LossFunction))}, got {self.function!r}")
        if self.huber_delta_ev_per_angstrom <= 0:
            raise ValueError(f"huber_delta_ev_per_angstrom must be > 0, got {self.huber_delta_ev_per_angstrom}")

    def penalty(self, residual: torch.Tensor, squared_mean: torch.Tensor, delta: float) -> torch.Tensor:
        """The loss term of ``residual`` (in its natural unit) whose mean square is ``squared_mean``."""
        if self.function == "mse":
            return squared_mean
        return 2 * torch.nn.functional.huber_loss(residual, torch.zeros_like(residual), delta=delta)


#: the loss per strategy when none is given. full: Huber with a 10x stress weight, chosen with lr 4e-3 on 5 YMnO3
#: validation frames (8 training frames, 5 epochs, batch 4) as the best sum over SevenNet-0 and CHGNet 0.3.0 of force
#: and stress MAE, each relative to the base model's, among 11 settings per family of lr (5e-4 to 4e-3), stress
#: weight (0.001 to 0.1) and loss (mse, huber): SevenNet-0 0.0751 -> 0.0731 eV/Å, 6.38 -> 0.39 GPa; CHGNet 0.102 ->
#: 0.120 eV/Å, 5.97 -> 0.49 GPa. The old default (mse, lr 5e-4) gave 0.0664 eV/Å, 4.44 GPa and 0.0866, 4.63 GPa.
#: lora, head: not swept.
DEFAULT_LOSS = {"lora": LossWeights(), "head": LossWeights(),
                "full": LossWeights(stress_gpa=0.1, function="huber")}


@dataclasses.dataclass(frozen=True)
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
    #: the loss; None: the strategy's default (:data:`DEFAULT_LOSS`)
    weights: LossWeights | None = None
    #: the training forward's arithmetic (:func:`forward_precision`); validation and predictions stay in fp32
    precision: Precision = "fp32"
    #: weight of the base-labelled replay frames' mean loss beside the DFT frames' in every step (0: no replay), and
    #: how many are drawn (:mod:`.replay`)
    replay_weight: float = 0.0
    replay_frames: int = 16
    #: the learning rate after the warm-up (:func:`lr_schedule`)
    schedule: LrSchedule = "cosine"

    def __post_init__(self):
        for name, choices in (("precision", Precision), ("schedule", LrSchedule)):
            if getattr(self, name) not in options(choices):
                raise ValueError(f"{name} must be one of {', '.join(options(choices))}, got {getattr(self, name)!r}")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.strategy])
        if self.weights is None:
            object.__setattr__(self, "weights", DEFAULT_LOSS[self.strategy])
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
    #: the factor on this frame's loss (set on replay frames per step: :meth:`_Training.replay_batch`)
    weight: float = 1.0


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
                progress: bool = True, batched: bool | None = None, ranks: Ranks = Ranks()
                ) -> list[dict[str, np.ndarray]]:
    """Energy (eV), forces (eV/Å) and stress (eV/Å^3, Voigt) for each prepared frame, without parameter grads
    (each rank predicts its share; every rank gets them all)."""
    batch_size = 8 if (batched_by_default(adapter, module) if batched is None else batched) else 1
    mine = ranks.share(prepared)
    outputs = []
    with tqdm(total=len(mine), desc=f"predict ({label})", disable=not progress or not ranks.main,
              leave=False) as bar:
        for start in range(0, len(mine), batch_size):
            chunk = mine[start:start + batch_size]
            for energy, forces, stress in adapter.predict_batch(module, chunk, training=False):
                outputs.append({"energy": float(energy.detach()), "forces": forces.detach().cpu().numpy(),
                                "stress": stress.detach().cpu().numpy()})
            module.zero_grad(set_to_none=True)
            bar.update(len(chunk))
    return ranks.gather(outputs, len(prepared))


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


class _Bf16Contractions(TorchFunctionMode):
    """Run tensordot and einsum in bf16, as autocast runs matmul. Autocast leaves them out, and e3nn's generated
    linears and tensor products (SevenNet, MACE) call them on a bf16 activation (from an autocast matmul) and an
    fp32 weight, which they refuse ("both inputs should have same dtype")."""

    CONTRACTIONS = frozenset({torch.functional.tensordot, torch.functional.einsum})

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.CONTRACTIONS:
            args = _fp32_to_bf16(args)
        return func(*args, **(kwargs or {}))


def _fp32_to_bf16(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(torch.bfloat16) if value.dtype == torch.float32 else value
    if isinstance(value, (list, tuple)):
        return type(value)(_fp32_to_bf16(item) for item in value)
    return value


@contextlib.contextmanager
def forward_precision(precision: Precision, device: str | torch.device) -> Iterator[None]:
    """The context of a training forward: nothing for fp32; for bf16, ``torch.autocast`` to bfloat16 on the
    device's type, with tensordot and einsum in it. The weights stay fp32 (autocast casts copies), forces and
    stress come from autograd through the bf16 graph, and :func:`batch_loss` takes the loss in fp32."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16), _Bf16Contractions():
        yield


def _in_fp32(value: torch.Tensor) -> torch.Tensor:
    return value.float() if value.dtype in (torch.bfloat16, torch.float16) else value


def check_precision(adapter: FamilyAdapter, params: Sequence[torch.nn.Parameter], precision: Precision) -> None:
    """Refuse bf16 for a model whose weights are not fp32: autocast casts fp32 only, so a float64 model (NequIP,
    UMA loaded in float64) would train in float64 under the bf16 label."""
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    if precision == "bf16" and dtypes != ["float32"]:
        raise UmlipError(f"precision='bf16' needs a float32 model, but this {adapter.family} model has "
                         f"{', '.join(dtypes)} weights, on which bf16 autocast does nothing; load it in float32 or "
                         "fine-tune with precision='fp32'")


def _predict_for_loss(adapter: FamilyAdapter, module: torch.nn.Module, prepared: list[Any], training: bool,
                      precision: Precision) -> list[tuple[torch.Tensor, ...]]:
    """The adapter's predictions under ``precision``, in fp32 (or the model's own wider dtype)."""
    if precision == "fp32":
        return adapter.predict_batch(module, prepared, training)
    try:
        with forward_precision(precision, next(module.parameters()).device):
            predictions = adapter.predict_batch(module, prepared, training)
    except RuntimeError as error:
        raise UmlipError(f"the {adapter.family} forward fails under bf16 autocast ({error}); fine-tune this family "
                         "with precision='fp32'") from error
    return [tuple(_in_fp32(value) for value in prediction) for prediction in predictions]


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
               training: bool, precision: Precision = "fp32", energy_residuals: list[float] | None = None
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """The mean of the frames' weighted losses (one forward for the batch where the family batches graphs), and
    the sums over the frames of the loss and of each squared error. The forward runs in ``precision``, the loss
    in fp32. Each frame's energy residual (meV/atom) is appended to ``energy_residuals`` when one is given."""
    predictions = _predict_for_loss(adapter, module, [sample.prepared for sample in samples], training, precision)
    terms: dict[str, list[torch.Tensor]] = {"loss": []}
    for sample, (energy, forces, stress) in zip(samples, predictions):
        delta = weights.huber_delta_ev_per_angstrom
        residual = (energy - sample.energy_target_ev) / sample.n_atoms * 1000
        if energy_residuals is not None:
            energy_residuals.append(float(residual.detach()))
        parts = {"energy": residual ** 2}
        loss = weights.energy_per_atom_mev * weights.penalty(residual, parts["energy"], 10 * delta)
        if weights.forces_ev_per_angstrom and sample.forces is not None:
            residual = forces - sample.forces.to(forces.dtype)
            parts["forces"] = (residual ** 2).mean()
            loss = loss + weights.forces_ev_per_angstrom * weights.penalty(residual, parts["forces"], delta)
        if weights.stress_gpa and sample.stress_ev_a3 is not None:
            residual = (stress - sample.stress_ev_a3.to(stress.dtype)) / GPa
            parts["stress"] = (residual ** 2).mean()
            loss = loss + weights.stress_gpa * weights.penalty(residual, parts["stress"], 10 * delta)
        loss = loss * sample.weight if sample.weight != 1.0 else loss
        for key, value in {"loss": loss, **parts}.items():
            terms.setdefault(key, []).append(value)
    keys = list(terms)
    sums = torch.stack([torch.stack(terms[key]).sum().detach() for key in keys]).tolist()  # one device sync
    if precision != "fp32" and not np.all(np.isfinite(sums)):
        _refuse_non_finite(adapter, module, samples, weights, dict(zip(keys, sums)))
    return torch.stack(terms["loss"]).mean(), dict(zip(keys, sums))


def energy_offset_correction(residuals_mev: list[float], weights: LossWeights) -> tuple[float, float]:
    """(change of the summed loss, summed squared energy error) once the mean per-atom energy residual is removed.

    The fine-tuned model's per-element shifts are fitted again after training, which removes any energy offset
    the training drifted into; validation (and so the best epoch) should not count it either. The mean per atom is
    that offset exactly for one composition, and its common part for several."""
    if not residuals_mev:
        return 0.0, 0.0
    raw = torch.tensor(residuals_mev, dtype=torch.float64)
    delta = 10 * weights.huber_delta_ev_per_angstrom

    def summed(residuals: torch.Tensor) -> float:
        return float(sum(weights.penalty(r, r ** 2, delta) for r in residuals)) * weights.energy_per_atom_mev

    centred = raw - raw.mean()
    return summed(centred) - summed(raw), float((centred ** 2).sum())


def _refuse_non_finite(adapter: FamilyAdapter, module: torch.nn.Module, samples: list[Sample], weights: LossWeights,
                       sums: dict[str, float]) -> None:
    """Stop on a non-finite bf16 loss, saying whether the same frames are finite in fp32 (then bf16 itself is the
    cause, as for CHGNet's forces) or not (the training diverged)."""
    _, fp32_sums = batch_loss(adapter, module, samples, weights, training=False)
    module.zero_grad(set_to_none=True)
    bad = ", ".join(key for key, value in sums.items() if not np.isfinite(value))
    if np.all(np.isfinite(list(fp32_sums.values()))):
        raise UmlipError(f"the {adapter.family} forward gives a non-finite {bad} under bf16 autocast, where fp32 gives "
                         "finite ones on the same frames: fine-tune this family with precision='fp32'")
    raise UmlipError(f"non-finite {bad} in fp32 as well as bf16: the training diverged (try a lower learning rate)")


def accumulate_gradients(adapter: FamilyAdapter, module: torch.nn.Module, samples: list[Sample],
                         weights: LossWeights, batched: bool, batch_frames: int | None = None,
                         precision: Precision = "fp32") -> dict[str, float]:
    """Backpropagate the frames' losses divided by ``batch_frames`` (the whole batch's size, of which ``samples`` may
    be one rank's share; default: all of it, giving the mean), in one forward (``batched``) or a forward and backward
    per frame, the forward in ``precision``; return :func:`batch_loss`'s sums over the frames."""
    sums: Counter[str] = Counter()
    total = batch_frames or len(samples)
    for group in ([samples] if batched else [[sample] for sample in samples]) if samples else []:
        loss, group_sums = batch_loss(adapter, module, group, weights, training=True, precision=precision)
        (loss * (len(group) / total)).backward()
        sums.update(group_sums)
    return sums


def lr_schedule(schedule: LrSchedule, total_steps: int, warmup_fraction: float = 0.1,
                floor: float = 0.05) -> Callable[[int], float]:
    """LR factor per optimiser step: linear warm-up over the first 10% of steps (Adam's first steps overshoot
    otherwise), then a cosine decay to ``floor`` or, for "constant", 1."""
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
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
    ranks: Ranks = Ranks(),
    replay: Sequence[Sample] = (),
) -> dict[str, Any]:
    """Train the parameters of ``module`` that require grad; return the log and the best epoch.

    ``batched``: one forward per batch (default on a GPU, :func:`batched_by_default`) or per frame; the two give the
    same gradients up to rounding. With several ``ranks`` each optimiser step's batch is split across them
    (:mod:`.distributed`), which gives the single-process update up to rounding.

    A checkpoint (trainable weights, optimiser, schedule, early-stopping state, log, and ``run_identity``: what
    defines the run, such as data hashes and hyperparameters) is written atomically after every epoch;
    ``resume=True`` continues from it, giving the same weights as an uninterrupted run, and refuses a checkpoint
    whose run identity differs.
    """
    run = _Training(adapter, module, train_samples, val_samples, hp, out, batched, ranks)
    run.replay = list(replay)
    if resume:
        run.restore(run_identity)
    bar = tqdm(total=hp.epochs * run.steps_per_epoch, initial=run.start_epoch * run.steps_per_epoch,
               desc="fine-tuning", disable=not progress or not ranks.main)
    for epoch in range(run.start_epoch, hp.epochs):
        if run.bad_epochs > hp.patience:
            break
        started = time.perf_counter()
        row = run.epoch(epoch, bar, callback)
        if val_samples:
            row |= run.validate()
        run.keep_best(epoch, row["val_loss"] if val_samples else row["train_loss"])
        row["seconds"] = time.perf_counter() - started
        run.log.append(row)
        bar.set_postfix(epoch=epoch, train=f"{row['train_loss']:.4g}", val=f"{row.get('val_loss', float('nan')):.4g}")
        run.save(epoch, run_identity)
    bar.close()
    if run.best_state is not None:
        load_trainable_state(module, run.best_state)
    return {"log": run.log, "best_epoch": run.best_epoch, "best_loss": run.best_loss,
            "stopped_early": len(run.log) < hp.epochs}


class _Training:
    """The state of one training run between epochs: optimiser, schedule, early stopping, log."""

    def __init__(self, adapter, module, train_samples, val_samples, hp: Hyperparameters, out: Path,
                 batched: bool | None, ranks: Ranks):
        self.adapter, self.module, self.hp, self.out, self.ranks = adapter, module, hp, out, ranks
        self.train_samples, self.val_samples = train_samples, val_samples
        self.params = [p for p in module.parameters() if p.requires_grad]
        if not self.params:
            raise UmlipError("no trainable parameters: check the strategy and the family's head/LoRA targets")
        check_precision(adapter, self.params, hp.precision)
        self.batched = batched_by_default(adapter, module) if batched is None else batched
        self.device = str(self.params[0].device)
        self.optimiser = torch.optim.AdamW(self.params, lr=hp.lr, weight_decay=hp.weight_decay)
        self.steps_per_epoch = -(-len(train_samples) // hp.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, lr_schedule(hp.schedule, hp.epochs * self.steps_per_epoch))
        self.checkpoint = out / CHECKPOINT_NAME
        self.log: list[dict[str, Any]] = []
        self.replay: list[Sample] = []  # base-labelled frames added to every step's batch (:meth:`replay_batch`)
        self.start_epoch, self.best_loss, self.best_epoch, self.best_state, self.bad_epochs = \
            0, float("inf"), -1, None, 0

    def restore(self, run_identity: dict[str, Any] | None) -> None:
        if not self.checkpoint.is_file():
            return
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        check_same_run(self.checkpoint, state.get("run"), run_identity)
        load_trainable_state(self.module, state["trainable"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch, self.log = state["epoch"] + 1, state["log"]
        self.best_loss, self.best_epoch, self.best_state, self.bad_epochs = (
            state["best_loss"], state["best_epoch"], state["best_state"], state["bad_epochs"])

    def epoch(self, epoch: int, bar, callback) -> dict[str, Any]:
        """One pass over the training frames in this epoch's order; the row of the log it adds."""
        hp, n_train = self.hp, len(self.train_samples)
        order = np.random.default_rng([hp.seed, epoch]).permutation(n_train)
        sums: Counter[str] = Counter()
        for step in range(self.steps_per_epoch):
            batch = order[step * hp.batch_size:(step + 1) * hp.batch_size]
            self.optimiser.zero_grad(set_to_none=True)
            mine = [self.train_samples[i] for i in self.ranks.share(batch)] + self.replay_batch(epoch, step, len(batch))
            batch_sums = accumulate_gradients(self.adapter, self.module, mine, hp.weights, self.batched, len(batch),
                                              hp.precision)
            self.ranks.sum_gradients(self.params)
            sums.update(batch_sums)
            torch.nn.utils.clip_grad_norm_(self.params, hp.max_grad_norm)
            self.optimiser.step()
            self.scheduler.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{sums['loss'] / max(1, len(mine) * (step + 1)):.4g}")
            if callback is not None:
                callback({"epoch": epoch, "step": step, "loss": batch_sums["loss"] / max(1, len(mine)),
                          "rank": self.ranks.rank})
        sums = self.ranks.sum_counts(sums)
        row = {"epoch": epoch, "lr": self.optimiser.param_groups[0]["lr"]}
        row |= {f"train_{k}": v / n_train for k, v in sums.items()}
        row |= {f"train_{k}_rmse": float(np.sqrt(row.pop(f"train_{k}"))) for k in ("energy", "forces", "stress")
                if f"train_{k}" in row}
        return row

    def replay_batch(self, epoch: int, step: int, n_batch: int) -> list[Sample]:
        """This rank's share of the replay frames of this step (each epoch passes over all of them once, shuffled),
        weighted so that the step's loss is mean(DFT frames' losses) + replay_weight * mean(replay frames')."""
        if not self.replay:
            return []
        per_step = -(-len(self.replay) // self.steps_per_epoch)
        order = np.random.default_rng([self.hp.seed, epoch, 1]).permutation(len(self.replay))
        chosen = [self.replay[order[i % len(order)]] for i in range(step * per_step, (step + 1) * per_step)]
        weight = self.hp.replay_weight * n_batch / per_step
        return [dataclasses.replace(sample, weight=weight) for sample in self.ranks.share(chosen)]

    def validate(self) -> dict[str, float]:
        val, batch = self.val_samples, self.hp.batch_size if self.batched else 1
        mine = self.ranks.share(val)
        sums: Counter[str] = Counter()
        residuals: list[float] = []
        for start in range(0, len(mine), batch):
            _, batch_sums = batch_loss(self.adapter, self.module, mine[start:start + batch], self.hp.weights,
                                       training=False, energy_residuals=residuals)
            self.module.zero_grad(set_to_none=True)
            sums.update(batch_sums)
        sums = self.ranks.sum_counts(sums)
        loss_change, sums["energy"] = energy_offset_correction(self.ranks.gather(residuals, len(val)),
                                                               self.hp.weights)
        row = {"val_loss": (sums["loss"] + loss_change) / len(val)}
        return row | {f"val_{k}_rmse": float(np.sqrt(v / len(val))) for k, v in sums.items() if k != "loss"}

    def keep_best(self, epoch: int, monitored: float) -> None:
        if monitored < self.best_loss:
            self.best_loss, self.best_epoch, self.best_state, self.bad_epochs = \
                monitored, epoch, trainable_state(self.module), 0
        else:
            self.bad_epochs += 1

    def save(self, epoch: int, run_identity: dict[str, Any] | None) -> None:
        """The checkpoint and the log, written by rank 0 (the others wait for it)."""
        if self.ranks.main:
            _save_checkpoint(self.checkpoint, {
                "epoch": epoch, "trainable": trainable_state(self.module), "optimiser": self.optimiser.state_dict(),
                "scheduler": self.scheduler.state_dict(), "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "best_state": self.best_state, "bad_epochs": self.bad_epochs, "log": copy.deepcopy(self.log),
                "run": run_identity,
            })
            _write_log(self.out, self.log)
        self.ranks.barrier()


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
