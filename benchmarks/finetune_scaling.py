"""Data-parallel fine-tuning: seconds per epoch and frames per second of the trainer on 1 and more processes
(``torchrun``, gloo on CPU, nccl on GPUs), each run a real ``umlip_helpers.finetune`` of the same model on the same
frames with the same global batch.

    python benchmarks/finetune_scaling.py [--model sevennet-0] [--strategy lora] [--frames 8] [--epochs 2]
        [--batch-size 4] [--ranks 1 2] [--device cpu] [--out JSON]

On CPU each rank runs one torch thread, and a one-process run with as many threads as the largest run has ranks is
the baseline a user would otherwise choose: the headline is the frames/s of N ranks over that baseline, and over one
rank of one thread, measured in the same run. Epoch 0 is left out of the timing (warm-up). Writes ``--out``
(benchmarks/results/finetune_scaling.json; a GPU run: benchmarks/results/finetune_scaling/cuda.json).

    python benchmarks/finetune_scaling.py --compare-precision [--frames 4] [--repeats 2] [--device cpu] [--out JSON]

compares the trainer's bf16 autocast forward with fp32 in one process (one thread on CPU) on the first ``--frames``
frames: the force difference (MAE and max, eV/Å) and each one's force MAE against DFT, and the seconds of a forward
with forces and of a full-fine-tuning step (forward, forces, loss, backward) in each precision, alternated, the
median of ``--repeats`` after a warm-up pass; bf16 over fp32 is the time ratio. Writes
benchmarks/results/finetune_scaling/bf16_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.paths import data_path  # noqa: E402

WORKER = """
import sys
from umlip_helpers.finetune import finetune
model, strategy, train, out, epochs, batch, device, threads = sys.argv[1:]
import torch
torch.set_num_threads(int(threads))
finetune(model, train, None, strategy=strategy, out=out, epochs=int(epochs), batch_size=int(batch), device=device,
         progress=False, val_fraction=0)
