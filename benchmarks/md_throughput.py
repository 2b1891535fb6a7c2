"""MD throughput: the overhead of ``run_md`` over a bare ASE loop, and atom-steps/s of uMLIPs on tobermorite.

    python benchmarks/md_throughput.py [--profile ci|full]

1. Overhead: the same NVE run (same calculator, velocities and step count) through ``run_md`` (guard every step,
   CSV log every step, trajectory every 10 steps, progress bar) and through a bare ``VelocityVerlet.run``, back to
   back ``pairs`` times in alternating order, all in CPU time of this process (threads 1). The calculator's
   ``calculate`` is timed apart, so each run splits into force time (the same work in both, but the part that
   other jobs on a shared machine inflate most) and the time outside it (integrator plus run_md's bookkeeping).
   Headline: (F + O_run_md) / (F + O_bare), with F the median force time of all runs and O the median time
   outside the force calls of each kind. Beside it: the median over pairs of the plain CPU-time ratio, the
   wall-time ratio of the fastest runs, and a control that pairs the bare loop with itself (ideally 1), which
   shows how far the noise of the plain ratios reaches.
   EMT on a 108-atom Cu cell (cheap forces: the ratio shows the bookkeeping) and SevenNet-0 on a 32-atom Cu cell.
2. Throughput: atom-steps/s of SevenNet-0 and CHGNet 0.3.0 on the 352-atom tobermorite cell at 1 and 2 torch
   threads (NVT Langevin, 300 K). The CPU is shared with other jobs, so these numbers are noisy; compare ratios
   taken in one run.
3. Batched evaluation: 32 strained, rattled 8-atom Cu and Ni cells (an EOS or elastic sweep) evaluated with
   SevenNet-0 one by one through its ASE calculator, and in one batched call through torch-sim's SevenNet model
   (same weights); energy, forces and stress each way, ratio of times, and the largest difference in energy and
   force between the two. Skipped when torch-sim (PyPI: torch-sim-atomistic) is not installed.

Writes benchmarks/results/md_throughput.json (full profile) or md_throughput/<profile>.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
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
from umlip_helpers.io import atomic_write_json, benchmark_provenance  # noqa: E402
from umlip_helpers.md import run_md  # noqa: E402
from umlip_helpers.models import load_calculator, set_threads  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "md_throughput.json"
SETTINGS = {
    "ci": {"emt_steps": 60, "emt_pairs": 15, "sevennet_steps": 15, "sevennet_pairs": 3, "tobermorite_steps": 1,
           "threads": (1, 2), "batch_cells": 32, "batch_repeats": 3},
    "full": {"emt_steps": 1000, "emt_pairs": 15, "sevennet_steps": 50, "sevennet_pairs": 5, "tobermorite_steps": 20,
             "threads": (1, 2), "batch_cells": 128, "batch_repeats": 3},
}
TIMESTEP_FS = 1.0
TEMPERATURE_K = 300.0


def clocks() -> np.ndarray:
    """(wall, CPU time of this process) in seconds."""
    return np.array([time.perf_counter(), time.process_time()])


class ForceClock:
    """Counts the CPU seconds spent inside ``calc.calculate`` (the force calls), by wrapping that bound method."""

    def __init__(self, calc):
        self.seconds = 0.0
        inner = calc.calculate

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.process_time() - start

        calc.calculate = timed


def timed_run(force_clock: ForceClock, function) -> np.ndarray:
    """(wall, CPU, CPU inside force calls) seconds of ``function()``."""
    force_clock.seconds = 0.0
    start = clocks()
    function()
    return np.r_[clocks() - start, force_clock.seconds]


def bare_ase_seconds(atoms, calc, steps: int, force_clock: ForceClock) -> np.ndarray:
    work = atoms.copy()
    work.calc = calc
    thermalize_momenta(work, TEMPERATURE_K, rng=np.random.default_rng(0))
    Stationary(work)
    return timed_run(force_clock, lambda: VelocityVerlet(work, timestep=TIMESTEP_FS * units.fs).run(steps))


def run_md_seconds(atoms, calc, steps: int, force_clock: ForceClock) -> np.ndarray:
    with tempfile.TemporaryDirectory() as out:
        return timed_run(force_clock, lambda: run_md(
            atoms, calc, "nve", temperature_k=TEMPERATURE_K, timestep_fs=TIMESTEP_FS, steps=steps, out_dir=out,
            traj_interval=10, log_interval=1, seed=0, progress=True))


def paired_ratios(first, second, pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times (pairs x (wall, cpu)) of ``first()`` and ``second()`` run back to back, alternating which goes first,
    and their ratios second / first."""
    a, b = [], []
    for k in range(pairs):
        if k % 2 == 0:
            a.append(first())
            b.append(second())
        else:
            b.append(second())
            a.append(first())
    a, b = np.array(a), np.array(b)
    return a, b, b / a


