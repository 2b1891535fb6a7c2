"""A matched prior that has also seen tilted CO and OH.

Parent-only BFGS stops the upright CO and OH adsorbates at saddle points: their tilt curvature is negative
(``benchmarks/prior_curvature.py``). A prior trained only on BFGS paths knows nothing of the tilted basins that
the online learner can fall into. This script relaxes, with EMT, two starts of each CO and OH pretraining slab
(``other_full_size_slabs``: never a benchmark system) with the molecule tilted by 30° (its own seeds, 7000 + ...),
keeps 10 points of each path, and fine-tunes ``--start-from`` on those frames plus the full-size pretraining frames
(3 epochs, lr 5e-4), and writes what it made to ``benchmarks/results/matched_prior_tilted.json``. Run the prior with
``active_learning_matched_prior.py --prior OUT``.

    python benchmarks/matched_prior_tilted.py --out runs/matched_prior_tilted   # about 15 min on 2 cores
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from active_learning_matched_prior import matched_prior  # noqa: E402

from umlip_helpers.active.online import parent_relax  # noqa: E402
from umlip_helpers.active.systems import (BINDING_ATOM, other_full_size_slabs, pretraining_frames,  # noqa: E402
                                          rattle_free_metal)
from umlip_helpers.data import LabelledFrame  # noqa: E402
from umlip_helpers.io import atomic_write_json, provenance  # noqa: E402
from umlip_helpers.parents import emt_parent  # noqa: E402

TILT_DEGREES, STARTS, PATH_POINTS = 30.0, 2, 10


def tilted_frames() -> tuple[list, int, list]:
    """EMT-labelled points along the relaxations of tilted CO/OH starts, the parent calls they took, and a record
    per relaxation."""
    rng = np.random.default_rng(7000)
    frames, calls, runs = [], 0, []
    for index, (name, atoms) in enumerate(other_full_size_slabs()):
        if not name.endswith(("+CO", "+OH")):
            continue
        for repeat in range(STARTS):
            start = rattle_free_metal(atoms, 0.1, seed=7000 + 10 * index + repeat)
            binding, top = sorted((len(start) - 2, len(start) - 1),  # the molecule is the last two atoms
                                  key=lambda i: start[i].symbol != BINDING_ATOM[name.split("+")[1]])
            bond = start.positions[top] - start.positions[binding]
            azimuth = rng.uniform(0, 2 * np.pi)
            axis = np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
            tilt = np.radians(TILT_DEGREES)  # Rodrigues' rotation of the bond about a horizontal axis
            tilted_bond = bond * np.cos(tilt) + np.cross(axis, bond) * np.sin(tilt) + axis * axis.dot(bond) * (
                1 - np.cos(tilt))
            start.positions[top] = start.positions[binding] + tilted_bond
            run = parent_relax(start, emt_parent(), fmax=0.03, keep_path=True)
            calls += run["n_parent_calls"]
            for point in sorted(set(np.linspace(0, len(run["path"]) - 1, PATH_POINTS).round().astype(int))):
                positions, energy, forces = run["path"][point]
                frame = start.copy()
                frame.positions = positions
                frames.append(LabelledFrame(frame, energy, forces, None, f"tilted {name}", len(frames)))
            runs.append({"system": name, "start": repeat, "parent_calls": run["n_parent_calls"],
                         "converged": run["converged"], "final_energy_ev": run["final_energy_ev"]})
            print(f"{name} start {repeat}: {run['n_parent_calls']} parent calls, E {run['final_energy_ev']:.3f} eV",
                  flush=True)
    return frames, calls, runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start-from", type=Path, default=ROOT / "runs" / "matched_prior_full_path8_c_down")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "matched_prior_tilted")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    full, _ = pretraining_frames(emt_parent, fmax=0.03, path_frames=8, size="full")
    tilted, calls, runs = tilted_frames()
    print(f"{len(tilted)} tilted frames from {calls} parent calls", flush=True)
    prior, manifest = matched_prior(full + tilted, args.out, epochs=3, start_from=args.start_from, lr=5e-4)
    out = ROOT / "benchmarks" / "results" / "matched_prior_tilted.json"
    atomic_write_json(out, {
        "provenance": provenance(prior, parent="emt", tilt_degrees=TILT_DEGREES, starts=STARTS,
                                 path_points=PATH_POINTS, start_from=str(args.start_from)),
        "summary": {"prior": str(args.out), "weights_sha256": manifest["weights_sha256"],
                    "n_pretraining_frames": len(full), "n_tilted_frames": len(tilted),
                    "tilted_parent_calls": calls, "training_log": manifest["report"].get("after")},
        "relaxations": runs})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
