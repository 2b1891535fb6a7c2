"""What fine-tuning SevenNet-0 on YMnO3 forgets, and what replay buys back: target error against forgetting.

    python benchmarks/finetune_forgetting.py [--profile ci|cpu|full] [--strategies lora,head,full]
                                             [--replay-weights 0,0.1,1] [--model sevennet-0] [--workdir DIR]

For each strategy and replay weight, SevenNet-0 is fine-tuned on YMnO3 training frames (the split of
``benchmarks/finetune_ymno3.py``: frames shuffled once with seed 0, then test, validation and training blocks) with
``replay_weight`` base-labelled replay frames (``umlip_helpers.finetune.replay``), and measured on

* the target: force (and stress, energy) MAE on the held-out YMnO3 test frames;
* forgetting (``umlip_helpers.finetune.forgetting``): the RMS force change against the base model on rattled probes
  of other chemistry (the summary), the Delta gauge of Ni, Cu, Al, Si, Fe against WIEN2k, and the errors against the
  shipped Ni DFT (the VASP frame and the GPAW PBE EOS/elastic/HCP frames).

Each run is written to ``benchmarks/results/finetune_forgetting/<profile>/<strategy>_w<weight>.json`` as it
finishes, and a rerun of the same command skips the runs already there (a killed job resumes). The profile's table
goes to ``finetune_forgetting/<profile>.json`` (ci) or the headline ``finetune_forgetting.json`` (cpu, full), with a
trade-off plot beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import json  # noqa: E402

import numpy as np  # noqa: E402

from finetune_ymno3 import split  # noqa: E402  (the same frames as the fine-tuning benchmark)
from umlip_helpers.data import DFTDataset, fit_energy_shifts, read_dataset  # noqa: E402
from umlip_helpers.finetune import finetune  # noqa: E402
from umlip_helpers.finetune.forgetting import (ForgettingSettings, Knowledge, forgetting, knowledge,  # noqa: E402
                                               shipped_other_data)
from umlip_helpers.io import atomic_write_bytes, atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.metrics import evaluate, predict  # noqa: E402
from umlip_helpers.models import ShiftedCalculator, load_calculator  # noqa: E402
from umlip_helpers.paths import data_path, results_path  # noqa: E402

PROFILES = {
    # minutes on a laptop CPU: the pipeline, one frame, two epochs (replay acts from the second step on: at the
    # first the model is the base, which fits the replay labels exactly, so their gradient is zero; where the
    # validation loss rises at the second epoch, early stopping keeps the first, and replay shows no effect)
    "ci": {"n_train": 1, "n_val": 1, "n_test": 1, "epochs": 2, "batch_size": 1, "patience": 5, "replay_frames": 4},
    # the finetune_ymno3 ci split (2 train, 1 val, 2 test), 3 epochs: 32 minutes for the base and the 9 runs of
    # lora, head, full x 0, 0.1, 1 on 2 shared cores (load 5-7), 90-310 s a run
    "cpu": {"n_train": 2, "n_val": 1, "n_test": 2, "epochs": 3, "batch_size": 1, "patience": 5, "replay_frames": 16},
    # GPU: finetune_ymno3's full split and schedule
    "full": {"n_train": 50, "n_val": 10, "n_test": 50, "epochs": 60, "batch_size": 5, "patience": 10,
             "replay_frames": 200},
}
#: GPAW PBE Ni frames (data/ni/gpaw_pbe) used as other DFT data: the EOS, elastic strains and HCP, all labelled
GPAW_FRAMES = tuple(f"eos_dv{d:+d}pct" for d in (-6, -4, -2, 0, 2, 4, 6)) + tuple(
    f"elastic_{c}{s}pct" for c in ("xx", "xy", "yz") for s in ("-1.0", "-0.5", "+0.5", "+1.0")) + ("hcp2_ideal",)


def other_dft_data() -> dict[str, DFTDataset]:
    frames = []
    for name in GPAW_FRAMES:
        path = data_path("ni", "gpaw_pbe", "frames", f"{name}.extxyz")
        frames += list(read_dataset(path, require=("energy", "forces", "stress")))
    return {**shipped_other_data(), "ni_gpaw_pbe": DFTDataset(frames, name="ni_gpaw_pbe")}


def target_errors(calc, test: DFTDataset) -> dict:
    """MAEs on the held-out YMnO3 frames; the energy with the shifts ``calc`` carries (fitted on the train frames)."""
    result = evaluate(calc, test, progress=False)
    return {"forces_mae_ev_per_angstrom": result.force_mae_ev_per_angstrom, "stress_mae_gpa": result.stress_mae_gpa,
            "energy_mae_mev_per_atom": result.energy_mae_mev_per_atom}


def summary_row(strategy: str, weight: float, target: dict, lost) -> dict:
    return {"strategy": strategy, "replay_weight": weight, "target": target,
            "forgetting_force_rms_ev_per_angstrom": lost.forgetting_force_rms_ev_per_angstrom,
            "mean_delta_increase_mev_per_atom": lost.mean_delta_increase_mev_per_atom,
            "ni_gpaw_stress_mae_gpa": {"before": lost.dft_before.get("ni_gpaw_pbe", {}).get("stress_mae_gpa"),
                                       "after": lost.dft_after.get("ni_gpaw_pbe", {}).get("stress_mae_gpa")},
            "ni_gpaw_energy_mae_aligned_mev_per_atom": {
                "before": lost.dft_before.get("ni_gpaw_pbe", {}).get("energy_mae_aligned_mev_per_atom"),
                "after": lost.dft_after.get("ni_gpaw_pbe", {}).get("energy_mae_aligned_mev_per_atom")}}


def portable(value, drop: tuple[str, ...] = ("checkpoint",)):
    """``value`` without the keys in ``drop``: the models' local file paths (``checkpoint``: where this machine keeps
    the weights; the model's name, version and sha256 stay)."""
    if isinstance(value, dict):
        return {k: portable(v, drop) for k, v in value.items() if k not in drop}
    return [portable(v, drop) for v in value] if isinstance(value, list) else value


