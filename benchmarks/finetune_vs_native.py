"""The project's fine-tuning defaults against each family's own trainer, on the same frames, epochs and batch size.

    python benchmarks/finetune_vs_native.py [--budget small|large] [--families sevennet,chgnet] [--workdir DIR]
    python benchmarks/finetune_vs_native.py --budget small --seed 2      # the same with another seed
    python benchmarks/finetune_vs_native.py --sweep lr=5e-4,2e-3 stress_weight=0.01,0.1 loss=mse,huber
                                            [--budget small] [--families sevennet]

Frames, all from ``data/ymno3/ymno3_vasp_200.xyz`` (VASP, 120 atoms): training = the first 8 (``small``: 5 epochs)
or 50 (``large``: 20 epochs), batch 4; validation = frames 150-154, which both trainers see for their best epoch and
on which the defaults were chosen (``--sweep``); test = frames 180-199, seen by nobody until the end.

Three sides per family, each measured on the test frames (force, stress and raw energy MAE: no re-alignment; force
and stress RMSE, which weigh the large errors an MD run meets):

* ``base``: the foundation model as shipped;
* ``umlip``: ``umlip finetune --strategy full`` with its defaults (one subprocess, one thread);
* ``native``: the family's own trainer with its own fine-tuning settings (``_native_finetune.py``: sevenn's
  ``fine_tune.yaml`` preset, CHGNet's ``Trainer`` defaults), one subprocess, one thread.

Wall time and peak memory are each subprocess's own, the two trainers run one after the other on the same cores.
Each side is written to ``benchmarks/results/finetune_vs_native/<budget>/<family>_<side>.json`` as it finishes, and a
rerun skips those already there. ``--seed N`` repeats the trained sides with seed N (under ``<budget>/seed<N>/``);
the headline then gives each trainer's range over seeds (``seed_spread``). The table goes to the headline
``finetune_vs_native.json`` (small and large are merged into it). ``--sweep`` fine-tunes with each combination of
the given hyperparameters and scores it on the validation frames only; its table goes to
``finetune_vs_native/sweep_<budget>_<family>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _native_finetune as native  # noqa: E402
from umlip_helpers.data import DFTDataset, read_dataset  # noqa: E402
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.metrics import evaluate  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.paths import data_path, results_path  # noqa: E402

BUDGETS = {"small": {"n_train": 8, "epochs": 5, "batch_size": 4},
           "large": {"n_train": 50, "epochs": 20, "batch_size": 4}}
VAL_FRAMES, TEST_FRAMES = range(150, 155), range(180, 200)
MODELS = {"sevennet": "sevennet-0", "chgnet": "chgnet-0.3.0"}
SIDES = ("base", "umlip", "native")
NOT_COMPARED = {"mace": "no MACE foundation weights load here (MACE-MP-0 cannot be downloaded); mace's own fine-tuning "
                        "(mace_run_train --foundation_model) of a randomly initialised tiny MACE would compare two "
                        "trainers on a model with nothing to keep, which says nothing about fine-tuning defaults"}
#: --sweep keys and the `umlip finetune` flag each sets
SWEEP_FLAGS = {"lr": "--lr", "stress_weight": "--stress-weight", "energy_weight": "--energy-weight",
               "force_weight": "--force-weight", "loss": "--loss", "huber_delta": "--huber-delta",
               "schedule": "--schedule", "seed": "--seed"}
#: how the sweep scores a setting on the validation frames: force and stress MAE, each relative to the base model's
SCORE = "forces_mae / base forces_mae + stress_mae / base stress_mae"


def frames(budget: dict) -> tuple[DFTDataset, DFTDataset, DFTDataset]:
    data = read_dataset(data_path("ymno3", "ymno3_vasp_200.xyz"), require=("energy", "forces", "stress"))
    return data[:budget["n_train"]], data[list(VAL_FRAMES)], data[list(TEST_FRAMES)]


def errors(calc, dataset: DFTDataset) -> dict:
    result = evaluate(calc, dataset, progress=False)
    return {"forces_mae_ev_per_angstrom": result.force_mae_ev_per_angstrom, "stress_mae_gpa": result.stress_mae_gpa,
            "energy_mae_raw_mev_per_atom": result.energy_mae_mev_per_atom,
            "forces_rmse_ev_per_angstrom": result.force_rmse_ev_per_angstrom, "stress_rmse_gpa": result.stress_rmse_gpa}


def portable(command: list) -> list[str]:
    """``command`` with file paths cut to their names (no machine paths in results)."""
    return [Path(c).name if os.sep in str(c) else str(c) for c in command]


def umlip_command(family: str, budget: dict, files: dict[str, Path], out: Path, extra: list[str] = ()) -> list[str]:
    """``umlip finetune`` with its defaults: only the budget, the data and where it runs are given."""
    return [sys.executable, "-m", "umlip_helpers.cli", "finetune", "--model", MODELS[family], "--strategy", "full",
            "--train", str(files["train"]), "--val", str(files["val"]), "--epochs", str(budget["epochs"]),
            "--batch-size", str(budget["batch_size"]), "--device", "cpu", "--threads", "1", "--out", str(out),
            *extra]


def seed_flags(seed: int | None) -> list[str]:
    """The `umlip finetune` flags of a --seed repeat (none at the default seed)."""
    return [] if seed is None else ["--seed", str(seed)]


def umlip_out(workdir: Path, extra: list[str] = ()) -> Path:
    return workdir / ("umlip" + "".join(extra).replace("--", "_"))


def run_umlip(family: str, budget: dict, files: dict[str, Path], workdir: Path, extra: list[str] = ()) -> dict:
    out = umlip_out(workdir, extra)
    command = umlip_command(family, budget, files, out, list(extra))
    wall, rss = native.run_timed(command, workdir, f"{out.name}.log")
    manifest = json.loads((out / "umlip_model.json").read_text())
    return {"wall_seconds": wall, "peak_rss_mb": rss, "out": str(out), "command": portable(["umlip", *command[3:]]),
            "settings": manifest["hyperparameters"], "best_epoch": manifest["report"]["best_epoch"],
            "epochs_run": manifest["report"]["epochs_run"]}


def side(name: str, family: str, budget_name: str, sets, files, workdir: Path, args) -> dict:
    """One side's record (stored, or trained and measured now)."""
    path = side_path(budget_name, family, name, args.seed)
    budget, (train, val, test) = BUDGETS[budget_name], sets
    if path.is_file():  # stored; the RMSEs were added to errors() later: rescored where the model is still there
        record = json.loads(path.read_text())
        if "forces_rmse_ev_per_angstrom" not in record["test"] and (
                calc := stored_model(name, family, workdir, args.seed)) is not None:
            record.update(test=record["test"] | errors(calc, test), val=record["val"] | errors(calc, val))
            atomic_write_json(path, record)
        return record
    print(f"{family} {budget_name}: {name} {'' if args.seed is None else f'seed {args.seed} '}...", flush=True)
    if name == "base":
        record, calc = {}, load_calculator(MODELS[family], device="cpu")
    elif name == "umlip":
        record = run_umlip(family, budget, files, workdir, seed_flags(args.seed))
        calc = load_calculator(record.pop("out"), device="cpu")
    else:
        trainer = native.run_sevenn if family == "sevennet" else native.run_chgnet
        seed = {} if args.seed is None else {"seed": args.seed}
        run = trainer(train.to_atoms_list(), val.to_atoms_list(), budget["epochs"], budget["batch_size"],
                      workdir / "native", **seed)
        record = {"wall_seconds": run.wall_seconds, "peak_rss_mb": run.peak_rss_mb, "settings": run.settings,
                  "command": portable(run.command)}
        calc = native.native_calculator(run)
    record = {"family": family, "side": name, "budget": budget_name, **budget, **record, "test": errors(calc, test),
              "val": errors(calc, val),
              "provenance": benchmark_provenance(__file__, args.argv, None, family=family, side=name,
                                                 budget=budget_name, val_frames=list(VAL_FRAMES),
                                                 test_frames=list(TEST_FRAMES))}
    atomic_write_json(path, record)
    return record


