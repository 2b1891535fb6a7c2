"""Does fine-tuning on GPAW PBE Ni fix the Ni properties the book finds wrong? Base, LoRA and full against GPAW.

    OMP_NUM_THREADS=1 python benchmarks/ni_finetune.py --profile ci --models sevennet-0   # minutes on 2 CPU cores
    python benchmarks/ni_finetune.py --profile cpu [--models sevennet-0 chgnet-0.3.0]     # hours on a CPU
    python benchmarks/ni_finetune.py --profile full --device cuda                          # GPU
    python benchmarks/ni_finetune.py --profile ci --split provenance                       # another split rule

The book finds that the foundation models get some FCC Ni properties wrong against DFT (C44, the stacking faults,
phonons at X). The reference here is this book's own GPAW PBE data (data/ni/gpaw_pbe, labelled by
scripts/label_ni_dft.py; reference values derived by scripts/ni_dft_references.py into
data/references/ni_gpaw_pbe.csv). For each model (SevenNet-0 and CHGNet 0.3.0 by default; one that does not load is
skipped with the reason), the script fine-tunes with LoRA and full fine-tuning (``umlip_helpers.finetune``) on the
training frames, then computes the properties of the base, LoRA and full models with benchmarks/ni_properties.py's
code at its ``ci`` or ``full`` settings, and compares each with the GPAW value only (signed percent error). It also
reports the per-frame energy, force and stress errors of every variant on the held-out frames.

Split rules (``--split``, recorded in the JSON with the frames of each set):

* ``evaluated_out`` (default): never train on a frame that defines a property this profile evaluates. A GPAW value
  is a function of a few frames (a0 and B0 of the 7 eos_* frames, C11/C12/C44 of the 12 elastic_* frames, rigid
  γ(u) of gsf9_u0.000 and gsf9_u<u>, ...: DEFINES below, mirroring scripts/ni_dft_references.py); training on them
  would fit the answer, and the comparison would then measure the fit, not transfer. Every other labelled frame
  trains: the rattled cells, and the hcp, stacking-fault, surface, twin, vacancy and phonon frames of properties the
  profile does not evaluate. The provenance split's validation frame validates, its test frame is held out. At the
  ``cpu``/``full`` profiles every GPAW property is evaluated, so this rule trains on the rattled cells only (the split
  in data/ni/gpaw_pbe/provenance.json); at ``ci`` (a0, B0, C11, C12, C44, γ(1/2) only) it also trains on
  hcp2_ideal, the (111) slab and the other stacking-fault, twin, vacancy and phonon frames. Neighbouring points of
  a curve (gsf9_u0.333 beside γ(1/2)) may train: that is interpolation along the path, not the answer itself.
* ``provenance``: provenance.json's split as it is: train on its 10 rattled cells only.
* ``in_sample``: train on every labelled frame but the validation and test cells, the evaluated ones included: not
  a test of transfer but of capacity (can the fine-tuned model reproduce the DFT values it was shown?).

Frames not labelled yet are listed in the JSON (``split.not_yet_labelled``) with ``split.complete`` false; with no
training frame at all the fine-tuning is skipped with that reason and only the base model is measured. Energies:
GPAW's ``free_energy`` (forces and stress are its derivatives; PROVENANCE.md). The ``ci`` profile caps the training
set at a few frames (seeded draw) and runs two epochs.

Resumable: each model's runs live under ``runs/ni_finetune/<profile>/<key>/<model>/`` (``--workdir``; ``key`` hashes
the settings and the split's frames, so new frames start new runs), the LoRA and full models in ``lora/`` and
``full/`` (``resume=True`` where a checkpoint exists) and each variant's measurements in ``<variant>.json``; a
rerun of the same command skips what is done. Writes ``benchmarks/results/ni_finetune/ci.json`` (ci) or the
headline ``benchmarks/results/ni_finetune.json`` (cpu, full; another split: ``ni_finetune/<profile>_<split>.json``)
and the plot ``benchmarks/results/ni_finetune/<profile>[_<split>].png``: signed error by property, base / LoRA / full.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.units import GPa  # noqa: E402
from tqdm import tqdm  # noqa: E402

import ni_properties  # noqa: E402  (the property code and settings of the Ni benchmark)
from finetune_forgetting import portable, read_if_same  # noqa: E402  (stored runs, as that study keeps them)
from umlip_helpers.data import DFTDataset, fit_energy_shifts, read_dataset  # noqa: E402
from umlip_helpers.finetune import FinetuneSettings, finetune  # noqa: E402
from umlip_helpers.io import atomic_write_bytes, atomic_write_json, benchmark_provenance, model_info  # noqa: E402
from umlip_helpers.metrics import predict  # noqa: E402
from umlip_helpers.models import MODELS, ShiftedCalculator, load_calculator, model_status  # noqa: E402
from umlip_helpers.paths import data_path, results_path  # noqa: E402
from umlip_helpers.properties import fcc_lattice_parameter, references  # noqa: E402

#: every GPAW quantity the full comparison covers (data/references/ni_gpaw_pbe.csv names, * for families); those
#: without a value yet (frames not labelled) are simply absent from the table
ALL_GPAW = ("a0", "B0", "C11", "C12", "C44", "hcp_fcc_energy_difference", "gsf_rigid_u*",
            "surface_energy_111_unrelaxed", "sigma3_twin_energy_rigid", "vacancy_formation_energy_unrelaxed",
            "phonon_*")
CHEAP = ("a0", "B0", "C11", "C12", "C44", "gsf_rigid_u0.500")
PROFILES = {
    # minutes on 2 CPU cores for one model: cheap properties (ni_properties' ci cells: relax, EOS, elastic, the
    # 9-layer stacking-fault column), at most 4 training frames, 2 epochs
    "ci": {"properties_profile": "ci", "properties": ("eos", "elastic", "stacking_fault"), "evaluated": CHEAP,
           "gsf_points": 5, "max_train_frames": 4, "epochs": 2, "batch_size": 1, "patience": 5},
    # every GPAW property at ni_properties' ci cells (gsf on the GPAW grid u = k/6), all training frames, 10 epochs
    "cpu": {"properties_profile": "ci", "properties": ("eos", "elastic", "phonons", "vacancy", "stacking_fault",
                                                       "surfaces", "gb_sigma3_111"), "evaluated": ALL_GPAW,
            "gsf_points": 7, "max_train_frames": None, "epochs": 10, "batch_size": 2, "patience": 5},
    # GPU: ni_properties' converged cells, 60 epochs
    "full": {"properties_profile": "full", "properties": ("eos", "elastic", "phonons", "vacancy", "stacking_fault",
                                                          "surfaces", "gb_sigma3_111"), "evaluated": ALL_GPAW,
             "gsf_points": 7, "max_train_frames": None, "epochs": 60, "batch_size": 4, "patience": 10},
}
SPLITS = ("evaluated_out", "provenance", "in_sample")
STRATEGIES = ("lora", "full")
FRAMES_DIR = data_path("ni", "gpaw_pbe", "frames")
#: the GPAW quantities each frame enters (scripts/ni_dft_references.py), by frame-name prefix; rattled cells: none
DEFINES = (
    ("eos_", ("a0", "B0", "hcp_fcc_energy_difference")),
    ("elastic_", ("C11", "C12", "C44")),
    ("hcp2_ideal", ("hcp_fcc_energy_difference",)),
    ("gsf9_u0.000", ("gsf_rigid_u*", "surface_energy_111_unrelaxed")),
    ("slab111_", ("surface_energy_111_unrelaxed",)),
    ("twin12_sigma3", ("sigma3_twin_energy_rigid",)),
    ("column12_perfect", ("sigma3_twin_energy_rigid",)),
    ("sc222_perfect", ("vacancy_formation_energy_unrelaxed", "phonon_*")),
    ("phonon_sc222_", ("phonon_*",)),
    ("vacancy_sc222_", ("vacancy_formation_energy_unrelaxed",)),
)


def defined_quantities(frame: str) -> tuple[str, ...]:
    """The GPAW reference quantities whose derivation reads ``frame`` (patterns with * for families)."""
    if frame.startswith("gsf9_u") and frame != "gsf9_u0.000":
        return (f"gsf_rigid_u{frame.removeprefix('gsf9_u')}",)
    return next((quantities for prefix, quantities in DEFINES if frame.startswith(prefix)), ())


def matches(quantity: str, patterns) -> bool:
    """Whether ``quantity`` (a name or a pattern) and one of ``patterns`` name the same quantity."""
    return any(fnmatch.fnmatch(quantity, p) or fnmatch.fnmatch(p, quantity) for p in patterns)


def choose_split(rule: str, profile: dict, seed: int = 0) -> dict:
    """Train, validation and held-out frame names under ``rule`` (module docstring), with what the rule will train
    on once every planned frame is labelled and what of that is not labelled yet."""
    plan = json.loads(data_path("ni", "gpaw_pbe", "provenance.json").read_text())
    labelled = sorted(p.stem for p in Path(FRAMES_DIR).glob("*.extxyz"))
    validation = [n for n in plan["split"]["validation"] if n in labelled]
    never = set(plan["split"]["validation"]) | set(plan["split"]["test"])
    evaluated = profile["evaluated"]
    if rule == "provenance":
        planned = list(plan["split"]["train"])
    elif rule == "in_sample":
        planned = [n for n in plan["frames"] if n not in never]
    else:
        planned = [n for n in plan["frames"] if n not in never and not any(
            matches(q, evaluated) for q in defined_quantities(n))]
    eligible = sorted(n for n in planned if n in labelled)
    order = [eligible[i] for i in np.random.default_rng(seed).permutation(len(eligible))]
    cap = profile["max_train_frames"]
    train = sorted(order[:cap] if cap is not None else order)
    held_out = [n for n in labelled if n not in train and n not in validation]
    missing = sorted(n for n in planned if n not in labelled)
    note = (f"training set incomplete: {len(missing)} of the {len(planned)} frames this rule trains on are not "
            f"labelled yet" if missing else "training set complete")
    return {"note": note + (f"; capped at {cap} of {len(eligible)} (seeded draw)" if cap and len(eligible) > cap
                            else ""),
            "rule": rule, "evaluated_quantities": list(evaluated), "train": train, "validation": validation,
            "held_out": held_out, "planned_train": sorted(planned), "not_yet_labelled": missing,
            "capped_at": cap if cap is not None and len(eligible) > cap else None,
            "complete": not missing, "fits_the_answer": rule == "in_sample"}


def read_frames(names: list[str], label: str) -> DFTDataset:
    """The named GPAW frames with the free energy as energy (forces and stress are its derivatives)."""
    frames = []
    for name in names:
        frames += list(read_dataset(FRAMES_DIR / f"{name}.extxyz", require=("energy", "forces", "stress"),
                                    energy_key="free_energy"))
    return DFTDataset(frames, name=label)


def rigid_gamma(result, u: float) -> float | None:
    """A stacking-fault result's rigid γ (mJ/m²) at slip u of the partial, None where not sampled."""
    fractions = np.asarray(result.displacement_angstrom) / result.partial_burgers_angstrom
    hit = np.flatnonzero(np.isclose(fractions, u, atol=1e-3))
    return float(np.asarray(result.gamma_unrelaxed_mj_m2)[hit[0]]) if hit.size else None


