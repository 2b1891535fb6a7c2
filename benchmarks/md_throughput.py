"""MD throughput: the overhead of ``run_md`` over a bare ASE loop, and atom-steps/s of uMLIPs on tobermorite.

    python benchmarks/md_throughput.py [--profile ci|full]

1. Overhead: the same NVE run (same calculator, velocities and step count) through ``run_md`` (guard every step,
   CSV log every step, trajectory every 10 steps, progress bar) and through a bare ``VelocityVerlet.run``; the
   ratio of wall times, best of ``repeats`` alternating runs. EMT on a 108-atom Cu cell (cheap forces: the ratio
   shows the bookkeeping) and SevenNet-0 on a 32-atom Cu cell.
2. Throughput: atom-steps/s of SevenNet-0 and CHGNet 0.3.0 on the 352-atom tobermorite cell at 1 and 2 torch
   threads (NVT Langevin, 300 K). The CPU is shared with other jobs, so these numbers are noisy; compare ratios
   taken in one run.
3. Batched evaluation (torch-sim) is not measured; see ``torch_sim`` in the JSON for why.

Writes benchmarks/results/md_throughput.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.md.velocitydistribution import Stationary, thermalize_momenta  # noqa: E402
from ase.md.verlet import VelocityVerlet  # noqa: E402
from ase import units  # noqa: E402

from umlip_helpers.analysis import read_tobermorite  # noqa: E402
from umlip_helpers.errors import ModelUnavailable  # noqa: E402
from umlip_helpers.io import atomic_write_json, provenance  # noqa: E402
from umlip_helpers.md import run_md  # noqa: E402
from umlip_helpers.models import load_calculator, set_threads  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "md_throughput.json"
SETTINGS = {
    "ci": {"emt_steps": 60, "sevennet_steps": 15, "repeats": 3, "tobermorite_steps": 1, "threads": (1, 2)},
    "full": {"emt_steps": 1000, "sevennet_steps": 50, "repeats": 3, "tobermorite_steps": 20, "threads": (1, 2)},
}
TIMESTEP_FS = 1.0
TEMPERATURE_K = 300.0


def bare_ase_seconds(atoms, calc, steps: int) -> float:
    work = atoms.copy()
    work.calc = calc
    thermalize_momenta(work, TEMPERATURE_K, rng=np.random.default_rng(0))
    Stationary(work)
    start = time.perf_counter()
    VelocityVerlet(work, timestep=TIMESTEP_FS * units.fs).run(steps)
    return time.perf_counter() - start


def run_md_seconds(atoms, calc, steps: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_md(atoms, calc, "nve", temperature_k=TEMPERATURE_K, timestep_fs=TIMESTEP_FS, steps=steps, out_dir=out,
               traj_interval=10, log_interval=1, seed=0, progress=True)
        return time.perf_counter() - start


def overhead(label: str, atoms, calc, steps: int, repeats: int) -> dict:
    bare, wrapped = [], []
    for _ in range(repeats):
        bare.append(bare_ase_seconds(atoms, calc, steps))
        wrapped.append(run_md_seconds(atoms, calc, steps))
    return {"system": label, "n_atoms": len(atoms), "steps": steps, "repeats": repeats,
            "bare_ase_s": min(bare), "run_md_s": min(wrapped), "ratio_run_md_over_bare": min(wrapped) / min(bare),
            "all_bare_s": bare, "all_run_md_s": wrapped}


def throughput(model: str, threads: int, steps: int) -> dict:
    set_threads(threads)
    try:
        calc = load_calculator(model, device="cpu", threads=threads)
    except (ModelUnavailable, ImportError) as exc:
        return {"model": model, "threads": threads, "error": str(exc)}
    result = run_md(read_tobermorite(), calc, "nvt", temperature_k=TEMPERATURE_K, timestep_fs=0.5, steps=steps,
                    seed=0, progress=True)
    return {"model": model, "threads": threads, "steps": steps, "n_atoms": result.n_atoms,
            "atom_steps_per_s": result.throughput_atom_steps_per_s,
            "seconds_per_step": result.n_atoms / result.throughput_atom_steps_per_s, "wall_s": result.wall_time_s}


def torch_sim_status() -> dict:
    installed = importlib.util.find_spec("torch_sim") is not None
    return {
        "installed": installed,
        "note": ("`pip install --dry-run torch-sim-atomistic` (0.3.0) resolves without replacing torch 2.13.0; it "
                 "would add tables, blosc2, numexpr, vesin-torch and a few small packages. It is not in "
                 "requirements/base.txt, so batched evaluation of many small systems is not measured here; "
                 "add it to the pins to measure it against a loop of run_md calls."),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(SETTINGS), default="ci")
    args = parser.parse_args()
    settings = SETTINGS[args.profile]
    start = time.perf_counter()
    set_threads(1)

    from ase.calculators.emt import EMT

    overheads = [overhead("Cu fcc 3x3x3 cubic, EMT", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3), EMT(),
                          settings["emt_steps"], settings["repeats"])]
    try:
        sevennet = load_calculator("sevennet-0", device="cpu", threads=1)
        overheads.append(overhead("Cu fcc 2x2x2 cubic, SevenNet-0", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2),
                                  sevennet, settings["sevennet_steps"], settings["repeats"]))
    except (ModelUnavailable, ImportError) as exc:
        overheads.append({"system": "SevenNet-0", "error": str(exc)})

    rates = [throughput(model, threads, settings["tobermorite_steps"])
             for model in ("sevennet-0", "chgnet-0.3.0") for threads in settings["threads"]]
    set_threads(1)
    for rate in rates:
        same_model_1 = next((r for r in rates if r["model"] == rate["model"] and r["threads"] == 1
                             and "atom_steps_per_s" in r), None)
        if same_model_1 and "atom_steps_per_s" in rate:
            rate["speedup_over_1_thread"] = rate["atom_steps_per_s"] / same_model_1["atom_steps_per_s"]

    summary = {
        "benchmark": "md_throughput",
        "profile": args.profile,
        "command": f"python benchmarks/md_throughput.py --profile {args.profile}",
        "overhead": overheads,
        "tobermorite_throughput": rates,
        "torch_sim": torch_sim_status(),
        "cpu_count": os.cpu_count(),
        "noise": "shared CPU: other jobs run at the same time; timings vary by tens of percent between runs",
        "wall_s": time.perf_counter() - start,
        "provenance": provenance(None, **settings, timestep_fs=TIMESTEP_FS, temperature_k=TEMPERATURE_K),
    }
    atomic_write_json(RESULTS, summary)
    for row in overheads:
        if "ratio_run_md_over_bare" in row:
            print(f"{row['system']}: run_md / bare ASE = {row['ratio_run_md_over_bare']:.3f} "
                  f"({row['run_md_s']:.2f} s vs {row['bare_ase_s']:.2f} s, {row['steps']} steps)")
    for rate in rates:
        if "atom_steps_per_s" in rate:
            print(f"{rate['model']} {rate['threads']} thread(s): {rate['atom_steps_per_s']:.1f} atom-steps/s "
                  f"({rate['seconds_per_step']:.2f} s/step on {rate['n_atoms']} atoms)")
        else:
            print(f"{rate['model']}: {rate['error']}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
