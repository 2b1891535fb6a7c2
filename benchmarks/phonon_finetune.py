"""Phonon fine-tuning of FCC Ni from a few rattled supercells labelled by a parent (EMT by default).

    python benchmarks/phonon_finetune.py [--profile ci|full] [--models sevennet-0 chgnet-0.3.0] [--parent emt|gpaw]

For each base model, in one run: phonons of parent, base and LoRA-fine-tuned model on the parent's relaxed
lattice; the headline numbers are the frequency-MAE ratio fine-tuned/base (below 1: fine-tuning moved the phonons
toward the parent) and the mean model/parent frequency ratio before and after (the softening, 1 = none). Also the
X and L frequencies against the neutron data in data/references. Time of each stage as a ratio to the parent's.
Writes benchmarks/results/phonon_finetune.json (full profile, EMT parent) or phonon_finetune/<profile>[_gpaw].json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from ase.build import bulk  # noqa: E402

from umlip_helpers.io import atomic_write_json, benchmark_provenance, model_info  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.parents import emt_parent, gpaw_parent  # noqa: E402
from umlip_helpers.properties.phonon_finetune import phonon_finetune  # noqa: E402
from umlip_helpers.properties.references import compare_to_reference, literature_values  # noqa: E402
from umlip_helpers.properties.relax import relax  # noqa: E402

SETTINGS = {
    "ci": {"n_rattled": 10, "supercell": 2, "amplitude_angstrom": 0.03, "phonon_supercell": 3, "epochs": 10,
           "mesh": 12, "band_points": 31},
    "full": {"n_rattled": 10, "supercell": 3, "amplitude_angstrom": 0.03, "phonon_supercell": 4, "epochs": 30,
             "mesh": 20, "band_points": 51},
}
#: GPAW parent (spin-polarised PBE, 400 eV, k-point density 2/Å⁻¹: 4x4x4 on both cells). Training cells: the 4-atom
#: conventional cube (a rattled GPAW point takes minutes on one core); phonons: the 2x2x2 primitive supercell
#: (8 atoms; commensurate with X and L, so both are exact for its force constants)
GPAW_SETTINGS = {"kpts_density": 2.0, "ecut_ev": 400.0}
GPAW_CELLS = {"supercell": [[-1, 1, 1], [1, -1, 1], [1, 1, -1]], "phonon_supercell": 2}


def parent_structure(parent_name: str):
    """(Ni primitive cell at the parent's lattice, parent). EMT: relaxed with EMT. GPAW: the WIEN2k PBE volume
    from data/references (relaxing with GPAW costs more than the whole run)."""
    if parent_name == "emt":
        return relax(bulk("Ni", "fcc", a=3.52), emt_parent(), fmax=1e-3, progress=False).atoms, emt_parent()
    v0 = next(r["value"] for r in literature_values()["V0"] if r["method"] == "WIEN2k PBE")
    return bulk("Ni", "fcc", a=(4 * v0) ** (1 / 3)), gpaw_parent(**GPAW_SETTINGS)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("ci", "full"), default="ci")
    parser.add_argument("--models", nargs="+", default=["sevennet-0"])
    parser.add_argument("--parent", choices=("emt", "gpaw"), default="emt")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="default results/phonon_finetune[/<profile>[_gpaw]].json")
    args = parser.parse_args(argv)

    settings = {**SETTINGS[args.profile], **(GPAW_CELLS if args.parent == "gpaw" else {})}
    variant = "_".join(v for v, headline in ((args.profile, "full"), (args.parent, "emt")) if v != headline)
    out = Path(args.out or Path(__file__).parent / "results" / (f"phonon_finetune/{variant}.json" if variant
                                                                 else "phonon_finetune.json"))
    atoms, parent = parent_structure(args.parent)
    table = literature_values()
    report = {"benchmark": "phonon_finetune", "profile": args.profile, "parent": args.parent, "settings": settings,
              "lattice_parameter_angstrom": float(atoms.cell.cellpar()[0] * 2 ** 0.5),
              "command": "python benchmarks/phonon_finetune.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "models": {}}
    for name in args.models:
        calc = load_calculator(name, device=args.device, threads=args.threads)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="phonon-finetune-") as work:
            result = phonon_finetune(atoms, calc, parent, out=Path(work) / name, **settings)
        wall = time.perf_counter() - started
        experiment = {}
        for label in ("X", "L"):
            for model, freqs in result.qpoint_frequencies(label).items():
                for branch, value in (("TA", freqs[0]), ("LA", freqs[2])):
                    experiment.setdefault(model, {})[f"phonon_{label}_{branch}"] = compare_to_reference(
                        f"phonon_{label}_{branch}", float(value), table)
        report["models"][name] = {
            **result.summary(),
            "forces_mae_ev_per_angstrom_base": result.forces_mae_ev_per_angstrom_base,
            "forces_mae_ev_per_angstrom_finetuned": result.forces_mae_ev_per_angstrom_finetuned,
            "finetune_seconds_per_parent_second": result.finetune_seconds / result.parent_seconds,
            "finetune_epochs_run": result.finetune_report.epochs_run,
            "finetune_best_epoch": result.finetune_report.best_epoch,
            "x_and_l_against_experiment": experiment,
            "wall_s": wall,
            "model": model_info(calc).to_dict(),
        }
        print(f"{name}: frequency MAE vs {args.parent} {result.frequency_mae_thz_base:.3f} -> "
              f"{result.frequency_mae_thz_finetuned:.3f} THz (ratio {result.mae_ratio_finetuned_over_base:.3f}); "
              f"mean frequency ratio {result.mean_frequency_ratio_base:.3f} -> "
              f"{result.mean_frequency_ratio_finetuned:.3f}; {wall:.0f} s", flush=True)
        atomic_write_json(out, report)  # keep what is done if a later model fails
    report["provenance"] = benchmark_provenance(__file__, argv, None, profile=args.profile, parent=args.parent,
                                                models=args.models,
                                      threads=args.threads, **settings)
    atomic_write_json(out, report)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