def stored_model(name: str, family: str, workdir: Path, seed: int | None):
    """The calculator of a side trained earlier in ``workdir``; None where its model is no longer there."""
    if name == "base":
        return load_calculator(MODELS[family], device="cpu")
    if name == "umlip":
        out = umlip_out(workdir, seed_flags(seed))
        return load_calculator(out, device="cpu") if (out / "umlip_model.json").is_file() else None
    run = native._finished(workdir / "native", family)
    return native.native_calculator(run) if run is not None and Path(run.checkpoint).is_file() else None


def side_path(budget_name: str, family: str, name: str, seed: int | None) -> Path:
    """A side's record: <budget>/<family>_<side>.json at each trainer's default seed, seed<N>/ under it otherwise."""
    where = (budget_name,) if seed is None else (budget_name, f"seed{seed}")
    return results_path("finetune_vs_native", *where, f"{family}_{name}.json")


def write_frames(sets, workdir: Path) -> dict[str, Path]:
    return {name: dataset.write_extxyz(workdir / f"{name}.extxyz") for name, dataset in zip(("train", "val"), sets)}


def compare(args) -> dict:
    for budget_name in args.budget.split(","):
        sets = frames(BUDGETS[budget_name])
        for family in args.families.split(","):
            workdir = Path(args.workdir or tempfile.mkdtemp(prefix="finetune_vs_native_")) / budget_name / family
            if args.seed is not None:
                workdir = workdir / f"seed{args.seed}"
            workdir.mkdir(parents=True, exist_ok=True)
            files = write_frames(sets, workdir)
            for name in args.sides.split(","):
                if name == "base" and args.seed is not None:
                    continue  # the base model has no seed
                side(name, family, budget_name, sets, files, workdir, args)
    result = {"benchmark": "finetune_vs_native", "headline": comparison(),
              "settings": {"budgets": BUDGETS, "runs": "finetune_vs_native/<budget>/<family>_<side>.json",
                           "not_compared": NOT_COMPARED,
                           "frames": {"file": "data/ymno3/ymno3_vasp_200.xyz",
                                      "validation": [VAL_FRAMES.start, VAL_FRAMES.stop - 1],
                                      "test": [TEST_FRAMES.start, TEST_FRAMES.stop - 1]}},
              "provenance": benchmark_provenance(__file__, args.argv, None, profile=args.budget,
                                                 families=args.families, threads=1, device="cpu")}
    atomic_write_json(results_path("finetune_vs_native.json"), result)
    return result


