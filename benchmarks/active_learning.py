"""Online active learning against parent-only BFGS (FINETUNA's comparison) and parent-only GPMin (a Gaussian-process
optimiser with no model: what the uMLIP prior must beat), with EMT (and optionally GPAW) parents.

    python benchmarks/active_learning.py [--profile ci|small|full] [--correction gp|secant] [--gpaw] [--model M]

"full" is FINETUNA-sized (30 systems of 31-38 atoms, 3x3x4 slabs), "small" the same set on 2x2x3 slabs (see
umlip_helpers.active.systems.benchmark_systems). Writes benchmarks/results/active_learning.json (full, gp) or
active_learning/<profile>.json (plus _<correction> unless it is "gp"; rewritten after every system): per system the
parent calls of the three methods, final parent energies, the wall-time split (surrogate / parent / training); overall
the parent calls as % of the baseline's, the fraction of final energies within 0.02 eV of the baseline's,
uncertainty-error rank correlations. The ci profile
also runs variants on the same systems: the anchor alone (rank 8, the first version), the secant correction,
query="relax_only" and query="uncertainty", and the closed-form readout fit against the fine-tuning engine (head).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import get_args

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from umlip_helpers.active import parent_relax, relax_active  # noqa: E402
from umlip_helpers.choices import Correction  # noqa: E402
from umlip_helpers.active.systems import benchmark_systems, compare_to_parent_only, fraction_within  # noqa: E402
from umlip_helpers.active.uncertainty import spearman_correlation  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.parents import emt_parent  # noqa: E402

ENERGY_TOLERANCE_EV = 0.02


def update_comparison(calc, fmax: float) -> list:
    """The closed-form readout fit against gradient-descent fine-tuning (the engine's head strategy)."""
    rows = []
    for name, atoms in benchmark_systems("ci"):
        if name != "Cu(111)+O":
            continue
        for update in ("closed_form", "finetune"):
            row, _ = compare_to_parent_only(atoms, calc, emt_parent, fmax=fmax, update=update, committee_size=0)
            rows.append({"system": name, "update": update, **row})
            print(f"[update={update}] {name:12s} active {row['active_parent_calls']} / BFGS "
                  f"{row['baseline_parent_calls']}  dE {row['energy_difference_ev']:+.4f}  "
                  f"training {row['training_seconds']:.1f} s", flush=True)
    return rows


def gpaw_case(calc) -> dict:
    """A 2-atom Ni cell with one atom displaced: GPAW PBE parent, active learner against parent-only BFGS."""
    from ase.build import bulk

    from umlip_helpers.parents import gpaw_parent

    parent = gpaw_parent(kpts_density=2.0, ecut_ev=300.0)
    atoms = bulk("Ni", "fcc", a=3.52).repeat((2, 1, 1))
    atoms.positions[1] += (0.12, 0.05, -0.04)
    baseline = parent_relax(atoms, parent, fmax=0.05)
    gpmin = parent_relax(atoms, parent, fmax=0.05, optimizer="GPMin")
    active = relax_active(atoms, calc, parent, fmax=0.05, committee_size=0)
    return {"system": "Ni2 displaced (GPAW PBE, 300 eV, k-density 2/Å⁻¹, fmax 0.05)",
            "baseline_parent_calls": baseline["n_parent_calls"], "baseline_seconds": baseline["seconds"],
            "baseline_energy_ev": baseline["final_energy_ev"], "gpmin_parent_calls": gpmin["n_parent_calls"],
            "gpmin_energy_ev": gpmin["final_energy_ev"], **active.summary()}


def run_set(calc, systems, fmax: float, label: str = "", on_row=None, **options) -> tuple[list, dict]:
    """Every system against parent-only BFGS; rows and (uncertainty, true error) pairs."""
    rows, correlations = [], {"committee": ([], []), "descriptor": ([], []), "gp": ([], [])}
    for name, atoms in systems:
        start = time.perf_counter()
        row, active = compare_to_parent_only(atoms, calc, emt_parent, fmax=fmax, **options)
        row = {"system": name, **row, "wall_seconds": time.perf_counter() - start}
        rows.append(row)
        correlations["committee"][0].extend(active.committee_force_std_ev_per_angstrom)
        correlations["descriptor"][0].extend(active.descriptor_q_score)
        correlations["gp"][0].extend(active.gp_force_std_ev_per_angstrom)
        for key in correlations:
            correlations[key][1].extend(active.true_force_error_ev_per_angstrom)
        print(f"{label}{name:18s} BFGS {row['baseline_parent_calls']:3d}  GPMin {row['gpmin_parent_calls']:3d}  "
              f"active {row['active_parent_calls']:3d}  "
              f"dE {row['energy_difference_ev']:+.4f} eV  {row['wall_seconds']:.0f} s", flush=True)
        if on_row:
            on_row(rows, correlations)
    return rows, correlations


def summarise(rows, correlations) -> dict:
    active_calls = sum(r["active_parent_calls"] for r in rows)
    baseline_calls = sum(r["baseline_parent_calls"] for r in rows)
    gpmin_calls = sum(r["gpmin_parent_calls"] for r in rows)
    return {
        "n_systems": len(rows),
        "active_parent_calls": active_calls,
        "baseline_parent_calls": baseline_calls,
        "gpmin_parent_calls": gpmin_calls,
        "parent_calls_percent_of_bfgs": 100.0 * active_calls / baseline_calls,
        "gpmin_parent_calls_percent_of_bfgs": 100.0 * gpmin_calls / baseline_calls,
        "gpmin_fraction_within_0p02_ev": fraction_within(rows, ENERGY_TOLERANCE_EV, "gpmin"),
        "median_parent_calls_percent_of_bfgs": float(np.median(
            [100.0 * r["active_parent_calls"] / r["baseline_parent_calls"] for r in rows])),
        "fraction_within_0p02_ev": fraction_within(rows, ENERGY_TOLERANCE_EV),
        "surrogate_seconds": sum(r["surrogate_seconds"] for r in rows),
        "parent_seconds": sum(r["parent_seconds"] for r in rows),
        "training_seconds": sum(r["training_seconds"] for r in rows),
        "wall_seconds": sum(r["wall_seconds"] for r in rows),
        "spearman_committee_std_vs_force_error": spearman_correlation(*correlations["committee"]),
        "spearman_descriptor_q_vs_force_error": spearman_correlation(*correlations["descriptor"]),
        "spearman_gp_std_vs_force_error": spearman_correlation(*correlations["gp"]),
        "n_uncertainty_points": len(correlations["committee"][1]),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("ci", "small", "full"), default="ci")
    parser.add_argument("--model", default="sevennet-0")
    parser.add_argument("--fmax", type=float, default=0.03)
    parser.add_argument("--correction", choices=get_args(Correction), default="gp")
    parser.add_argument("--gpaw", action="store_true", help="also run the GPAW-parent case (minutes)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    calc = load_calculator(args.model, device="auto")
    suffix = "" if args.correction == "gp" else f"_{args.correction}"
    out_path = ROOT / "benchmarks" / "results" / ("active_learning.json" if args.profile == "full" and not suffix
                                                  else f"active_learning/{args.profile}{suffix}.json")
    result = {"profile": args.profile,
              "provenance": benchmark_provenance(__file__, argv, calc, profile=args.profile, fmax=args.fmax,
                                                 parent="emt",
                                       correction=args.correction,
                                       baselines="ase BFGS maxstep 0.2 on the parent; "
                                                 "ase GPMin defaults on the parent")}

    def save_partial(rows, correlations):
        result.update(summary=summarise(rows, correlations), systems=rows, complete=False)
        atomic_write_json(out_path, result)

    rows, correlations = run_set(calc, benchmark_systems(args.profile), args.fmax, on_row=save_partial,
                                 correction=args.correction)
    result.update(summary=summarise(rows, correlations), systems=rows, complete=True,
                  uncertainty_points={k: {"uncertainty": v[0], "true_force_error_ev_per_angstrom": v[1]}
                                      for k, v in correlations.items()})
    if args.profile == "ci":
        variants = {
            "before_secant_rank8": dict(correction="anchor", rank=8),
            "secant": dict(correction="secant"),
            "query_relax_only": dict(query="relax_only"),
            "query_uncertainty": dict(query="uncertainty"),
        }
        result["variants"] = {}
        for label, options in variants.items():
            v_rows, v_corr = run_set(calc, benchmark_systems("ci"), args.fmax, label=f"[{label}] ", **options)
            result["variants"][label] = {"options": options, "summary": summarise(v_rows, v_corr), "systems": v_rows}
        result["update_comparison"] = update_comparison(calc, args.fmax)
    if args.gpaw:
        result["gpaw"] = gpaw_case(calc)
    out = atomic_write_json(out_path, result)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in result["summary"].items()})
    for label, variant in result.get("variants", {}).items():
        print(label, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in variant["summary"].items()})
    if "update_comparison" in result:
        print("update:", result["update_comparison"])
    if args.gpaw:
        print("gpaw:", result["gpaw"])
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