def overhead(label: str, atoms, calc, steps: int, pairs: int) -> dict:
    force_clock = ForceClock(calc)
    run_md_seconds(atoms, calc, 2, force_clock)  # first use imports the neighbour list, fills caches
    bare_ase_seconds(atoms, calc, 2, force_clock)
    bare, wrapped, ratio = paired_ratios(lambda: bare_ase_seconds(atoms, calc, steps, force_clock),
                                         lambda: run_md_seconds(atoms, calc, steps, force_clock), pairs)
    _, _, control = paired_ratios(lambda: bare_ase_seconds(atoms, calc, steps, force_clock),
                                  lambda: bare_ase_seconds(atoms, calc, steps, force_clock), pairs)
    force_s = float(np.median(np.r_[bare[:, 2], wrapped[:, 2]]))
    outside_bare_s = float(np.median(bare[:, 1] - bare[:, 2]))
    outside_run_md_s = float(np.median(wrapped[:, 1] - wrapped[:, 2]))
    return {"system": label, "n_atoms": len(atoms), "steps": steps, "pairs": pairs,
            "ratio_run_md_over_bare": (force_s + outside_run_md_s) / (force_s + outside_bare_s),
            "force_cpu_s": force_s, "outside_forces_bare_cpu_s": outside_bare_s,
            "outside_forces_run_md_cpu_s": outside_run_md_s,
            "ratio_paired_cpu_median": float(np.median(ratio[:, 1])),
            "ratio_quartiles_cpu": np.percentile(ratio[:, 1], [25, 75]).tolist(),
            "ratio_min_wall": float(wrapped[:, 0].min() / bare[:, 0].min()),
            "control_bare_over_bare_cpu": float(np.median(control[:, 1])),
            "bare_ase_cpu_s": float(np.median(bare[:, 1])), "run_md_cpu_s": float(np.median(wrapped[:, 1])),
            "all_bare_wall_s": bare[:, 0].tolist(), "all_run_md_wall_s": wrapped[:, 0].tolist()}


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


def sweep_cells(n_cells: int) -> list:
    """Strained (-3 % to +3 %) and rattled 8-atom fcc cells, Cu and Ni alternating."""
    cells = []
    for k in range(n_cells):
        element, a = ("Cu", 3.61) if k % 2 == 0 else ("Ni", 3.52)
        atoms = bulk(element, "fcc", a=a * (0.97 + 0.06 * k / max(n_cells - 1, 1)), cubic=True).repeat((2, 1, 1))
        atoms.rattle(0.02, seed=k)
        cells.append(atoms)
    return cells


