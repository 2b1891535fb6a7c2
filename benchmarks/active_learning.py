"""Online active learning against parent-only BFGS (FINETUNA's comparison), with EMT (and optionally GPAW) parents.

    python benchmarks/active_learning.py [--profile ci|full] [--gpaw] [--model sevennet-0]

Writes benchmarks/results/active_learning.json (the profile is recorded inside): per system the parent calls of both methods, final parent
energies, the wall-time split (surrogate / parent / training); overall the parent calls as % of the baseline's,
the fraction of final energies within 0.02 eV of the baseline's, uncertainty-error rank correlations, and the
speed of the closed-form readout fit against AdamW on the same readout.
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

from umlip_helpers.active import parent_bfgs, relax_active  # noqa: E402
from umlip_helpers.active.systems import benchmark_systems, compare_to_parent_bfgs  # noqa: E402
from umlip_helpers.io import atomic_write_json, provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.parents import emt_parent  # noqa: E402

ENERGY_TOLERANCE_EV = 0.02


def spearman(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return None
    rx, ry = np.argsort(np.argsort(x[keep])), np.argsort(np.argsort(y[keep]))
    return float(np.corrcoef(rx, ry)[0, 1])


def fit_speed(calc, atoms, parent) -> dict:
    """Closed-form readout fit against AdamW on the same readout, on 3 rattled parent frames."""
    import torch

    from umlip_helpers.active.head_fit import predict
    from umlip_helpers.active.online import OnlineSurrogate
    from umlip_helpers.parents import parent_single_point

    frames = []
    for seed in range(3):
        rattled = atoms.copy()
        rattled.rattle(0.05, seed=seed)
        frames.append((rattled, *parent_single_point(parent, rattled)))
    full = OnlineSurrogate(calc, rank=10**6, ridge=1e-3, anchor=False, committee_size=0, seed=0)
    start = time.perf_counter()
    for rattled, energy, forces in frames:
        full.add_parent_frame(rattled, energy, forces)
    closed_form_s = time.perf_counter() - start

    def force_rmse(prediction_forces):
        return float(np.sqrt(np.mean([((p - f) ** 2).mean() for p, (_, _, f) in zip(prediction_forces, frames)])))

    closed_rmse = force_rmse([predict(fr, full.coefficients, full.offset_per_atom)[1] for fr in full.frames])
    base_rmse = force_rmse([fr.base_forces for fr in full.frames])

    gd = OnlineSurrogate(calc, rank=10**6, ridge=1e-3, anchor=False, committee_size=0, seed=0).readout
    gd.choose_basis(np.zeros((1, gd.width)), gd.width)
    optimizer = torch.optim.AdamW([gd.weight], lr=1e-2, weight_decay=0.0)
    epochs, gd_rmse, start = 0, base_rmse, time.perf_counter()
    while epochs < 30 and gd_rmse > closed_rmse * 1.05:
        optimizer.zero_grad()
        losses = []
        for rattled, energy, forces in frames:
            graph = gd.graph_forces(rattled)
            losses.append(((graph - torch.as_tensor(forces, dtype=graph.dtype)) ** 2).mean())
        loss = torch.stack(losses).mean()
        loss.backward()
        optimizer.step()
        epochs += 1
        gd_rmse = float(loss.detach().sqrt())
    return {"n_frames": len(frames), "readout_parameters": gd.width, "base_force_rmse_ev_per_angstrom": base_rmse,
            "closed_form_seconds": closed_form_s, "closed_form_force_rmse_ev_per_angstrom": closed_rmse,
            "adamw_epochs": epochs, "adamw_seconds": time.perf_counter() - start,
            "adamw_force_rmse_ev_per_angstrom": gd_rmse}


def gpaw_case(calc) -> dict:
    """A 2-atom Ni cell with one atom displaced: GPAW PBE parent, active learner against parent-only BFGS."""
    from ase.build import bulk

    from umlip_helpers.parents import gpaw_parent

    parent = gpaw_parent(kpts_density=2.0, ecut_ev=300.0)
    atoms = bulk("Ni", "fcc", a=3.52).repeat((2, 1, 1))
    atoms.positions[1] += (0.12, 0.05, -0.04)
    baseline = parent_bfgs(atoms, parent, fmax=0.05)
    active = relax_active(atoms, calc, parent, fmax=0.05, committee_size=0)
    return {"system": "Ni2 displaced (GPAW PBE, 300 eV, k-density 2/Å⁻¹, fmax 0.05)",
            "baseline_parent_calls": baseline["n_parent_calls"], "baseline_seconds": baseline["seconds"],
            "baseline_energy_ev": baseline["final_energy_ev"], **active.summary()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("ci", "full"), default="ci")
    parser.add_argument("--model", default="sevennet-0")
    parser.add_argument("--fmax", type=float, default=0.03)
    parser.add_argument("--gpaw", action="store_true", help="also run the GPAW-parent case (minutes)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    calc = load_calculator(args.model, device="auto")
    rows, correlations = [], {"committee": ([], []), "descriptor": ([], [])}
    for name, atoms in benchmark_systems(args.profile):
        row, active = compare_to_parent_bfgs(atoms, calc, emt_parent, fmax=args.fmax)
        row = {"system": name, **row}
        rows.append(row)
        correlations["committee"][0].extend(active.committee_force_std_ev_per_angstrom)
        correlations["descriptor"][0].extend(active.descriptor_q_score)
        for key in correlations:
            correlations[key][1].extend(active.true_force_error_ev_per_angstrom)
        print(f"{name:18s} BFGS {row['baseline_parent_calls']:3d}  active {row['active_parent_calls']:3d}  "
              f"dE {row['energy_difference_ev']:+.4f} eV", flush=True)
    active_calls = sum(r["active_parent_calls"] for r in rows)
    baseline_calls = sum(r["baseline_parent_calls"] for r in rows)
    summary = {
        "n_systems": len(rows),
        "parent_calls_percent_of_bfgs": 100.0 * active_calls / baseline_calls,
        "median_parent_calls_percent_of_bfgs": float(np.median(
            [100.0 * r["active_parent_calls"] / r["baseline_parent_calls"] for r in rows])),
        "fraction_within_0p02_ev": float(np.mean([r["active_converged"] and r["energy_difference_ev"]
                                                  <= ENERGY_TOLERANCE_EV for r in rows])),
        "surrogate_seconds": sum(r["surrogate_seconds"] for r in rows),
        "parent_seconds": sum(r["parent_seconds"] for r in rows),
        "training_seconds": sum(r["training_seconds"] for r in rows),
        "spearman_committee_std_vs_force_error": spearman(*correlations["committee"]),
        "spearman_descriptor_q_vs_force_error": spearman(*correlations["descriptor"]),
        "n_uncertainty_points": len(correlations["committee"][1]),
    }
    cu = next(atoms for name, atoms in benchmark_systems("ci"))
    result = {"profile": args.profile, "summary": summary, "systems": rows,
              "uncertainty_points": {k: {"uncertainty": v[0], "true_force_error_ev_per_angstrom": v[1]}
                                     for k, v in correlations.items()},
              "readout_fit_speed": fit_speed(calc, cu, emt_parent()),
              "provenance": provenance(calc, profile=args.profile, fmax=args.fmax, parent="emt",
                                       baseline="ase BFGS maxstep 0.2 on the parent")}
    if args.gpaw:
        result["gpaw"] = gpaw_case(calc)
    out = atomic_write_json(ROOT / "benchmarks" / "results" / "active_learning.json", result)
    print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()})
    print("readout fit:", result["readout_fit_speed"])
    if args.gpaw:
        print("gpaw:", result["gpaw"])
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
