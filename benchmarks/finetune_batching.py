"""Training-step speed of the fine-tuning engine: one batched forward per optimiser step (``batch_loss``, as
:func:`umlip_helpers.finetune.trainer.train` runs it) against one forward and backward per frame (the engine before
batching), on the same frames, weights and device, alternated in one run.

    python benchmarks/finetune_batching.py [--model sevennet-0] [--device auto] [--steps 20] [--batch-sizes 4]
        [--repeats 3] [--threads 1] [--out JSON]

Frames: EMT-labelled rattled structures of two sizes, the small cells (1-8 atoms) and the 37-atom adsorbate slabs
that :mod:`umlip_helpers.active.systems` pretrains the active learner's prior on. Reported per set and batch size:
the median seconds per optimiser step of each way (over ``--repeats`` alternated rounds of ``--steps`` steps) and
their ratio, and the largest difference between the two ways' losses.

Writes ``--out`` (benchmarks/results/finetune_batching.json on a GPU, finetune_batching/cpu.json on CPU, with
_<model family> for another model than SevenNet-0). Measured (``--steps 8 --repeats 2
--batch-sizes 4 16`` on an H100; ``--steps 6 --repeats 2`` on 2 shared CPU cores, 1 thread): batched is 3.8-4.1x
faster per step at batch size 4 and 15-16x at 16 on the GPU, where a step of either size takes about 0.16 s. A
torch.profiler trace of a batched step of 4 small cells there: 4332 kernel launches, the GPU busy 13 ms of ~150 ms.
On CPU batched is 0.94x (small cells) and 0.74x (slabs), so the trainer batches on a GPU only; CHGNet 0.3.0
(``--model chgnet-0.3.0``, same CPU settings, ``finetune_batching/cpu_chgnet.json``): 1.07x and 0.79x.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from umlip_helpers.active.systems import other_full_size_slabs, pretraining_structures, rattle_free_metal  # noqa
from umlip_helpers.data import DFTDataset, LabelledFrame  # noqa: E402
from umlip_helpers.models import adapter_for  # noqa: E402
from umlip_helpers.finetune.trainer import LossWeights, accumulate_gradients, make_samples  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.parents import emt_parent  # noqa: E402

WEIGHTS = LossWeights(energy_per_atom_mev=1e-4, forces_ev_per_angstrom=1.0, stress_gpa=0.0)


def emt_frames(structures: list, name: str) -> DFTDataset:
    frames = []
    for index, atoms in enumerate(structures):
        atoms = rattle_free_metal(atoms, 0.1, seed=index)
        atoms.calc = emt_parent()
        frames.append(LabelledFrame(atoms.copy(), atoms.get_potential_energy(), atoms.get_forces(), None, name,
                                    index))
    return DFTDataset(frames, name)


def training_step(batched: bool):
    def step(adapter, module, samples) -> float:
        return accumulate_gradients(adapter, module, samples, WEIGHTS, batched)["loss"] / len(samples)
    return step


def time_steps(step, adapter, module, batches, device: str) -> tuple[float, list[float]]:
    losses = []
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for samples in batches:
        module.zero_grad(set_to_none=True)
        losses.append(step(adapter, module, samples))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / len(batches), losses


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sevennet-0")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per timed round")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    calc = load_calculator(args.model, device=args.device)
    device = str(calc.device)
    adapter = adapter_for(calc)
    module = adapter.module(calc)
    adapter.make_trainable(module)
    sets = {"small_cells": emt_frames(pretraining_structures("small"), "small_cells"),
            "slabs_37_atoms": emt_frames([atoms for _, atoms in other_full_size_slabs()], "slabs_37_atoms")}
    rows = []
    for name, dataset in sets.items():
        samples = make_samples(dataset, [adapter.prepare(calc, f.atoms) for f in dataset.frames], {}, device)
        for batch_size in args.batch_sizes:
            order = np.random.default_rng(0).permutation(len(samples))
            batches = [[samples[i] for i in np.resize(order, args.steps * batch_size)[k:k + batch_size]]
                       for k in range(0, args.steps * batch_size, batch_size)]
            for batched in (True, False):  # warm-up (CUDA context, allocator)
                time_steps(training_step(batched), adapter, module, batches[:2], device)
            seconds = {"per_frame": [], "batched": []}
            for _ in range(args.repeats):
                t_single, loss_single = time_steps(training_step(False), adapter, module, batches, device)
                t_batched, loss_batched = time_steps(training_step(True), adapter, module, batches, device)
                seconds["per_frame"].append(t_single)
                seconds["batched"].append(t_batched)
            row = {"frames": name, "n_atoms_per_frame": sorted({f.n_atoms for f in dataset.frames}),
                   "batch_size": batch_size, "steps": args.steps, "repeats": args.repeats,
                   "per_frame_seconds_per_step": float(np.median(seconds["per_frame"])),
                   "batched_seconds_per_step": float(np.median(seconds["batched"])),
                   "loss_max_relative_difference": float(np.max(np.abs(np.subtract(loss_batched, loss_single))
                                                                / np.abs(loss_single)))}
            row["speedup"] = row["per_frame_seconds_per_step"] / row["batched_seconds_per_step"]
            rows.append(row)
            print(f"{name:15s} batch {batch_size:2d}: per frame {row['per_frame_seconds_per_step']:.3f} s/step, "
                  f"batched {row['batched_seconds_per_step']:.3f} s/step, {row['speedup']:.2f}x", flush=True)
    result = {"provenance": benchmark_provenance(__file__, argv, calc, steps=args.steps, batch_sizes=args.batch_sizes,
                                                 repeats=args.repeats,
                                       threads=args.threads,
                                       device_name=torch.cuda.get_device_name() if device.startswith("cuda")
                                       else "cpu"),
              "rows": rows}
    variant = device.split(":")[0] + ("" if args.model == "sevennet-0" else "_" + Path(args.model).name.split("-")[0])
    out = args.out or ROOT / "benchmarks" / "results" / (
        "finetune_batching.json" if variant == "cuda" else f"finetune_batching/{variant}.json")
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
