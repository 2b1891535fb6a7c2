"""What limits the online learner's parent calls: the prior's curvature against the parent's at the parent's minimum.

    python benchmarks/prior_curvature.py --prior runs/matched_prior_full_path8_c_down [--systems benchmark|tuning]
        [--every 1] [--calls-from benchmarks/results/active_learning_matched_prior....json] [--out JSON]

Per system: parent-only BFGS (EMT) to fmax 0.03 eV/Å, then :func:`umlip_helpers.active.systems.prior_curvature`
there (finite-difference Hessians of the free atoms, prior and parent): the parent's softest modes, the prior's
curvature along them as a ratio, and the Newton contraction ‖I - H_parent H_prior⁻¹‖₂, the share of the parent's
force that one residual-corrected step on the prior leaves in the worst direction. ``--prior`` is a model name or a
fine-tuned model directory. With ``--calls-from`` (a result of active_learning_matched_prior.py on the same
systems), each row gets the online learner's parent calls, and the summary their rank correlation with the
contraction. Writes ``--out`` (benchmarks/results/prior_curvature.json, with ``--systems tuning``
prior_curvature/tuning.json; rewritten after every system).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from umlip_helpers.active import parent_relax  # noqa: E402
from umlip_helpers.active.systems import benchmark_systems, prior_curvature  # noqa: E402
from umlip_helpers.active.uncertainty import spearman_correlation  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.parents import emt_parent  # noqa: E402


def summarise(rows: list[dict]) -> dict:
    contraction = [r["newton_contraction"] for r in rows]
    softest_ratio = [r["prior_over_parent_soft_curvature"][0] for r in rows]
    calls = [r.get("active_parent_calls") for r in rows]
    with_calls = [(c, n) for c, n in zip(contraction, calls) if n is not None]
    return {"n_systems": len(rows), "median_newton_contraction": float(np.median(contraction)),
            "n_contraction_above_1": int(sum(c > 1 for c in contraction)),
            "median_relative_hessian_error": float(np.median([r["relative_hessian_error"] for r in rows])),
            "median_softest_mode_curvature_ratio": float(np.median(softest_ratio)),
            "spearman_contraction_vs_active_parent_calls":
                spearman_correlation(*zip(*with_calls)) if len(with_calls) >= 3 else None}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", required=True, help="model name or fine-tuned model directory")
    parser.add_argument("--systems", choices=("benchmark", "tuning"), default="benchmark")
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--calls-from", type=Path, default=None,
                        help="an active_learning_matched_prior.py result on the same systems")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/results/prior_curvature[/tuning].json")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    prior = load_calculator(args.prior, device="auto")
    calls = {}
    if args.calls_from:
        calls = {r["system"]: r for r in json.loads(args.calls_from.read_text())["systems"]}
    args.out = args.out or ROOT / "benchmarks" / "results" / (
        "prior_curvature/tuning.json" if args.systems == "tuning" else "prior_curvature.json")
    result = {"provenance": benchmark_provenance(__file__, argv, prior, parent="emt", fmax=0.03, systems=args.systems,
                                                 every=args.every,
                                       calls_from=str(args.calls_from) if args.calls_from else None),
              "systems": []}
    for name, atoms in list(benchmark_systems("full" if args.systems == "benchmark" else "tuning"))[::args.every]:
        baseline = parent_relax(atoms, emt_parent(), fmax=0.03)
        minimum = atoms.copy()
        minimum.positions = baseline["positions_angstrom"]
        row = {"system": name, "baseline_parent_calls": baseline["n_parent_calls"],
               **prior_curvature(minimum, prior, emt_parent())}
        known = calls.get(name)
        if known and abs(known["baseline_energy_ev"] - baseline["final_energy_ev"]) < 1e-6:  # the same system
            row["active_parent_calls"] = known["active_parent_calls"]
        result["systems"].append(row)
        result["summary"] = summarise(result["systems"])
        atomic_write_json(args.out, result)
        print(f"{name:16s} softest parent {row['parent_soft_eigenvalues_ev_per_angstrom2'][0]:+.3f} eV/Å²  "
              f"prior/parent {row['prior_over_parent_soft_curvature'][0]:+.2f}  "
              f"contraction {row['newton_contraction']:.2f}  calls {row.get('active_parent_calls')}", flush=True)
    result["summary"]["wall_seconds"] = time.perf_counter() - start
    atomic_write_json(args.out, result)
    print(result["summary"])
    return result


if __name__ == "__main__":
    main()
