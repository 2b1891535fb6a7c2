"""FCC Ni properties of every offline uMLIP against the literature values in data/references.

    python benchmarks/ni_properties.py [--profile ci|full] [--models sevennet-0 chgnet-0.3.0 emt]

Per model: relaxed cubic cell; equation of state (a0, B0); elastic constants (C11, C12, C44); phonons at X and L;
relaxed vacancy formation energy; generalized stacking fault on (111) along <112> (ISF, unstable SFE); (111),
(100) and (110) surface energies; the Σ3(111) twin, Σ5(310)[001] and Σ5(210)[001] grain-boundary energies; the
vacancy migration barrier (climbing-image NEB) and the self-diffusion activation energy Q = E_f + E_m (E_f from the
vacancy row). Each value carries its preferred reference from data/references and the percent
error (None where no reference has been read yet). "ci" uses small cells (minutes on a laptop CPU), "full" the
converged sizes. Wall time per property and in total; speed as a ratio to the first model of the run.
Writes benchmarks/results/ni_properties.json (full profile) or ni_properties/ci.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from ase.build import bulk  # noqa: E402

from umlip_helpers.io import atomic_write_json, benchmark_provenance, model_info  # noqa: E402
from umlip_helpers.models import MODELS, load_calculator, model_status  # noqa: E402
from umlip_helpers.properties import (fcc_lattice_parameter, generalized_stacking_fault, grain_boundaries,  # noqa: E402
                                      migration, references, surface_energies, vacancy_formation_energy)
from umlip_helpers.properties.elastic import elastic_constants  # noqa: E402
from umlip_helpers.properties.eos import eos  # noqa: E402
from umlip_helpers.properties.phonons import phonons  # noqa: E402
from umlip_helpers.properties.relax import relax  # noqa: E402

SETTINGS = {
    "ci": {"fmax": 0.02, "vacancy_sizes": (2,), "gsf_layers": 9, "gsf_points": 5, "surface_thickness": 8.0,
           "phonon_supercell": 3, "gb_separation": 5.0, "gb_grid": (2, 2), "gb_relaxed": 1, "neb_supercell": 2,
           "neb_images": 3},
    "full": {"fmax": 0.005, "vacancy_sizes": (2, 3, 4), "gsf_layers": 12, "gsf_points": 11,
             "surface_thickness": 14.0, "phonon_supercell": 4, "gb_separation": 12.0, "gb_grid": (4, 4),
             "gb_relaxed": 3, "neb_supercell": 3, "neb_images": 5},
}


def offline_models() -> list[str]:
    available = []
    for name, spec in MODELS.items():
        try:
            if model_status(spec)[0]:
                available.append(name)
        except ImportError:  # the family's module or package is missing here
            continue
    return available


def run_model(calc, settings: dict, only=None) -> tuple[dict, dict]:
    """(results by property, wall seconds by property) for FCC Ni with one calculator. ``only``: the keys to compute
    (eos, elastic, phonons, vacancy, stacking_fault, surfaces, gb_<boundary>, migration; default all); the relaxed
    cubic cell ("relax") is always computed."""
    fmax = settings["fmax"]
    timings, results = {}, {}

    def timed(key, func, *args, **kwargs):
        if only is not None and key != "relax" and key not in only:
            return None
        start = time.perf_counter()
        results[key] = func(*args, **kwargs)
        timings[key] = time.perf_counter() - start
        return results[key]

    cubic = timed("relax", relax, bulk("Ni", "fcc", a=3.52, cubic=True), calc, fmax=min(fmax, 0.005),
                  progress=False).atoms
    timed("eos", eos, cubic, calc, progress=False)
    timed("elastic", elastic_constants, cubic, calc, progress=False)
    a0 = fcc_lattice_parameter(cubic)[1]
    timed("phonons", phonons, bulk("Ni", "fcc", a=a0), calc, supercell=settings["phonon_supercell"], mesh=10,
          progress=False)
    timed("vacancy", vacancy_formation_energy, cubic, calc, sizes=settings["vacancy_sizes"], fmax=fmax,
          progress=False)
    timed("stacking_fault", generalized_stacking_fault, cubic, calc, n_layers=settings["gsf_layers"],
          n_points=settings["gsf_points"], fmax=fmax, progress=False)
    timed("surfaces", surface_energies, cubic, calc, thickness_angstrom=settings["surface_thickness"],
          fmax=fmax, progress=False)
    for boundary in grain_boundaries.BOUNDARIES:
        gb_settings = grain_boundaries.GrainBoundarySettings(
            boundary=boundary, separation_angstrom=settings["gb_separation"], translation_grid=settings["gb_grid"],
            n_relaxed=settings["gb_relaxed"], fmax=fmax, progress=False)
        timed(f"gb_{boundary}", grain_boundaries.compute, cubic, calc, gb_settings)
    timed("migration", migration.compute, cubic, calc, migration.MigrationSettings(
        supercell=settings["neb_supercell"], n_images=settings["neb_images"], fmax=max(fmax, 0.03),
        endpoint_fmax=fmax, with_formation_energy=False, progress=False))
    return results, timings


def new_rows(results: dict, table: dict) -> list[dict]:
    """Grain-boundary, migration and self-diffusion rows (Q from the vacancy row's E_f and the NEB barrier)."""
    boundaries = [results[f"gb_{b}"] for b in grain_boundaries.BOUNDARIES]
    rows = grain_boundaries.comparison_rows(boundaries, table) + migration.comparison_rows(results["migration"], table)
    q = results["vacancy"].e_vac_ev + results["migration"].barrier_ev
    return rows + [{"property": "self_diffusion_activation_energy",
                    **references.compare_to_reference("self_diffusion_activation_energy", q, table), "unit": "eV"}]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("ci", "full"), default="full")
    parser.add_argument("--models", nargs="+", default=None, help="default: every model available offline")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/ni_properties[/ci].json)")
    args = parser.parse_args(argv)

    models = args.models or offline_models()
    settings = SETTINGS[args.profile]
    out = Path(args.out or Path(__file__).parent / "results" /
               f"ni_properties{'/ci' if args.profile == 'ci' else ''}.json")
    table = references.literature_values()
    report = {"benchmark": "ni_properties", "profile": args.profile, "settings": settings,
              "command": "python benchmarks/ni_properties.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "models": {}}
    for name in models:
        calc = load_calculator(name, device=args.device, threads=args.threads)
        start = time.perf_counter()
        results, timings = run_model(calc, settings)
        wall = time.perf_counter() - start
        rows = references.comparison_rows(results, table) + new_rows(results, table)
        report["models"][name] = {
            "properties": {row["property"]: row for row in rows},
            "stacking_fault_curve_mj_m2": results["stacking_fault"].gamma_mj_m2,
            "vacancy_by_size_ev": dict(zip(results["vacancy"].n_atoms, results["vacancy"].e_vac_by_size_ev)),
            "surface_layers": results["surfaces"].n_layers,
            "grain_boundaries": {b: results[f"gb_{b}"].summary() | {"excess_volume_angstrom":
                                                                   results[f"gb_{b}"].excess_volume_angstrom}
                                 for b in grain_boundaries.BOUNDARIES},
            "migration": results["migration"].summary() | {
                "path_energies_ev": results["migration"].path_energies_ev,
                "reaction_coordinate_angstrom": results["migration"].reaction_coordinate_angstrom},
            "wall_s": wall,
            "wall_s_by_property": timings,
            "model": model_info(calc).to_dict(),
        }
        line = ", ".join(f"{r['property']} {r['value']:.4g}" + (f" ({r['percent_error']:+.1f}%)"
                                                                 if r["percent_error"] is not None else "")
                         for r in rows)
        print(f"{name} ({wall:.0f} s): {line}", flush=True)
        atomic_write_json(out, report)  # keep what is done if a later model fails
    baseline = report["models"][models[0]]["wall_s"]
    for entry in report["models"].values():
        entry["speed_relative_to_first_model"] = baseline / entry["wall_s"]
    report["provenance"] = benchmark_provenance(__file__, argv, None, profile=args.profile, models=models,
                                                threads=args.threads, **settings)
    atomic_write_json(out, report)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