def hcp_fcc_mev(calc, cubic) -> float:
    """E(ideal HCP at FCC's nearest-neighbour distance) - E(FCC), meV/atom, at the model's own a0 (the GPAW value's
    definition at the GPAW a0; unrelaxed c/a)."""
    a0 = fcc_lattice_parameter(cubic)[1]
    energies = []
    for atoms in (bulk("Ni", "hcp", a=a0 / math.sqrt(2), c=a0 / math.sqrt(2) * math.sqrt(8 / 3)),
                  bulk("Ni", "fcc", a=a0)):
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() / len(atoms))
    return 1e3 * (energies[0] - energies[1])


def property_rows(calc, profile: dict) -> tuple[dict, dict]:
    """({quantity: row against the GPAW value}, wall seconds by property) of one model, the evaluated quantities
    that have a GPAW value only."""
    settings = {**ni_properties.SETTINGS[profile["properties_profile"]], "gsf_points": profile["gsf_points"]}
    results, timings = ni_properties.run_model(calc, settings, only=profile["properties"])
    gpaw = references.literature_values(("ni_gpaw_pbe.csv",))
    rows = {row["property"]: row for row in references.comparison_rows(results, gpaw)}
    values = {}
    if matches("hcp_fcc_energy_difference", profile["evaluated"]):
        start = time.perf_counter()
        values["hcp_fcc_energy_difference"] = hcp_fcc_mev(calc, results["relax"].atoms)
        timings["hcp_fcc"] = time.perf_counter() - start
    for quantity in (q for q in gpaw if q.startswith("gsf_rigid_u") and "stacking_fault" in results):
        values[quantity] = rigid_gamma(results["stacking_fault"], float(quantity.removeprefix("gsf_rigid_u")))
    for quantity, value in values.items():
        if value is not None and quantity not in rows:
            rows[quantity] = {"property": quantity, **references.compare_to_reference(quantity, value, gpaw)}
    return {q: row for q, row in rows.items() if row["reference"] is not None
            and matches(q, profile["evaluated"])}, timings


