"""Online active learning with a prior matched to the parent, FINETUNA's own setting (its prior was trained on
OC20's DFT, the parent's level of theory): SevenNet-0 fine-tuned on EMT frames of small cells, then the default
learner (readout refit + GP correction) on the FINETUNA-sized set with EMT as the parent.

    python benchmarks/active_learning_matched_prior.py [--every 1] [--prior-dir runs/matched_prior] [--epochs 20]
        [--path-frames 0] [--pretraining small|full] [--tilted-frames] [--start-from DIR] [--lr 2e-3] [--prior DIR]
        [--first-parent-call start|prior_minimum] [--min-stiffness K] [--ridge R] [--systems benchmark|tuning]
        [--out JSON] [--threads 1] [--resume]

1. Pretraining data: :func:`umlip_helpers.active.systems.pretraining_frames`, 140 EMT frames (start and minimum of
   70 small-cell structures, none of them a benchmark system), and the parent calls it took to make them;
   ``--path-frames N`` adds N points along each relaxation, labels already paid for. ``--pretraining full``
   labels instead the 45 benchmark-sized slabs that are not benchmark systems (the benchmark's slabs with other
   adsorbates, and (111) surfaces), with ``--path-frames``, plus the 140 small-cell starts and minima.
   ``--tilted-frames`` adds :func:`umlip_helpers.active.systems.tilted_molecule_frames`: relaxations of those slabs'
   CO and OH started tilted, since parent BFGS from upright starts stops them at saddle points.
2. Full fine-tuning of SevenNet-0 (or of the fine-tuned model in ``--start-from``) on them (forces-weighted loss,
   ``--lr``), written to ``--prior-dir``; an interrupted or finished run there is resumed, and one trained on other
   frames or settings is refused.
   ``--prior DIR`` skips steps 1 and 2 and uses a model fine-tuned earlier (such as one on your own DFT data).
3. Per system: the prior's force error at the start before and after fine-tuning, then parent-only BFGS, parent-only
   GPMin and the online learner with the fine-tuned prior, calling the parent first at the start or, with
   ``--first-parent-call prior_minimum``, at the prior's own minimum. ``--systems tuning`` runs instead the 45
   held-out slabs of ``benchmark_systems("tuning")``, on which to choose settings (``--min-stiffness``,
   ``--ridge``) before running them on the benchmark.

Writes ``--out`` (benchmarks/results/active_learning_matched_prior.json, ``--systems tuning`` …/tuning.json;
rewritten after every system).
``--resume`` keeps the systems already in ``--out`` when it was written with the same prior and settings.

The prior of ``active_learning_matched_prior.json`` and ``…/rebuilt*.json`` was trained in two stages with these
commands (``runs/`` is not kept in git; each JSON's provenance records its prior's weights hash and training):

    python benchmarks/active_learning_matched_prior.py --path-frames 1000 --epochs 20 \
        --prior-dir runs/matched_prior_path1000_e20              # 20 epochs of 392-621 s on 2 cores, 65 s on an H100
    python benchmarks/active_learning_matched_prior.py --pretraining full --path-frames 8 --epochs 8 --lr 1e-3 \
        --start-from runs/matched_prior_path1000_e20 --prior-dir runs/matched_prior_full_path8_c_down \
        --first-parent-call prior_minimum                                # 8 epochs of 368-735 s on 2 cores

Stage 1 labels 1802 small-cell frames (val force MAE 0.357 -> 0.012 eV/Å; its first 10 epochs ran on an H100, the
rest on the CPU), stage 2 590 benchmark-sized frames of held-out slabs (val force RMSE 0.053 -> 0.032 eV/Å over its
8 epochs). With it, 56/686 = 8.2% of BFGS's parent calls with ``--query relax_only --prior-reach 1.5`` (the best of
three settings on the tuning set, 123/1149) and 61/686 = 8.9% with the defaults, all 30 systems within 0.02 eV. The
prior of the other ``…/full_size_pretraining*.json`` and ``…/tuning*.json`` came from the same commands run before
CO was bound through its C atom (commit 9a0326f), with CO standing on its O in 1766 small-cell frames. The second
stage alone, from SevenNet-0, gives a worse prior (median force error at the start 0.20 against 0.10 eV/Å) and
126/686 = 18.4% of BFGS's parent calls (``…/one_stage.json``).
"""

from __future__ import annotations

import argparse
import json
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

from umlip_helpers.choices import Query  # noqa: E402
from umlip_helpers.active.systems import (benchmark_systems, compare_to_parent_only, fraction_within,  # noqa: E402
                                          pretraining_frames, prior_force_error, tilted_molecule_frames)
from umlip_helpers.finetune import LossWeights, finetune  # noqa: E402
from umlip_helpers.models import load_finetuned, read_manifest  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance, rows_to_resume  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.parents import emt_parent  # noqa: E402