"""


NOTES = ("The processes share this machine's cores with whatever else runs on it (the load averages before and after, "
         "1/5/15 min, are in the provenance): with other jobs on the cores the ratio between runs is noisy, and a "
         "speed-up above 1 needs as many idle cores as ranks.")


PRECISION_NOTES = (
    "One process, one thread: the trainer's bf16 autocast forward (weights, gradients and loss in fp32) against "
    "fp32 on the same frames. bf16 is meant for GPUs with bf16 tensor cores; this CPU (AVX2, no native bf16 "
    "arithmetic) emulates it, so the time ratio here says nothing about a GPU, and it is noisy under the other jobs "
    "on these shared cores (load averages in the provenance). The force difference is what bf16 itself costs.")


def run(args, work: Path, ranks: int, threads: int) -> dict:
    out = work / f"ranks{ranks}_threads{threads}"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] \
        if ranks > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [*launcher, str(work / "worker.py"), args.model, args.strategy, str(work / "train.xyz"), str(out),
               str(args.epochs), str(args.batch_size), args.device, str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    log = json.loads((out / "training_log.json").read_text())
    timed = [row["seconds"] for row in log[1:]] or [log[0]["seconds"]]
    seconds = sum(timed) / len(timed)
    return {"ranks": ranks, "threads_per_rank": threads, "seconds_per_epoch": seconds,
            "frames_per_second": args.frames / seconds, "final_train_loss": log[-1]["train_loss"]}


def precision_rows(args) -> list[dict]:
    """Per frame: bf16 against fp32 forces, and the seconds of a forward and of a training step in each."""
    import numpy as np
    import torch

    from umlip_helpers.data import read_dataset
    from umlip_helpers.finetune.trainer import LossWeights, accumulate_gradients, forward_precision, make_samples
    from umlip_helpers.models import adapter_for, load_calculator

    torch.set_num_threads(1)
    calc = load_calculator(args.model, device=args.device)
    adapter = adapter_for(calc)
    module = adapter.module(calc)
    adapter.make_trainable(module)
    dataset = read_dataset(args.data, max_frames=args.frames, require=("energy", "forces"))
    rows = []
    samples = make_samples(dataset, [adapter.prepare(calc, f.atoms) for f in dataset.frames], {}, args.device)
    for frame, sample in zip(dataset.frames, samples):
        seconds = {"fp32": {"forward": [], "step": []}, "bf16": {"forward": [], "step": []}}
        forces = {}
        for _ in range(args.repeats + 1):  # the first pass warms up and is dropped below
            for precision in ("fp32", "bf16"):
                started = time.perf_counter()
                with forward_precision(precision, args.device):
                    _, f, _ = adapter.predict(module, sample.prepared, training=False)
                forces[precision] = f.detach().float().cpu().numpy()
                module.zero_grad(set_to_none=True)
                seconds[precision]["forward"].append(time.perf_counter() - started)
                started = time.perf_counter()
                accumulate_gradients(adapter, module, [sample], LossWeights(), False, precision=precision)
                module.zero_grad(set_to_none=True)
                seconds[precision]["step"].append(time.perf_counter() - started)
        difference, dft = np.abs(forces["bf16"] - forces["fp32"]), frame.forces_ev_per_angstrom
        median = {p: {k: float(np.median(v[1:])) for k, v in kinds.items()} for p, kinds in seconds.items()}
        rows.append({
            "n_atoms": frame.n_atoms, "force_rms_fp32_ev_per_angstrom": float(np.sqrt(np.mean(forces["fp32"] ** 2))),
            "force_difference_mae_ev_per_angstrom": float(difference.mean()),
            "force_difference_max_ev_per_angstrom": float(difference.max()),
            "force_mae_vs_dft_fp32_ev_per_angstrom": float(np.abs(forces["fp32"] - dft).mean()),
            "force_mae_vs_dft_bf16_ev_per_angstrom": float(np.abs(forces["bf16"] - dft).mean()),
            "seconds": median,
            "bf16_over_fp32_forward": median["bf16"]["forward"] / median["fp32"]["forward"],
            "bf16_over_fp32_step": median["bf16"]["step"] / median["fp32"]["step"]})
    return rows


def compare_precision(args, argv) -> dict:
    import numpy as np

    load_before = os.getloadavg()
    rows = precision_rows(args)
    summary = {key: float(np.mean([row[key] for row in rows])) for key in (
        "force_difference_mae_ev_per_angstrom", "force_mae_vs_dft_fp32_ev_per_angstrom",
        "force_mae_vs_dft_bf16_ev_per_angstrom", "bf16_over_fp32_forward", "bf16_over_fp32_step")}
    summary["force_difference_max_ev_per_angstrom"] = max(r["force_difference_max_ev_per_angstrom"] for r in rows)
    summary["force_rms_fp32_ev_per_angstrom"] = float(np.sqrt(np.mean(
        [r["force_rms_fp32_ev_per_angstrom"] ** 2 for r in rows])))
    result = {
        "benchmark": "finetune_scaling", "variant": f"bf16_{args.device}", "model": args.model,
        "device": args.device, "n_frames": len(rows), "repeats": args.repeats, **summary, "frames": rows,
        "note": PRECISION_NOTES,
        "provenance": benchmark_provenance(__file__, argv, None, torch_threads=1, cpu_count=os.cpu_count(),
                                           load_average_before=load_before, load_average_after=os.getloadavg()),
    }
    out = args.out or str(ROOT / "benchmarks" / "results" / "finetune_scaling" / f"bf16_{args.device}.json")
    atomic_write_json(out, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("frames", "provenance")}, indent=1))
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sevennet-0")
    parser.add_argument("--strategy", default="lora", choices=("lora", "head", "full"))
    parser.add_argument("--data", default=str(data_path("ymno3", "ymno3_vasp_200.xyz")))
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compare-precision", action="store_true",
                        help="bf16 against fp32 forces and step times in one process, instead of the rank scaling")
    parser.add_argument("--repeats", type=int, default=2, help="--compare-precision: timings per frame (median)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/finetune_scaling.json, or "
                        "finetune_scaling/bf16_DEVICE.json with --compare-precision")
    args = parser.parse_args(argv)
    if args.compare_precision:
        return compare_precision(args, argv)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / "finetune_scaling.json")

    from umlip_helpers.data import read_dataset

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="umlip-scaling-") as tmp:
        work = Path(tmp)
        read_dataset(args.data, max_frames=args.frames).write_extxyz(work / "train.xyz")
        (work / "worker.py").write_text(WORKER)
        cpu = args.device == "cpu"
        baseline = run(args, work, 1, max(args.ranks) if cpu else 1)
        rows = [run(args, work, ranks, 1) for ranks in args.ranks]
    one_rank = next((row for row in rows if row["ranks"] == 1), None)
    for row in rows:
        row["speedup_over_baseline"] = row["frames_per_second"] / baseline["frames_per_second"]
        if one_rank is not None:
            row["speedup_over_one_rank"] = row["frames_per_second"] / one_rank["frames_per_second"]
    result = {
        "benchmark": "finetune_scaling", "model": args.model, "strategy": args.strategy, "device": args.device,
        "n_frames": args.frames, "epochs": args.epochs, "global_batch_size": args.batch_size,
        "baseline": baseline, "runs": rows,
        "note": NOTES if cpu else "",
        "provenance": benchmark_provenance(__file__, argv, None, cpu_count=os.cpu_count(),
                                           load_average_before=load_before, load_average_after=os.getloadavg()),
    }
    atomic_write_json(args.out, result)
    print(json.dumps({"baseline": baseline, "runs": rows}, indent=1))
    return result


if __name__ == "__main__":
    main()