def comparison() -> dict:
    """Per family and budget measured on all three sides (stored in finetune_vs_native/<budget>/): the test errors
    side by side, each trainer's wall time and peak memory, and the ratios native / umlip (>1: umlip is faster or
    leaner)."""
    out = {}
    for budget, family in itertools.product(BUDGETS, MODELS):
        paths = {name: results_path("finetune_vs_native", budget, f"{family}_{name}.json") for name in SIDES}
        if not all(path.is_file() for path in paths.values()):
            continue
        records = {name: json.loads(path.read_text()) for name, path in paths.items()}
        umlip, native = records["umlip"], records["native"]
        out[f"{family} {budget}"] = {name: record["test"] for name, record in records.items()} | {
            "wall_seconds": {name: records[name]["wall_seconds"] for name in ("umlip", "native")},
            "peak_memory_mb": {name: records[name]["peak_rss_mb"] for name in ("umlip", "native")},
            "wall_ratio_native_over_umlip": native["wall_seconds"] / umlip["wall_seconds"],
            "memory_ratio_native_over_umlip": native["peak_rss_mb"] / umlip["peak_rss_mb"]}
        if spread := seed_spread(budget, family):
            out[f"{family} {budget}"]["seed_spread"] = spread
    return out


def seed_spread(budget: str, family: str) -> dict:
    """Test force and stress MAE of umlip and native over their default seed and every --seed repeat: how much of a
    gap between the two trainers one seed's run can show by chance."""
    spread = {}
    for name in ("umlip", "native"):
        paths = [side_path(budget, family, name, None), *sorted(
            results_path("finetune_vs_native", budget).glob(f"seed*/{family}_{name}.json"))]
        tests = [json.loads(path.read_text())["test"] for path in paths if path.is_file()]
        if len(tests) < 2:
            return {}
        spread[name] = {"runs": len(tests)} | {
            f"{end}_{key}": pick(t[key] for t in tests) for end, pick in (("best_seed", min), ("worst_seed", max))
            for key in ("forces_mae_ev_per_angstrom", "stress_mae_gpa", "forces_rmse_ev_per_angstrom")
            if all(key in t for t in tests)}
    return spread