def read_if_same(path: Path, settings: dict) -> dict | None:
    """The run stored at ``path`` when it was made with ``settings``; None when there is none."""
    if not path.is_file():
        return None
    stored = json.loads(path.read_text())
    return stored if stored.get("settings") == json.loads(json.dumps(settings)) else None


def base_record(args, profile, train, test, data, forget_settings, runs: Path) -> dict:
    """The base model's knowledge and target errors (its energies shifted as the trainer aligns them)."""
    settings = {"model": args.model, "profile": profile, "forgetting": forget_settings.__dict__}
    stored = read_if_same(runs / "base.json", settings)
    if stored is not None:
        return stored
    base = load_calculator(args.model, device=args.device)
    shifts = fit_energy_shifts(train, predict(base, train, progress=False).energies_ev)
    record = {"settings": settings, "energy_shifts_ev": shifts,
              "target": target_errors(ShiftedCalculator(base, shifts), test),
              "knowledge": portable(knowledge(base, data, forget_settings).to_dict())}
    atomic_write_json(runs / "base.json", record)
    return record


def one_run(args, profile, strategy, weight, split_sets, data, forget_settings, base, runs, workdir) -> dict:
    train, val, test = split_sets
    settings = {"model": args.model, "profile": profile, "strategy": strategy, "replay_weight": weight,
                "forgetting": forget_settings.__dict__}
    path = runs / f"{strategy}_w{weight:g}.json"
    stored = read_if_same(path, settings)
    if stored is not None:
        print(f"{strategy} w={weight:g}: already measured ({path.name})", flush=True)
        return stored
    started = time.perf_counter()
    out = workdir / f"{strategy}_w{weight:g}"
    report = finetune(args.model, train, val, strategy=strategy, out=out, epochs=profile["epochs"],
                      batch_size=profile["batch_size"], patience=profile["patience"], device=args.device,
                      replay_weight=weight, replay_frames=profile["replay_frames"], progress=False,
                      resume=(out / "checkpoint.pt").is_file())
    tuned = load_calculator(out, device=args.device)
    lost = forgetting(tuned, Knowledge(**base["knowledge"]), data, forget_settings)
    record = {"settings": settings, **summary_row(strategy, weight, target_errors(tuned, test), lost),
              "forgetting": portable(lost.to_dict()), "epochs_run": report.epochs_run, "best_epoch": report.best_epoch,
              "seconds_per_epoch": report.seconds_per_epoch, "trainable_fraction": report.trainable_fraction,
              "learning_curve": report.log, "seconds": time.perf_counter() - started,
              "provenance": benchmark_provenance(__file__, args.argv, None, **settings)}
    atomic_write_json(path, record)
    print(f"{strategy:5s} w={weight:<4g} test force MAE {record['target']['forces_mae_ev_per_angstrom']:.4f} eV/Å, "
          f"forgetting {record['forgetting_force_rms_ev_per_angstrom']:.4f} eV/Å, "
          f"ΔΔ {record['mean_delta_increase_mev_per_atom']:+.2f} meV/atom ({record['seconds']:.0f} s)", flush=True)
    return record