def held_out_errors(calc, held_out: DFTDataset, names: list[str]) -> dict:
    """Per held-out frame: signed energy error (meV/atom, with the shifts ``calc`` carries, fitted on the training
    frames), force and stress MAE; the summary adds the energy MAE with the held-out frames' mean error removed (their
    relative energies). The property frames are symmetric, so most forces are zero in DFT and model alike."""
    if not len(held_out):
        return {"frames": [], "summary": {}}
    predicted = predict(calc, held_out, stress=True, progress=False)
    frames = []
    for name, frame, energy, forces, stress in zip(names, held_out, predicted.energies_ev,
                                                   predicted.forces_ev_per_angstrom,
                                                   predicted.stresses_ev_per_angstrom3):
        frames.append({"frame": name, "defines": list(defined_quantities(name)), "n_atoms": frame.n_atoms,
                       "energy_error_mev_per_atom": 1e3 * (energy - frame.energy_ev) / frame.n_atoms,
                       "forces_mae_ev_per_angstrom": float(np.abs(forces - frame.forces_ev_per_angstrom).mean()),
                       "stress_mae_gpa": float(np.abs(stress - frame.stress_ev_per_angstrom3).mean() / GPa)})
    signed = np.array([f["energy_error_mev_per_atom"] for f in frames])
    summary = {"energy_mae_mev_per_atom": float(np.abs(signed).mean()),
               "energy_mae_mean_removed_mev_per_atom": float(np.abs(signed - signed.mean()).mean()),
               "forces_mae_ev_per_angstrom": float(np.mean([f["forces_mae_ev_per_angstrom"] for f in frames])),
               "stress_mae_gpa": float(np.mean([f["stress_mae_gpa"] for f in frames]))}
    return {"frames": frames, "summary": summary}


