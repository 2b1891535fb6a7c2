"""Periodic against naive fine-tuning along MD at equal parent-label budgets (Wong and Yang).

    python benchmarks/periodic_vs_naive.py [--profile ci|full|ymno3|gpaw] [--seeds N]

Writes benchmarks/results/periodic_vs_naive.json (full profile) or periodic_vs_naive/<profile>.json.
Headline, measured in one run:
the production force-MAE ratio periodic/naive (and the |energy error| ratio) along each fine-tuned model's own
production MD, and the PCA coverage of the production configurations by each workflow's labels. With ``--seeds N``
the whole comparison is repeated with N seeds and the ratios' spread is reported too.
"""

from __future__ import annotations

import argparse
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

from umlip_helpers.active import compare_production, naive_finetune, periodic_finetune  # noqa: E402
from umlip_helpers.profiles import STUDY_PROFILES, study_setup  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402


def one_seed(settings: dict, calc, seed: int, out: Path) -> dict:
    atoms, parent = study_setup(settings)
    common = dict(temperature_k=settings["sampling_k"], timestep_fs=settings["timestep_fs"], fit=settings["fit"],
                  fit_options=settings["fit_options"], seed=seed)
    started = time.perf_counter()
    naive = naive_finetune(atoms, calc, parent, settings["budget"], n_trajectories=settings["n_trajectories"],
                           sample_interval_steps=settings["interval_steps"], out_dir=out / "naive", **common)
    periodic = periodic_finetune(atoms, calc, parent, settings["budget"], interval_steps=settings["interval_steps"],
                                 out_dir=out / "periodic", **common)
    production = compare_production(atoms, [naive, periodic], parent, temperature_k=settings["production_k"],
                                    steps=settings["production_steps"], timestep_fs=settings["timestep_fs"],
                                    eval_interval_steps=settings["eval_interval_steps"],
                                    parent_md=settings["parent_md"], out_dir=out / "production", seed=seed + 100)
    record = {"seed": seed, "wall_seconds": time.perf_counter() - started,
              "naive": naive.summary(), "periodic": periodic.summary(), **production.summary(),
              "q_score_training_median": {k: float(np.median(v)) for k, v in production.q_score_training.items()},
              "q_score_production_median": {k: float(np.median(v)) for k, v in production.q_score_production.items()}}
    if hasattr(parent, "matches"):
        rmsd = [m[1] for m in parent.matches]
        record["labelled_parent_match_rmsd_angstrom"] = {"median": float(np.median(rmsd)), "max": float(np.max(rmsd))}
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(STUDY_PROFILES), default="ci")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--out", default=None, help="default benchmarks/results/periodic_vs_naive[/<profile>].json")
    args = parser.parse_args()
    settings = STUDY_PROFILES[args.profile]
    calc = load_calculator(settings["model"])
    work = Path(os.environ.get("UMLIP_BENCH_WORK", "/tmp/umlip-bench-periodic")) / args.profile
    runs = [one_seed(settings, calc, seed, work / f"seed_{seed}") for seed in range(args.seeds)]
    force_ratios = [r["force_mae_ratio_periodic_over_naive"] for r in runs]
    energy_ratios = [r["abs_energy_error_ratio_periodic_over_naive"] for r in runs]
    result = {
        "profile": args.profile,
        "settings": settings,
        "force_mae_ratio_periodic_over_naive": float(np.median(force_ratios)),
        "abs_energy_error_ratio_periodic_over_naive": float(np.median(energy_ratios)),
        "force_ratio_per_seed": force_ratios,
        "energy_ratio_per_seed": energy_ratios,
        "periodic_better_or_equal_fraction": float(np.mean(np.asarray(force_ratios) <= 1.0)),
        "pca_coverage_fraction": {w: float(np.mean([r["pca_coverage_fraction"][w] for r in runs]))
                                  for w in ("naive", "periodic")},
        "in_distribution_fraction": {w: float(np.mean([r["in_distribution_fraction"][w] for r in runs]))
                                     for w in ("naive", "periodic")},
        "runs": runs,
        "provenance": benchmark_provenance(__file__, None, calc, profile=args.profile, seeds=args.seeds),
    }
    atomic_write_json(args.out, result)
    print(f"profile {args.profile}: production force MAE periodic/naive = "
          f"{result['force_mae_ratio_periodic_over_naive']:.3f} (per seed {np.round(force_ratios, 3).tolist()}), "
          f"|energy error| ratio "
          f"{result['abs_energy_error_ratio_periodic_over_naive']:.3f}; PCA coverage {result['pca_coverage_fraction']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