def torch_sim_batched(n_cells: int, repeats: int) -> dict:
    """One batched torch-sim call against a loop of ASE calculator calls, SevenNet-0 on CPU, 1 thread."""
    if importlib.util.find_spec("torch_sim") is None:
        return {"skipped": "torch-sim is not installed (pip install torch-sim-atomistic==0.3.0)"}
    import sevenn.calculator
    import torch
    from sevenn.util import load_checkpoint, pretrained_name_to_path

    # torch-sim 0.3.0 imports sevenn.calculator.torch_script_type, which sevenn 0.13 no longer defines; without it
    # torch_sim.models.sevennet silently stubs its imports. It only names the TorchScript type it checks against.
    if not hasattr(sevenn.calculator, "torch_script_type"):
        sevenn.calculator.torch_script_type = torch.jit.ScriptModule
    import torch_sim
    from torch_sim.models.sevennet import SevenNetModel

    try:
        calc = load_calculator("sevennet-0", device="cpu", threads=1)
    except (ModelUnavailable, ImportError) as exc:
        return {"skipped": str(exc)}
    # a second copy of the weights: torch-sim switches its model to batched input
    batched_model = SevenNetModel(model=load_checkpoint(pretrained_name_to_path("7net-0")).build_model(),
                                  device="cpu")
    cells = sweep_cells(n_cells)

    def one_by_one():
        results = []
        for atoms in cells:
            atoms = atoms.copy()
            atoms.calc = calc
            results.append((atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
        return results

    def batched():
        state = torch_sim.io.atoms_to_state(cells, device=torch.device("cpu"), dtype=torch.float32)
        return batched_model(state)

    reference, result = one_by_one(), batched()  # warm-up, and the comparison of numbers
    batched_s, loop_s, speedup = paired_ratios(lambda: clocks_of(batched), lambda: clocks_of(one_by_one), repeats)
    energy_error = np.abs(np.array([r[0] for r in reference]) - result["energy"].numpy()).max()
    force_error = np.abs(np.concatenate([r[1] for r in reference]) - result["forces"].numpy()).max()
    return {"model": "sevennet-0", "device": "cpu", "threads": 1, "n_cells": n_cells,
            "atoms_per_cell": len(cells[0]), "repeats": repeats,
            "torch_sim_version": importlib.metadata.version("torch-sim-atomistic"),
            "loop_cpu_s": float(np.median(loop_s[:, 1])), "batched_cpu_s": float(np.median(batched_s[:, 1])),
            "speedup_batched_over_loop_cpu": float(np.median(speedup[:, 1])),
            "speedup_batched_over_loop_wall": float(np.median(speedup[:, 0])),
            "max_energy_difference_ev": float(energy_error), "max_force_difference_ev_per_angstrom": float(force_error)}


def clocks_of(function) -> np.ndarray:
    start = clocks()
    function()
    return clocks() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", choices=sorted(SETTINGS), default="ci")
    args = parser.parse_args()
    settings = SETTINGS[args.profile]
    start = time.perf_counter()
    set_threads(1)

    from ase.calculators.emt import EMT

    overheads = [overhead("Cu fcc 3x3x3 cubic, EMT", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3), EMT(),
                          settings["emt_steps"], settings["emt_pairs"])]
    try:
        sevennet = load_calculator("sevennet-0", device="cpu", threads=1)
        overheads.append(overhead("Cu fcc 2x2x2 cubic, SevenNet-0", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2),
                                  sevennet, settings["sevennet_steps"], settings["sevennet_pairs"]))
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
        "torch_sim_batched": torch_sim_batched(settings["batch_cells"], settings["batch_repeats"]),
        "cpu_count": os.cpu_count(),
        "noise": "shared CPU: other jobs run at the same time; timings vary by tens of percent between runs",
        "wall_s": time.perf_counter() - start,
        "provenance": benchmark_provenance(__file__, None, None, **settings, timestep_fs=TIMESTEP_FS,
                                           temperature_k=TEMPERATURE_K),
    }
    atomic_write_json(RESULTS if args.profile == "full" else RESULTS.parent / "md_throughput" / f"{args.profile}.json",
                      summary)
    for row in overheads:
        if "ratio_run_md_over_bare" in row:
            print(f"{row['system']}: run_md / bare ASE = {row['ratio_run_md_over_bare']:.3f} ({row['steps']} "
                  f"steps; force calls {row['force_cpu_s']:.2f} s CPU, outside them "
                  f"{1000 * row['outside_forces_run_md_cpu_s']:.0f} ms vs {1000 * row['outside_forces_bare_cpu_s']:.0f}"
                  f" ms bare). Plain ratios: median of {row['pairs']} pairs {row['ratio_paired_cpu_median']:.3f} "
                  f"CPU (quartiles {row['ratio_quartiles_cpu'][0]:.3f}-{row['ratio_quartiles_cpu'][1]:.3f}), "
                  f"fastest wall {row['ratio_min_wall']:.3f}; "
                  f"bare/bare control {row['control_bare_over_bare_cpu']:.3f}")
    for rate in rates:
        if "atom_steps_per_s" in rate:
            print(f"{rate['model']} {rate['threads']} thread(s): {rate['atom_steps_per_s']:.1f} atom-steps/s "
                  f"({rate['seconds_per_step']:.2f} s/step on {rate['n_atoms']} atoms)")
        else:
            print(f"{rate['model']}: {rate['error']}")
    batch = summary["torch_sim_batched"]
    if "skipped" in batch:
        print(f"torch-sim batched evaluation: skipped ({batch['skipped']})")
    else:
        print(f"torch-sim: {batch['n_cells']} cells of {batch['atoms_per_cell']} atoms, one batched call is "
              f"{batch['speedup_batched_over_loop_cpu']:.2f}x the speed of the ASE loop (CPU time; wall "
              f"{batch['speedup_batched_over_loop_wall']:.2f}x); max |dE| {batch['max_energy_difference_ev']:.1e} eV")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