def measure(calc, profile: dict, sets: dict, settings: dict, extra: dict, aligned=None) -> dict:
    """A variant's record: properties against GPAW, held-out per-frame errors (of ``aligned``, the calculator with
    its energy shifts, when given), wall times."""
    start = time.perf_counter()
    rows, timings = property_rows(calc, profile)
    properties_s = time.perf_counter() - start
    errors = held_out_errors(aligned or calc, sets["held_out"], sets["split"]["held_out"])
    return {"settings": settings, **extra, "properties": rows, "properties_wall_s": properties_s,
            "wall_s_by_property": timings, "held_out": errors,
            "model": portable(model_info(calc).to_dict(), ("checkpoint", "out_dir"))}


def base_record(name: str, args, profile: dict, sets: dict, settings: dict, path: Path) -> dict:
    """The base model, its energies shifted as the trainer aligns them (fitted on the training frames; on the
    held-out frames when there are none, which then removes only their mean)."""
    stored = read_if_same(path, settings)
    if stored is not None:
        return stored
    start = time.perf_counter()
    base = load_calculator(name, device=args.device, threads=args.threads)
    align = sets["train"] if len(sets["train"]) else sets["held_out"]
    shifts = fit_energy_shifts(align, predict(base, align, progress=False).energies_ev)
    record = measure(base, profile, sets, settings,
                     {"energy_shifts_ev": shifts, "shifts_fitted_on": "train" if len(sets["train"]) else "held_out"},
                     aligned=ShiftedCalculator(base, shifts))
    record["wall_s"] = time.perf_counter() - start
    atomic_write_json(path, record)
    return record


