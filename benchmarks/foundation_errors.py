"""Errors of every offline foundation model against the real YMnO3 VASP frames, and time per frame.

    python benchmarks/foundation_errors.py [--max-frames 20] [--threads 1]

Speed is reported as a ratio to SevenNet-0 measured in the same run (these machines are noisy).
Writes benchmarks/results/foundation_errors.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from umlip_helpers.data import read_dataset
from umlip_helpers.io import atomic_write_json, benchmark_provenance, model_info
from umlip_helpers.metrics import evaluate
from umlip_helpers.models import MODELS, load_calculator, model_status
from umlip_helpers.paths import data_path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "sevennet-0"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=data_path("ymno3", "ymno3_vasp_200.xyz"))
    parser.add_argument("--max-frames", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="*", default=None, help="default: every model available offline but EMT")
    parser.add_argument("--out", default=ROOT / "benchmarks" / "results" / "foundation_errors.json")
    args = parser.parse_args(argv)

    dataset = read_dataset(args.data, max_frames=args.max_frames, require=("energy", "forces", "stress"))
    names = args.models or [name for name, spec in MODELS.items() if spec.family != "emt" and model_status(spec)[0]]
    names = [BASELINE] + [n for n in names if n != BASELINE]
    rows = []
    for name in names:
        calc = load_calculator(name, device="auto", threads=args.threads)
        result = evaluate(calc, dataset)
        rows.append({**result.summary(), "energy_shifts_ev": result.energy_shifts_ev,
                     "checkpoint_sha256": model_info(calc).sha256})
        print({k: rows[-1][k] for k in ("model", "force_mae_ev_per_angstrom", "stress_mae_gpa",
                                        "energy_offset_mev_per_atom", "seconds_per_frame")}, flush=True)
    base_time = rows[0]["seconds_per_frame"]
    for row in rows:
        row["time_ratio_to_sevennet_0"] = row["seconds_per_frame"] / base_time
    report = {"benchmark": "foundation_errors", "dataset": str(Path(args.data).name), "n_frames": len(dataset),
              "models": rows, "provenance": benchmark_provenance(__file__, argv, None, max_frames=args.max_frames,
                                                                 threads=args.threads,
                                                                 dataset_sha256=dataset.sha256())}
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