def plot(rows: list[dict], base: dict, path: Path) -> None:
    """Held-out force MAE (x) against forgetting (y): the probe force change and the mean Delta increase, one line
    per strategy through its replay weights."""
    import io

    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    panels = (("forgetting_force_rms_ev_per_angstrom", "forgetting: probe force RMS change (eV/Å)"),
              ("mean_delta_increase_mev_per_atom", "mean Δ-gauge increase, Ni Cu Al Si Fe (meV/atom)"))
    for ax, (key, label) in zip(figure.subplots(1, 2), panels):
        ax.scatter([base["target"]["forces_mae_ev_per_angstrom"]], [0.0], marker="*", s=120, color="k", label="base")
        for strategy in dict.fromkeys(row["strategy"] for row in rows):
            mine = sorted((r for r in rows if r["strategy"] == strategy), key=lambda r: r["replay_weight"])
            x, y = [r["target"]["forces_mae_ev_per_angstrom"] for r in mine], [r[key] for r in mine]
            ax.plot(x, y, "o-", label=strategy)
            for r, xi, yi in zip(mine, x, y):
                ax.annotate(f"{r['replay_weight']:g}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=8)
        ax.set_xlabel("held-out YMnO3 force MAE (eV/Å)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    figure.suptitle("SevenNet-0 fine-tuned on YMnO3: target error against forgetting (labels: replay weight)",
                    fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=tuple(PROFILES), default="ci")
    parser.add_argument("--model", default="sevennet-0")
    parser.add_argument("--strategies", default="lora,head,full")
    parser.add_argument("--replay-weights", default=None, help="default 0,1 (ci) or 0,0.1,1")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="fine-tuned models (default: temporary)")
    args = parser.parse_args(argv)
    args.argv = argv

    import torch

    from umlip_helpers.models import resolve_device

    torch.set_num_threads(args.threads)
    args.device = resolve_device(args.device)
    profile = PROFILES[args.profile]
    weights = [float(w) for w in (args.replay_weights or ("0,1" if args.profile == "ci" else "0,0.1,1")).split(",")]
    train, val, test = split(profile)
    data, forget_settings = other_dft_data(), ForgettingSettings()
    runs = results_path("finetune_forgetting", args.profile)
    runs.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="finetune_forgetting_"))
    base = base_record(args, profile, train, test, data, forget_settings, runs)
    print(f"base: test force MAE {base['target']['forces_mae_ev_per_angstrom']:.4f} eV/Å", flush=True)
    records = [one_run(args, profile, strategy, weight, (train, val, test), data, forget_settings, base, runs,
                       workdir) for strategy in args.strategies.split(",") for weight in weights]
    rows = [{k: r[k] for k in ("strategy", "replay_weight", "target", "forgetting_force_rms_ev_per_angstrom",
                               "mean_delta_increase_mev_per_atom", "ni_gpaw_stress_mae_gpa",
                               "ni_gpaw_energy_mae_aligned_mev_per_atom", "seconds")} for r in records]
    headline = args.profile != "ci"
    out = results_path("finetune_forgetting.json") if headline else runs.parent / f"{args.profile}.json"
    result = {
        "benchmark": "finetune_forgetting", "profile": args.profile, "settings": profile, "replay_weights": weights,
        "data": {"ymno3": f"data/ymno3/{Path(data_path('ymno3', 'ymno3_vasp_200.xyz')).name}",
                 "train_sha256": train.sha256(), "test_sha256": test.sha256(),
                 "other_dft": {name: {"n_frames": len(d), "sha256": d.sha256()} for name, d in data.items()}},
        "base": {"target": base["target"], "delta_mev_per_atom": base["knowledge"]["delta_mev_per_atom"],
                 "dft_errors": base["knowledge"]["dft_errors"]},
        "results": rows, "runs": f"finetune_forgetting/{args.profile}/",
        "provenance": benchmark_provenance(__file__, argv, None, profile=args.profile, model=args.model,
                                           strategies=args.strategies, replay_weights=weights, device=args.device,
                                           threads=args.threads),
    }
    atomic_write_json(out, result)
    plot(rows, base, out.with_suffix(".png"))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