def tuned_record(name: str, strategy: str, args, profile: dict, sets: dict, settings: dict, run_dir: Path) -> dict:
    """Fine-tune ``name`` with ``strategy`` (resuming a checkpoint) and measure it; skipped without training frames."""
    path = run_dir / f"{strategy}.json"
    stored = read_if_same(path, settings)
    if stored is not None:
        return stored
    if not len(sets["train"]):
        return {"settings": settings, "skipped": f"no training frames under split rule {args.split!r} yet"}
    out, start = run_dir / strategy, time.perf_counter()
    report = finetune(name, sets["train"], sets["val"], strategy=strategy, out=out, epochs=profile["epochs"],
                      batch_size=profile["batch_size"], patience=profile["patience"], seed=args.seed,
                      device=args.device, progress=False, resume=(out / "checkpoint.pt").is_file())
    finetune_s = time.perf_counter() - start
    summary = {k: getattr(report, k) for k in ("epochs_run", "best_epoch", "trainable_parameters",
                                               "trainable_fraction", "seconds_per_epoch", "before", "after",
                                               "energy_shifts_ev", "log")}
    tuned = load_calculator(out, device=args.device, threads=args.threads)
    record = measure(tuned, profile, sets, settings, {"finetune": summary, "finetune_wall_s": finetune_s})
    record["wall_s"] = time.perf_counter() - start
    atomic_write_json(path, record)
    return record


def hyperparameters(profile: dict, seed: int, device: str) -> dict:
    """The trainer settings of each strategy (FinetuneSettings with the package defaults for what is not set)."""
    import dataclasses

    return {s: json.loads(json.dumps(dataclasses.asdict(FinetuneSettings.from_options(
        s, epochs=profile["epochs"], batch_size=profile["batch_size"], patience=profile["patience"], seed=seed,
        device=device)),
        default=str)) for s in STRATEGIES}


def model_runs(name: str, args, profile: dict, sets: dict, workdir: Path) -> dict:
    """Base, LoRA and full records of one model (each resumed or skipped as its record says)."""
    settings = {"model": name, "profile": args.profile, "split": args.split, "seed": args.seed}
    run_dir = workdir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    records = {"base": base_record(name, args, profile, sets, {**settings, "variant": "base"},
                                   run_dir / "base.json")}
    print(f"{name} base: {line(records['base'])}", flush=True)
    for strategy in tqdm(STRATEGIES, desc=f"{name} fine-tuning", unit="strategy", disable=not args.progress):
        records[strategy] = tuned_record(name, strategy, args, profile, sets, {**settings, "variant": strategy},
                                         run_dir)
        tqdm.write(f"{name} {strategy}: {line(records[strategy])}")
    return {"variants": records, "wall_s": sum(r.get("wall_s", 0.0) for r in records.values()),
            "wall_s_this_run": time.perf_counter() - start}


def line(record: dict) -> str:
    """One printed line: the properties with their error against GPAW, and the held-out frame errors."""
    if "skipped" in record:
        return f"skipped ({record['skipped']})"
    held = {k: record["held_out"]["summary"].get(k, np.nan) for k in (
        "energy_mae_mev_per_atom", "energy_mae_mean_removed_mev_per_atom", "forces_mae_ev_per_angstrom",
        "stress_mae_gpa")}
    return ", ".join(f"{q} {r['value']:.4g} ({r['percent_error']:+.1f}%)" for q, r in record["properties"].items()) + (
        f"; held out: energy MAE {held['energy_mae_mev_per_atom']:.1f} meV/atom "
        f"({held['energy_mae_mean_removed_mev_per_atom']:.1f} mean removed), force MAE "
        f"{held['forces_mae_ev_per_angstrom']:.4f} eV/Å, stress MAE {held['stress_mae_gpa']:.2f} GPa")


def table(models: dict) -> dict:
    """{property: {unit, gpaw, models: {model: {variant: {value, percent_error}}}}}."""
    out: dict = {}
    for name, entry in models.items():
        for variant, record in entry.get("variants", {}).items():
            for quantity, row in record.get("properties", {}).items():
                cell = out.setdefault(quantity, {"unit": row["unit"], "gpaw": row["reference"], "models": {}})
                cell["models"].setdefault(name, {})[variant] = {"value": row["value"],
                                                                "percent_error": row["percent_error"]}
    return out


