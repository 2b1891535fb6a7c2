"""Data-parallel fine-tuning: seconds per epoch and frames per second of the trainer on 1 and more processes
(``torchrun``, gloo on CPU, nccl on GPUs), each run a real ``umlip_helpers.finetune`` of the same model on the same
frames with the same global batch.

    python benchmarks/finetune_scaling.py [--model sevennet-0] [--strategy lora] [--frames 8] [--epochs 2]
        [--batch-size 4] [--ranks 1 2] [--device cpu] [--out JSON]

On CPU each rank runs one torch thread, and a one-process run with as many threads as the largest run has ranks is
the baseline a user would otherwise choose: the headline is the frames/s of N ranks over that baseline, measured in
the same run. Epoch 0 is left out of the timing (warm-up). Writes ``--out``
(benchmarks/results/finetune_scaling.json; a GPU run: benchmarks/results/finetune_scaling/cuda.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_scaling.json"))
    args = parser.parse_args(argv)

    from umlip_helpers.data import read_dataset

    with tempfile.TemporaryDirectory(prefix="umlip-scaling-") as tmp:
        work = Path(tmp)
        read_dataset(args.data, max_frames=args.frames).write_extxyz(work / "train.xyz")
        (work / "worker.py").write_text(WORKER)
        cpu = args.device == "cpu"
        baseline = run(args, work, 1, max(args.ranks) if cpu else 1)
        rows = [run(args, work, ranks, 1) for ranks in args.ranks]
    for row in rows:
        row["speedup_over_baseline"] = row["frames_per_second"] / baseline["frames_per_second"]
    result = {
        "benchmark": "finetune_scaling", "model": args.model, "strategy": args.strategy, "device": args.device,
        "n_frames": args.frames, "epochs": args.epochs, "global_batch_size": args.batch_size,
        "baseline": baseline, "runs": rows,
        "provenance": benchmark_provenance(__file__, argv, None, cpu_count=os.cpu_count(),
                                           load_average=os.getloadavg()),
    }
    atomic_write_json(args.out, result)
    print(json.dumps({"baseline": baseline, "runs": rows}, indent=1))
    return result


if __name__ == "__main__":
    main()
