"""Delta gauge of uMLIPs against the WIEN2k PBE equations of state of the Delta test's 71 elemental crystals.

    python benchmarks/delta_elements.py [--profile ci|full] [--models sevennet-0 chgnet-0.3.0]

Each element: 7 volumes from 0.94 to 1.06 of the WIEN2k V0 (ase.collections.dcdft cells, shape fixed), a
Birch–Murnaghan fit, Δ in meV/atom (umlip_helpers.properties.eos.delta_benchmark). "ci" runs six elements,
"full" all 71. Speed is reported per energy call and as a ratio to the first model of the run.
Writes benchmarks/results/delta_elements.json (or delta_elements/ci.json for the ci profile).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402
from umlip_helpers.properties.eos import delta_benchmark, load_delta_reference  # noqa: E402

CI_ELEMENTS = ["Al", "Si", "Fe", "Ni", "Cu", "W"]
NPOINTS = 7


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=("ci", "full"), default="full")
    parser.add_argument("--models", nargs="+", default=["sevennet-0", "chgnet-0.3.0"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/delta_elements[/ci].json)")
    args = parser.parse_args(argv)

    elements = CI_ELEMENTS if args.profile == "ci" else list(load_delta_reference())
    out = Path(args.out or Path(__file__).parent / "results" /
               f"delta_elements{'/ci' if args.profile == 'ci' else ''}.json")
    report = {"benchmark": "delta_elements", "profile": args.profile,
              "command": "python benchmarks/delta_elements.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "elements": elements, "npoints": NPOINTS, "models": {}}
    for name in args.models:
        calc = load_calculator(name, device=args.device, threads=args.threads)
        start = time.perf_counter()
        result = delta_benchmark(calc, elements, npoints=NPOINTS)
        wall = time.perf_counter() - start
        calls = NPOINTS * (result.n_elements + result.n_failed)
        entry = {**result.to_dict(), "wall_s": wall, "energy_calls": calls, "s_per_call": wall / max(calls, 1)}
        if "Ni" in result.v0_angstrom3_per_atom:
            entry["ni"] = {"a0_angstrom": (4 * result.v0_angstrom3_per_atom["Ni"]) ** (1 / 3),
                           "b0_gpa": result.b0_gpa["Ni"], "delta_mev_per_atom": result.delta_mev_per_atom["Ni"]}
        report["models"][name] = entry
        print(f"{name}: mean Δ {result.mean_delta_mev_per_atom:.2f}, median {result.median_delta_mev_per_atom:.2f} "
              f"meV/atom over {result.n_elements} elements; fit failed: {', '.join(result.failed) or 'none'}; "
              f"not covered: {', '.join(result.skipped) or 'none'}; {wall:.0f} s",
              flush=True)
    baseline = report["models"][args.models[0]]["s_per_call"]
    for entry in report["models"].values():
        entry["speed_relative_to_first_model"] = baseline / entry["s_per_call"]
    report["provenance"] = benchmark_provenance(__file__, argv, None, profile=args.profile, models=args.models,
                                                threads=args.threads)
    atomic_write_json(out, report)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