def sweep(args) -> dict:
    """Fine-tune with every combination of the given settings; score each on the validation frames."""
    grid = dict(item.split("=", 1) for item in args.sweep)
    unknown = set(grid) - set(SWEEP_FLAGS)
    if unknown:
        raise SystemExit(f"--sweep takes {', '.join(SWEEP_FLAGS)}; not {', '.join(sorted(unknown))}")
    results = {}
    for budget_name, family in itertools.product(args.budget.split(","), args.families.split(",")):
        sets = frames(BUDGETS[budget_name])
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix="finetune_sweep_")) / budget_name / family
        workdir.mkdir(parents=True, exist_ok=True)
        files = write_frames(sets, workdir)
        store = results_path("finetune_vs_native", f"sweep_{budget_name}_{family}.json")
        done = json.loads(store.read_text()) if store.is_file() else {"runs": {}}
        base = done.get("base_val") or errors(load_calculator(MODELS[family], device="cpu"), sets[1])
        for values in itertools.product(*(grid[key].split(",") for key in grid)):
            setting = dict(zip(grid, values))
            name = " ".join(f"{k}={v}" for k, v in setting.items())
            if name not in done["runs"]:
                print(f"sweep {family} {budget_name}: {name}", flush=True)
                extra = [part for key, value in setting.items() for part in (SWEEP_FLAGS[key], value)]
                record = run_umlip(family, BUDGETS[budget_name], files, workdir, extra)
                record["val"] = errors(load_calculator(record.pop("out"), device="cpu"), sets[1])
                record["sweep"] = args.sweep  # the --sweep this run came from (provenance holds the last one)
                record["score"] = (record["val"]["forces_mae_ev_per_angstrom"] / base["forces_mae_ev_per_angstrom"]
                                   + record["val"]["stress_mae_gpa"] / base["stress_mae_gpa"])
                done["runs"][name] = record
            done.update(base_val=base, score=SCORE, family=family, budget=budget_name,
                        best=min(done["runs"], key=lambda n: done["runs"][n]["score"]),
                        provenance=benchmark_provenance(__file__, args.argv, None, sweep=args.sweep))
            atomic_write_json(store, done)
        results[f"{budget_name}/{family}"] = done
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", default="small", help="small, large or small,large")
    parser.add_argument("--families", default="sevennet,chgnet")
    parser.add_argument("--sweep", nargs="*", default=None, metavar="KEY=V1,V2",
                        help=f"choose defaults on the validation frames; keys: {', '.join(SWEEP_FLAGS)}")
    parser.add_argument("--sides", default=",".join(SIDES), help="which to measure (the table needs all three)")
    parser.add_argument("--seed", type=int, default=None,
                        help="repeat the trained sides with this seed (default: each trainer's own default seed)")
    parser.add_argument("--workdir", default=None, help="where the models are trained (default: temporary)")
    args = parser.parse_args(argv)
    args.argv = argv
    return sweep(args) if args.sweep else compare(args)


if __name__ == "__main__":
    main()