TRAINING = dict(strategy="full", lr=2e-3, seed=0, val_fraction=0.1,
                loss_weights=LossWeights(energy_per_atom_mev=1e-4, forces_ev_per_angstrom=1.0, stress_gpa=0.0))


def matched_prior(frames: list, prior_dir: Path, epochs: int, start_from: Path | None = None,
                  lr: float = TRAINING["lr"]):
    """SevenNet-0 (or the fine-tuned model in ``start_from``) fine-tuned on ``frames`` in ``prior_dir``: trained, or
    resumed or finished there (the fine-tuning engine refuses a checkpoint written for other data, hyperparameters
    or starting model)."""
    model = load_finetuned(start_from, device="auto") if start_from else "sevennet-0"
    finetune(model, frames, out=prior_dir, epochs=epochs, device="auto", resume=True, progress=True,
             **{**TRAINING, "lr": lr})
    return load_finetuned(prior_dir, device="auto"), read_manifest(prior_dir)


def labelled_pretraining(pretraining: str, path_frames: int, fmax: float, tilted: bool = False) -> tuple[list, int]:
    """Frames and the parent calls that made them (see the module's docstring, step 1)."""
    if pretraining == "small":
        frames, calls = pretraining_frames(emt_parent, fmax=fmax, path_frames=path_frames)
    else:
        full, full_calls = pretraining_frames(emt_parent, fmax=fmax, path_frames=path_frames, size="full")
        small, small_calls = pretraining_frames(emt_parent, fmax=fmax)
        frames, calls = full + small, full_calls + small_calls
    if tilted:
        tilted_frames, tilted_calls, _ = tilted_molecule_frames(emt_parent, fmax=fmax)
        frames, calls = frames + tilted_frames, calls + tilted_calls
    return frames, calls


