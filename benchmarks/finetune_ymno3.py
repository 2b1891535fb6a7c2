"""Fine-tuning SevenNet-0 and CHGNet on YMnO3 (real VASP frames): accuracy on held-out frames and cost.

    python benchmarks/finetune_ymno3.py [--profile ci|cpu|full] [--models sevennet-0,chgnet-0.3.0]
                                        [--strategies lora,head,full] [--out JSON]
                                        [--workdir DIR [--resume]]

Writes benchmarks/results/finetune_ymno3.json (full profile) or finetune_ymno3/<profile>.json.
A killed GPU/CPU job continues with the same command plus ``--workdir DIR --resume``.

Frames are shuffled once (seed 0) and cut into a test block (never trained on), a validation block (early
stopping) and a training pool whose first N frames train. For every model and strategy the JSON holds
energy (after energy-reference alignment), force and stress MAEs on the test frames before and after
fine-tuning, the targets, seconds per epoch, peak memory, and the cost of one training step as a ratio to
one inference call of the same model in the same run, with a breakdown of where a SevenNet-0 step spends
its time (graph construction, forward by block, backward through the force graph).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from umlip_helpers.data import read_dataset  # noqa: E402
from umlip_helpers.finetune import finetune  # noqa: E402
from umlip_helpers.models import adapter_for  # noqa: E402
from umlip_helpers.finetune.trainer import (CHECKPOINT_NAME, errors, peak_memory_mb, predict_all,  # noqa: E402
                                           prepare_samples)
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.paths import data_path  # noqa: E402

DATA = data_path("ymno3", "ymno3_vasp_200.xyz")
TARGETS = {"forces_mae_ev_per_angstrom": 0.030, "stress_mae_gpa": 0.5, "energy_mae_mev_per_atom": 0.5}
PROFILES = {
    # CPU, shared cores: a few frames and epochs, enough to check the pipeline and measure the cost
    "ci": {"n_train": 2, "n_val": 1, "n_test": 2, "epochs": 2, "batch_size": 1, "patience": 5},
    # CPU, about 25 minutes for SevenNet-0 LoRA on 2 shared cores: enough training to see the errors move
    "cpu": {"n_train": 4, "n_val": 1, "n_test": 3, "epochs": 5, "batch_size": 1, "patience": 3},
    # GPU: the setting (<= 50 training frames), 50 held-out test frames
    "full": {"n_train": 50, "n_val": 10, "n_test": 50, "epochs": 60, "batch_size": 5, "patience": 10},
}


def split(profile: dict):
    data = read_dataset(DATA, require=("energy", "forces", "stress"))
    order = np.random.default_rng(0).permutation(len(data))
    n_test, n_val = profile["n_test"], profile["n_val"]
    test = data[order[:n_test].tolist()]
    val = data[order[n_test:n_test + n_val].tolist()]
    train = data[order[n_test + n_val:n_test + n_val + profile["n_train"]].tolist()]
    return train, val, test


def step_cost(name: str, atoms, device: str) -> dict:
    """Seconds for graph construction, one inference call, and one training step (forward + backward), with
    the forward split by top-level block and the top operators of the backward pass."""
    import torch

    calc = load_calculator(name, device=device)
    adapter = adapter_for(calc)
    module = adapter.module(calc)
    started = time.perf_counter()
    sample = adapter.prepare(calc, atoms)
    graph_s = time.perf_counter() - started

    started = time.perf_counter()
    adapter.predict(module, sample, training=False)
    inference_s = time.perf_counter() - started
    module.zero_grad(set_to_none=True)

    block_seconds: dict[str, float] = {}
    clocks: dict[str, float] = {}
    hooks = []
    for block_name, block in module.named_children():
        hooks.append(block.register_forward_pre_hook(
            lambda mod, inp, key=block_name: clocks.__setitem__(key, time.perf_counter())))
        hooks.append(block.register_forward_hook(
            lambda mod, inp, out, key=block_name: block_seconds.__setitem__(
                key, block_seconds.get(key, 0.0) + time.perf_counter() - clocks[key])))
    started = time.perf_counter()
    energy, forces, stress = adapter.predict(module, sample, training=True)
    forward_s = time.perf_counter() - started
    for hook in hooks:
        hook.remove()
    loss = (forces ** 2).mean() + (stress ** 2).mean() + 1e-6 * energy ** 2
    started = time.perf_counter()
    loss.backward(retain_graph=True)
    backward_s = time.perf_counter() - started
    module.zero_grad(set_to_none=True)
    fusion = fused_slices_speedup(name, atoms, device) if adapter.family == "sevennet" else None
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        loss.backward()  # the same backward again, under the profiler (which slows it down)
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    grouped: dict[str, float] = {}
    for key, seconds in block_seconds.items():
        group = ("convolutions (e3nn tensor products)" if "convolution" in key else
                 "force and stress autograd (first derivative)" if "force_output" in key else
                 "linears, gates, embeddings, readout")
        grouped[group] = grouped.get(group, 0.0) + seconds
    return {
        "model": name, "n_atoms": len(atoms), "graph_construction_s": graph_s, "inference_s": inference_s,
        "train_forward_s": forward_s, "train_backward_s": backward_s,
        "train_step_over_inference": (forward_s + backward_s) / inference_s,
        "forward_by_kind_s": dict(sorted(grouped.items(), key=lambda kv: -kv[1])),
        "forward_by_block_s": dict(sorted(block_seconds.items(), key=lambda kv: -kv[1])[:8]),
        "backward_top_ops_self_s": {e.key: e.self_cpu_time_total / 1e6 for e in top},
        "fused_slices": fusion,
    }


def fused_slices_speedup(name: str, atoms, device: str, repeats: int = 2) -> dict:
    """One training step (forward + force/stress loss backward) with e3nn's generated code as it is, and after
    :func:`~umlip_helpers.models.e3nn_fx.fuse_block_slices` (which the adapter applies): the time ratio,
    interleaved so both see the same machine load."""
    from umlip_helpers.models import FamilyAdapter

    modules = {}
    for label in ("as_is", "fused"):
        calc = load_calculator(name, device=device)
        adapter = adapter_for(calc)
        module = adapter.module(calc) if label == "fused" else FamilyAdapter.module(adapter, calc)
        modules[label] = (adapter, module, adapter.prepare(calc, atoms))
    seconds = {label: [] for label in modules}
    for _ in range(repeats):
        for label, (adapter, module, sample) in modules.items():
            started = time.perf_counter()
            energy, forces, stress = adapter.predict(module, sample, training=True)
            ((forces ** 2).mean() + (stress ** 2).mean() + 1e-6 * energy ** 2).backward()
            module.zero_grad(set_to_none=True)
            seconds[label].append(time.perf_counter() - started)
    return {"train_step_as_is_s": min(seconds["as_is"]), "train_step_fused_s": min(seconds["fused"]),
            "speedup": min(seconds["as_is"]) / min(seconds["fused"])}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=tuple(PROFILES), default="ci")
    parser.add_argument("--models", default="sevennet-0,chgnet-0.3.0")
    parser.add_argument("--strategies", default="lora,head,full")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="default benchmarks/results/finetune_ymno3[/<profile>].json")
    parser.add_argument("--workdir", default=None, help="where fine-tuned models are written (default: temporary)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the runs a killed job left in --workdir from their last epoch checkpoint")
    args = parser.parse_args(argv)

    import torch

    from umlip_helpers.models import resolve_device

    torch.set_num_threads(args.threads)
    args.device = resolve_device(args.device)
    profile = PROFILES[args.profile]
    train, val, test = split(profile)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="finetune_ymno3_"))
    rows, costs = [], []

    def write(complete: bool) -> dict:
        """Written after every run, so a long GPU job that dies keeps what it measured."""
        result = {
            "benchmark": "finetune_ymno3", "profile": args.profile, "complete": complete, "settings": profile,
            "targets": TARGETS,
            "data": {"file": f"data/ymno3/{DATA.name}", "train_sha256": train.sha256(),
                     "test_sha256": test.sha256()},
            "results": rows, "step_cost": costs, "peak_memory_mb": peak_memory_mb(args.device),
            "provenance": benchmark_provenance(__file__, argv, None, profile=args.profile, models=args.models,
                                               strategies=args.strategies, threads=args.threads, device=args.device),
        }
        atomic_write_json(args.out, result)
        return result

    for name in args.models.split(","):
        costs.append(step_cost(name, train[0].atoms, args.device))
        base = load_calculator(name, device=args.device)
        adapter = adapter_for(base)
        base_test = predict_all(adapter, adapter.module(base), prepare_samples(adapter, base, test, "test"), "base")
        for strategy in args.strategies.split(","):
            out = workdir / f"{name}_{strategy}"
            report = finetune(name, train, val, strategy=strategy, out=out, epochs=profile["epochs"],
                              batch_size=profile["batch_size"], patience=profile["patience"], device=args.device,
                              resume=args.resume and (out / CHECKPOINT_NAME).is_file())
            tuned = load_calculator(out, device=args.device)
            tuned_adapter = adapter_for(tuned.inner)
            tuned_test = predict_all(tuned_adapter, tuned_adapter.module(tuned.inner),
                                     prepare_samples(tuned_adapter, tuned.inner, test, "test"), "fine-tuned")
            before = errors(test, base_test, report.base_energy_shifts_ev)
            after = errors(test, tuned_test, report.energy_shifts_ev)
            rows.append({
                "model": name, "strategy": strategy, "n_train": len(train), "n_val": len(val), "n_test": len(test),
                "epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
                "trainable_fraction": report.trainable_fraction,
                "test_before": before | {"energy_mae_unaligned_mev_per_atom": errors(test, base_test, None)[
                    "energy_mae_mev_per_atom"]},
                "test_after": after,
                "meets_targets": {k: after[k] is not None and after[k] <= v for k, v in TARGETS.items()},
                "seconds_per_epoch": report.seconds_per_epoch, "seconds_per_frame_step":
                    report.seconds_per_epoch / len(train),
                "peak_memory_mb": report.peak_memory_mb, "model_dir": str(out),
                "hyperparameters": report.provenance["parameters"]["hyperparameters"],
                "learning_curve": report.log,
            })
            print(f"{name:14s} {strategy:5s} forces {before['forces_mae_ev_per_angstrom']:.4f} -> "
                  f"{after['forces_mae_ev_per_angstrom']:.4f} eV/Å, stress {before['stress_mae_gpa']:.2f} -> "
                  f"{after['stress_mae_gpa']:.2f} GPa, energy {before['energy_mae_mev_per_atom']:.2f} -> "
                  f"{after['energy_mae_mev_per_atom']:.2f} meV/atom, {report.seconds_per_epoch:.0f} s/epoch",
                  flush=True)
            write(complete=False)
    result = write(complete=True)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