def plot(rows: dict, split: dict, profile: str, path: Path) -> None:
    """Signed % error against GPAW by property: base, LoRA and full side by side, one panel per model."""
    import io

    from matplotlib.figure import Figure

    models = list(dict.fromkeys(m for cell in rows.values() for m in cell["models"]))
    figure = Figure(figsize=(max(6.0, 1.1 * len(rows) + 2), 3.2 * max(1, len(models))), layout="constrained")
    axes = np.atleast_1d(figure.subplots(max(1, len(models)), 1, squeeze=False)[:, 0])
    x = np.arange(len(rows))
    for ax, model in zip(axes, models):
        for i, variant in enumerate(("base",) + STRATEGIES):
            heights = [rows[q]["models"].get(model, {}).get(variant, {}).get("percent_error", np.nan) for q in rows]
            ax.bar(x + (i - 1) * 0.27, heights, 0.27, label=variant)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, [f"{q}\n(GPAW {rows[q]['gpaw']:g})" for q in rows], fontsize=8)
        ax.set_ylabel("error vs GPAW PBE (%)")
        ax.set_title(model, fontsize=10)
        ax.legend(fontsize=8)
    figure.suptitle(f"{profile} profile: fine-tuned on {len(split['train'])} GPAW PBE frames (rule {split['rule']}"
                    f"{'' if split['complete'] else ', training set incomplete'})", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def available(name: str) -> str | None:
    """None if ``name`` can load here, else why not."""
    if name not in MODELS:
        return None if Path(name).exists() else f"unknown model {name!r}: not registered and no such path"
    try:
        ok, why = model_status(MODELS[name])
    except ImportError as error:
        return str(error)
    return None if ok else why


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=tuple(PROFILES), default="ci")
    parser.add_argument("--models", nargs="+", default=["sevennet-0", "chgnet-0.3.0"])
    parser.add_argument("--split", choices=SPLITS, default="evaluated_out")
    parser.add_argument("--seed", type=int, default=0, help="training-frame draw (ci) and training seed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", default=None, help="fine-tuned models (default runs/ni_finetune/<profile>)")
    parser.add_argument("--out", default=None, help="JSON path (default as above); the plot goes beside it")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    return parser.parse_args(argv)


def datasets(args, profile: dict) -> dict:
    split = choose_split(args.split, profile, args.seed)
    sets = {"split": split, "train": read_frames(split["train"], "ni_gpaw_train"),
            "held_out": read_frames(split["held_out"], "ni_gpaw_held_out")}
    sets["val"] = read_frames(split["validation"], "ni_gpaw_val") if split["validation"] else None
    return sets


def main(argv=None) -> dict:
    args = parse(argv)
    from umlip_helpers.models import resolve_device

    args.device = resolve_device(args.device)
    profile = PROFILES[args.profile]
    sets = datasets(args, profile)
    split = sets["split"]
    key = hashlib.sha256(json.dumps({"profile": profile, "split": split, "train": sets["train"].sha256(),
                                     "held_out": sets["held_out"].sha256()}, sort_keys=True).encode()).hexdigest()
    workdir = Path(args.workdir or ROOT / "runs" / "ni_finetune" / args.profile) / key[:12]
    print(f"split {args.split}: train {split['train'] or 'none'}; validation {split['validation'] or 'none'}; "
          f"{len(split['held_out'])} held out; not yet labelled for training: {len(split['not_yet_labelled'])}",
          flush=True)
    variant = args.profile + ("" if args.split == "evaluated_out" else f"_{args.split}")
    out = Path(args.out) if args.out else (results_path("ni_finetune.json") if variant in ("cpu", "full") else
                                           results_path("ni_finetune", f"{variant}.json"))
    start, models = time.perf_counter(), {}
    for name in args.models:
        why = available(name)
        models[name] = {"skipped": why} if why else model_runs(name, args, profile, sets, workdir)
    rows = table(models)
    result = {
        "benchmark": "ni_finetune", "profile": args.profile, "settings": profile, "split": split,
        "data": {"frames": "data/ni/gpaw_pbe/frames", "energy": "free_energy",
                 **{f"{k}_sha256": sets[k].sha256() for k in ("train", "held_out")}},
        "hyperparameters": hyperparameters(profile, args.seed, args.device), "table": rows, "models": models,
        "wall_s_this_run": time.perf_counter() - start,
        "provenance": benchmark_provenance(__file__, argv, None, profile=args.profile, models=args.models,
                                           split=args.split, seed=args.seed, device=args.device,
                                           threads=args.threads),
    }
    atomic_write_json(out, result)
    plot(rows, split, args.profile, out.with_suffix(".png") if args.out else
         results_path("ni_finetune", f"{variant}.png"))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