def summarise(rows: list[dict]) -> dict:
    calls = sum(r["active_parent_calls"] for r in rows)
    baseline = sum(r["baseline_parent_calls"] for r in rows)
    return {"n_systems": len(rows), "active_parent_calls": calls, "baseline_parent_calls": baseline,
            "parent_calls_percent_of_bfgs": 100.0 * calls / baseline,
            "gpmin_parent_calls_percent_of_bfgs": 100.0 * sum(r["gpmin_parent_calls"] for r in rows) / baseline,
            "fraction_within_0p02_ev": fraction_within(rows),
            "median_prior_force_error_base_ev_per_angstrom": float(np.median([r["prior_error_base"] for r in rows])),
            "median_prior_force_error_matched_ev_per_angstrom": float(np.median(
                [r["prior_error_matched"] for r in rows]))}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=1, help="run every n-th system of the full set")
    parser.add_argument("--prior-dir", type=Path, default=None,
                        help="where the prior is trained (default runs/matched_prior, + _path<N> with --path-frames)")
    parser.add_argument("--path-frames", type=int, default=0,
                        help="also train on this many points along each pretraining relaxation (no extra parent call)")
    parser.add_argument("--pretraining", choices=("small", "full"), default="small",
                        help="small cells only, or benchmark-sized slabs that are not benchmark systems")
    parser.add_argument("--tilted-frames", action="store_true",
                        help="also pretrain on relaxations of tilted CO and OH (tilted_molecule_frames)")
    parser.add_argument("--start-from", type=Path, default=None,
                        help="fine-tune this fine-tuned model directory instead of SevenNet-0")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=TRAINING["lr"])
    parser.add_argument("--prior", type=Path, default=None,
                        help="an already fine-tuned model directory to use as the prior (skips steps 1 and 2)")
    parser.add_argument("--first-parent-call", choices=("start", "prior_minimum"), default="start")
    parser.add_argument("--fmax", type=float, default=0.03)
    parser.add_argument("--min-stiffness", type=float, default=None,
                        help="bound each segment by parent fmax / this (eV/Å²); see relax_active")
    parser.add_argument("--prior-reach", type=float, default=None,
                        help="with prior_minimum: how far (Å) the prior alone may move an atom before the first parent "
                             "call (default: relax_active's max trust radius, 0.5)")
    parser.add_argument("--query", choices=get_args(Query), default="k_steps",
                        help="relax_active's querying rule: relax_only drops the k-step calls")
    parser.add_argument("--ridge", type=float, default=None, help="relax_active's readout ridge (default: its own)")
    parser.add_argument("--systems", choices=("benchmark", "tuning"), default="benchmark",
                        help="the 30 benchmark systems, or the 45 held-out tuning slabs")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/results/active_learning_matched_prior[/tuning].json; name "
                             "explorations benchmarks/results/active_learning_matched_prior/<variant>.json")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on shared cores)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the systems an interrupted run with the same prior and settings wrote to --out")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.prior is None:
        frames, pretraining_calls = labelled_pretraining(args.pretraining, args.path_frames, args.fmax,
                                                         args.tilted_frames)
        prior_dir = args.prior_dir or ROOT / "runs" / ("matched_prior" + (f"_path{args.path_frames}"
                                                                            if args.path_frames else ""))
        prior, manifest = matched_prior(frames, prior_dir, args.epochs, args.start_from, args.lr)
        made = {"pretraining": args.pretraining, "n_frames": len(frames), "parent_calls": pretraining_calls,
                "n_atoms_per_frame": sorted({len(f.atoms) for f in frames})}
        training = {**TRAINING, "lr": args.lr, "loss_weights": vars(TRAINING["loss_weights"]), "epochs": args.epochs,
                    "path_frames": args.path_frames, "pretraining": args.pretraining,
                    **({"tilted_frames": True} if args.tilted_frames else {})}
        if args.start_from:
            start_manifest = read_manifest(args.start_from)
            training["start_from"] = {"dir": str(args.start_from), "weights_sha256": start_manifest["weights_sha256"],
                                      "data": start_manifest["data"],
                                      "hyperparameters": start_manifest["hyperparameters"]}
    else:  # its data and the parent calls that made it are known here only by the hashes in its manifest
        prior, manifest = load_finetuned(args.prior, device="auto"), read_manifest(args.prior)
        made = {"prior": str(args.prior)}
        training = manifest["hyperparameters"]
    base = load_calculator("sevennet-0", device="auto")
    out_path = args.out or ROOT / "benchmarks" / "results" / (
        "active_learning_matched_prior" + ("/tuning" if args.systems == "tuning" else "") + ".json")
    systems = list(benchmark_systems("full" if args.systems == "benchmark" else "tuning"))[::args.every]
    options = {"first_parent_call": args.first_parent_call, "min_stiffness_ev_per_angstrom2": args.min_stiffness,
               "query": args.query, "prior_reach_angstrom": args.prior_reach,
               **({"ridge": args.ridge} if args.ridge is not None else {})}
    result = {"provenance": benchmark_provenance(__file__, argv, prior, parent="emt", fmax=args.fmax, every=args.every,
                                                 systems=args.systems, threads=args.threads, **options,
                                                 training=training),
              "pretraining": {**made, "weights_sha256": manifest["weights_sha256"], "data": manifest["data"],
                              "training_log": manifest["report"].get("after"),
                              "seconds_per_epoch": manifest["report"].get("seconds_per_epoch")},
              "systems": []}
    finished = rows_to_resume(out_path, result["provenance"]) if args.resume else {}
    reference = ROOT / "benchmarks" / "results" / "active_learning.json"  # the SevenNet-0 learner, full profile
    base_rows = {r["system"]: r for r in json.loads(reference.read_text())["systems"]} if reference.exists() else {}
    for name, atoms in systems:
        if name in finished:
            result["systems"].append(finished[name])
            continue
        row, _ = compare_to_parent_only(atoms, prior, emt_parent, fmax=args.fmax, **options)
        row = {"system": name, "prior_error_base": prior_force_error(atoms, base, emt_parent())[0],
               "prior_error_matched": prior_force_error(atoms, prior, emt_parent())[0], **row,
               "sevennet0_learner_parent_calls": None}
        reference_row = base_rows.get(name, {})
        if reference_row.get("baseline_energy_ev") is not None and \
                abs(reference_row["baseline_energy_ev"] - row["baseline_energy_ev"]) < 1e-6:  # the same system
            row["sevennet0_learner_parent_calls"] = reference_row["active_parent_calls"]
        result["systems"].append(row)
        result["summary"] = summarise(result["systems"])
        atomic_write_json(out_path, result)
        print(f"{name:16s} prior error {row['prior_error_base']:.3f} -> {row['prior_error_matched']:.3f} eV/Å  "
              f"BFGS {row['baseline_parent_calls']:3d}  GPMin {row['gpmin_parent_calls']:3d}  "
              f"matched {row['active_parent_calls']:3d} (SevenNet-0 {row['sevennet0_learner_parent_calls']})  "
              f"dE {row['energy_difference_ev']:+.4f}", flush=True)
    same = [base_rows[r["system"]] for r in result["systems"] if r["sevennet0_learner_parent_calls"] is not None]
    if same:  # none for the tuning systems
        result["summary"]["sevennet0_learner_same_systems"] = {
            "source": reference.name, "n_systems": len(same),
            "active_parent_calls": sum(r["active_parent_calls"] for r in same),
            "parent_calls_percent_of_bfgs": 100.0 * sum(r["active_parent_calls"] for r in same)
            / sum(r["baseline_parent_calls"] for r in same)}
    result["summary"]["wall_seconds"] = time.perf_counter() - start  # of this run; resumed systems not included
    result["summary"]["resumed_systems"] = len(finished)
    atomic_write_json(out_path, result)
    print(result["summary"])
    print(f"wrote {out_path}")
    return result


if __name__ == "__main__":
    main()
