"""How good must the prior be? Online active learning with a fixed prior that moves from the parent itself to
SevenNet-0: prior = (1 - λ) EMT + λ SevenNet-0, parent EMT, the GP correction as the only learner (update="none").

    python benchmarks/active_learning_prior.py [--every 3] [--lambdas 0 0.1 0.3 1] [--rules adaptive ...]
        [--first-parent-call start|prior_minimum] [--out JSON]

λ = 0 is a perfect prior, so its parent calls are what the querying rules alone cost; λ = 1 is SevenNet-0 with no
readout refit. Rules: "adaptive" (relax_active's defaults: k grows with the trust radius, and a prior that agrees
with the parent at the start gets the largest radius at once) for every λ; "before" (k = 10 and trust radius
0.25 -> 0.5 Å whatever the evidence, the defaults until this benchmark) for λ ≤ 0.3; "long_excursions" (k = 1000,
trust radius 2 Å) for λ = 0; ``--rules`` keeps only the named ones. ``--first-parent-call prior_minimum`` relaxes on
the prior alone before the first parent call. On every ``every``-th system of the FINETUNA-sized set.
Writes ``--out`` (benchmarks/results/active_learning_prior.json; rewritten after every run): per system and prior the
prior's force error at the start structure (free atoms), parent calls against parent-only BFGS, and the final
energy error.
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

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from umlip_helpers.active import parent_relax  # noqa: E402
from umlip_helpers.active.systems import benchmark_systems, fraction_within, relax_with_mixed_prior  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.parents import emt_parent  # noqa: E402

FIXED = dict(k_grows_with_trust=False, trusted_prior_residual=None)
RULES = {"adaptive": {}, "before": FIXED,
         "long_excursions": dict(FIXED, k=1000, trust_radius_angstrom=2.0, max_trust_radius_angstrom=2.0)}


def summarise(rows: list[dict]) -> dict:
    calls = sum(r["active_parent_calls"] for r in rows)
    baseline = sum(r["baseline_parent_calls"] for r in rows)
    return {"n_systems": len(rows), "active_parent_calls": calls, "baseline_parent_calls": baseline,
            "parent_calls_percent_of_bfgs": 100.0 * calls / baseline,
            "mean_parent_calls_per_system": calls / len(rows),
            "fraction_within_0p02_ev": fraction_within(rows),
            "median_prior_force_error_mean_ev_per_angstrom": float(np.median(
                [r["prior_force_error_mean_ev_per_angstrom"] for r in rows]))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=3, help="run every n-th system of the full set")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.1, 0.3, 1.0])
    parser.add_argument("--rules", choices=tuple(RULES), nargs="+", default=list(RULES))
    parser.add_argument("--first-parent-call", choices=("start", "prior_minimum"), default="start")
    parser.add_argument("--fmax", type=float, default=0.03)
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results/active_learning_prior.json "
                        "(--first-parent-call prior_minimum: active_learning_prior/first_call_at_prior_minimum.json)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    model = load_calculator("sevennet-0", device="auto")
    systems = list(benchmark_systems("full"))[::args.every]
    out_path = args.out or ROOT / "benchmarks" / "results" / (
        "active_learning_prior/first_call_at_prior_minimum.json" if args.first_parent_call == "prior_minimum"
        else "active_learning_prior.json")
    baselines = {name: parent_relax(atoms, emt_parent(), fmax=args.fmax) for name, atoms in systems}
    runs = [(weight, rules) for weight in sorted(args.lambdas) for rules in args.rules
            if rules == "adaptive" or (rules == "before" and weight <= 0.3) or weight == 0]
    result = {"provenance": benchmark_provenance(__file__, argv, model, parent="emt", fmax=args.fmax, every=args.every,
                                                 update="none",
                                       correction="gp", rules={name: RULES[name] for name in args.rules},
                                       first_parent_call=args.first_parent_call,
                                       prior="(1 - lambda) EMT + lambda sevennet-0"),
              "systems": [name for name, _ in systems], "runs": []}
    reference = ROOT / "benchmarks" / "results" / "active_learning.json"  # the default learner, full profile
    if reference.exists():  # the default learner (SevenNet-0, readout refit + GP) on the same systems
        full = json.loads(reference.read_text())
        rows = [r for r in full["systems"] if r["system"] in result["systems"]]
        result["default_learner_same_systems"] = {
            "source": "active_learning.json", "created_utc": full["provenance"]["created_utc"],
            "active_parent_calls": sum(r["active_parent_calls"] for r in rows),
            "baseline_parent_calls": sum(r["baseline_parent_calls"] for r in rows),
            "parent_calls_percent_of_bfgs": 100.0 * sum(r["active_parent_calls"] for r in rows)
            / sum(r["baseline_parent_calls"] for r in rows)}
    for weight, rules in runs:
        rows = []
        for name, atoms in systems:
            base = baselines[name]
            start = time.perf_counter()
            row = relax_with_mixed_prior(atoms, model, weight, base, fmax=args.fmax,
                                         max_parent_calls=base["n_parent_calls"],
                                         first_parent_call=args.first_parent_call, **RULES[rules])
            rows.append({"system": name, **row, "wall_seconds": time.perf_counter() - start})
            print(f"lambda {weight:.2f} {rules:15s} {name:14s} prior error "
                  f"{row['prior_force_error_mean_ev_per_angstrom']:.3f} eV/Å  BFGS {base['n_parent_calls']:3d}  "
                  f"active {row['active_parent_calls']:3d}  dE {row['energy_difference_ev']:+.4f}", flush=True)
        result["runs"].append({"lambda": weight, "rules": rules, "summary": summarise(rows), "systems": rows})
        atomic_write_json(out_path, result)
        print(f"lambda {weight:.2f} {rules}:", result["runs"][-1]["summary"], flush=True)
    print(f"wrote {out_path}")
    return result


if __name__ == "__main__":
    main()
