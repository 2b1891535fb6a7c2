"""Large-scale MD: LAMMPS with the exported model against the project's ASE ``run_md`` with the same model.

    python benchmarks/lammps_md.py [--profile ci|full] [--resume]

SevenNet-0 is exported once (``umlip_helpers.export.export_model``, pair_style e3gnn); then, for each system, the
same NVT run (Langevin, 300 K, 1 fs, velocities drawn from the same seed) goes through ASE (``run_md`` with the
model's ASE calculator) and through LAMMPS (``run_lammps_md``, the exported model), one after the other, each in a
fresh process with one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``), so that a process's peak
resident memory (``ru_maxrss``) is that engine's at that size.

Timed: the MD steps only. LAMMPS: its own "Loop time" (after set-up and the initial forces). ASE: the wall time
of ``run_md`` after one force call on the start structure (the one ``run_md`` then reuses). Both include the
neighbour lists. Systems: FCC Ni supercells (4 atoms × n³) and tobermorite 11 Å (352 atoms) and its 2×2×2 repeat.
The number of steps per system is about ``atom_steps[model]`` / atoms (at least ``min_steps``), so every point costs
about the same. Headline: the throughput ratio LAMMPS / ASE at the largest Ni cell; beside it, the exponent of a
power-law fit of time per step against atoms for each engine (1 = linear), and peak memory against atoms.

The machine is shared with other jobs; both engines run back to back on each system, so their ratio is taken under
the same load. ``--resume`` keeps the systems an interrupted run of the same settings finished.

Writes benchmarks/results/lammps_md.json and .png (full profile) or lammps_md/<profile>.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from umlip_helpers.io import atomic_write_json, benchmark_provenance, rows_to_resume  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SETTINGS = {
    "ci": {"ni_repeats": [2, 3], "tobermorite_repeats": [], "min_steps": 2, "max_steps": 10,
           "atom_steps": {"sevennet-0": 400, "sevennet-student": 4000}},
    "full": {"ni_repeats": [5, 6, 8, 10, 14], "tobermorite_repeats": [1, 2], "min_steps": 2, "max_steps": 40,
             "atom_steps": {"sevennet-0": 20000, "sevennet-student": 200000}},
}
#: a run is skipped when its peak memory, extrapolated linearly from the two smaller systems of that model and
#: engine, would pass this fraction of the memory available when the benchmark started
MEMORY_FRACTION = 0.6
#: the student architecture (models/sevennet.py SIZES["student"]: the size notebook 08 distils SevenNet-0 to), built
#: here with its initial weights: the cost of a step depends on the architecture and the neighbours, not on the
#: values of the weights, and it shows the scaling to 10,000 atoms that SevenNet-0 cannot reach in 24 GB
STUDENT = "sevennet-student"
MD = {"temperature_k": 300.0, "timestep_fs": 1.0, "friction_per_fs": 0.01, "seed": 7}


def build_system(kind: str, repeat: int):
    from ase.build import bulk

    if kind == "ni":
        return bulk("Ni", "fcc", a=3.52, cubic=True).repeat(repeat)
    from umlip_helpers.analysis import read_tobermorite
    from umlip_helpers.paths import data_path

    return read_tobermorite(data_path("tobermorite", "tobermorite_352.xyz")).repeat(repeat)


def steps_for(model: str, n_atoms: int, profile: dict) -> int:
    return int(np.clip(round(profile["atom_steps"][model] / n_atoms), profile["min_steps"], profile["max_steps"]))


def worker(engine: str, kind: str, repeat: int, steps: int, model: str, export_dir: str) -> dict:
    """One engine on one system, in this (fresh) process; prints nothing, returns the row."""
    from umlip_helpers.md import MDSettings

    atoms = build_system(kind, repeat)
    settings = MDSettings(steps=steps, traj_interval=steps + 1, log_interval=1, **MD)
    started = time.perf_counter()
    if engine == "lammps":
        from umlip_helpers.lammps.md import run_lammps_md

        with tempfile.TemporaryDirectory() as workdir:
            result = run_lammps_md(atoms, export_dir, workdir, settings)
        step_time, total = result.loop_time_s / steps, time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        mean_t = result.mean_temperature_k
    else:
        from umlip_helpers.md import run_md
        from umlip_helpers.models import load_calculator, set_threads

        set_threads(1)
        atoms.calc = load_calculator(model)
        atoms.get_forces()
        md_start = time.perf_counter()
        result = run_md(atoms, atoms.calc, settings=settings, progress=False)
        step_time, total = (time.perf_counter() - md_start) / steps, time.perf_counter() - started
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mean_t = result.mean_temperature_k
    return {"engine": engine, "seconds_per_step": step_time, "atom_steps_per_s": len(atoms) / step_time,
            "total_wall_s": total, "peak_rss_mb": peak_kb / 1024.0, "mean_temperature_k": mean_t}


def run_engine(engine: str, kind: str, repeat: int, steps: int, model: str, export_dir: str) -> dict:
    command = [sys.executable, __file__, "--worker", engine, kind, str(repeat), str(steps), model, export_dir]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        return {"engine": engine, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else
                f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def power_law_exponent(rows: list[dict], model: str, engine: str) -> float | None:
    """Slope of log(seconds per step) against log(atoms) over the Ni cells (1 = cost linear in atoms)."""
    points = [(r["n_atoms"], r[engine]["seconds_per_step"]) for r in rows
              if r["model"] == model and r["kind"] == "ni" and "seconds_per_step" in r.get(engine, {})]
    if len(points) < 2:
        return None
    n, t = np.log(np.array(points)).T
    return float(np.polyfit(n, t, 1)[0])


def predicted_peak_mb(rows: list[dict], model: str, engine: str, n_atoms: int) -> float | None:
    """Peak memory at ``n_atoms``, extrapolated linearly from the two largest finished runs of ``model``/``engine``."""
    points = sorted((r["n_atoms"], r[engine]["peak_rss_mb"]) for r in rows
                    if r["model"] == model and "peak_rss_mb" in r.get(engine, {}))[-2:]
    if len(points) < 2 or points[1][0] == points[0][0]:
        return None
    (n0, m0), (n1, m1) = points
    return m1 + (m1 - m0) / (n1 - n0) * (n_atoms - n1)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.8))
    styles = {("ase", "sevennet-0"): ("tab:blue", "-"), ("lammps", "sevennet-0"): ("tab:orange", "-"),
              ("ase", STUDENT): ("tab:blue", "--"), ("lammps", STUDENT): ("tab:orange", "--")}
    for (engine, model), (colour, line) in styles.items():
        for kind, marker in (("ni", "o"), ("tobermorite", "s")):
            pts = sorted((r["n_atoms"], r[engine]) for r in rows if r["model"] == model and r["kind"] == kind
                         and "seconds_per_step" in r.get(engine, {}))
            if not pts:
                continue
            n = [p[0] for p in pts]
            label = f"{'LAMMPS e3gnn' if engine == 'lammps' else 'ASE run_md'}, {model}, {kind}"
            ax_t.loglog(n, [p[1]["seconds_per_step"] for p in pts], marker=marker, color=colour, ls=line,
                        label=label)
            ax_m.loglog(n, [p[1]["peak_rss_mb"] / 1024 for p in pts], marker=marker, color=colour, ls=line)
    ax_t.set(xlabel="atoms", ylabel="seconds per MD step (1 CPU thread)")
    ax_m.set(xlabel="atoms", ylabel="peak resident memory (GB)")
    fig.legend(*ax_t.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize="small")
    fig.suptitle("MD cost against system size on CPU: LAMMPS and ASE with the same model")
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def measure(model: str, system: tuple[str, int], profile: dict, export_dir: str, model_path: str,
            rows: list[dict], memory_limit_mb: float) -> dict:
    kind, repeat = system
    n_atoms = len(build_system(kind, repeat))
    steps = steps_for(model, n_atoms, profile)
    row = {"system": f"{model}:{kind}x{repeat}", "model": model, "kind": kind, "repeat": repeat,
           "n_atoms": n_atoms, "steps": steps}
    for engine in ("ase", "lammps"):
        predicted = predicted_peak_mb(rows, model, engine, n_atoms)
        if predicted is not None and predicted > memory_limit_mb:
            row[engine] = {"engine": engine, "skipped": f"predicted peak memory {predicted / 1024:.1f} GB > "
                           f"{memory_limit_mb / 1024:.1f} GB ({MEMORY_FRACTION:.0%} of the memory available)"}
        else:
            row[engine] = run_engine(engine, kind, repeat, steps, model_path, export_dir)
    if "atom_steps_per_s" in row["ase"] and "atom_steps_per_s" in row["lammps"]:
        row["lammps_over_ase_throughput"] = row["lammps"]["atom_steps_per_s"] / row["ase"]["atom_steps_per_s"]
    return row


def available_mb() -> float:
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return float(fields["MemAvailable"].split()[0]) / 1024.0


def model_path(model: str, where: Path) -> str:
    """A registered name as it is; the student architecture built into ``where`` (elements of every system)."""
    if model != STUDENT:
        return model
    from umlip_helpers.models import get_family

    return str(get_family("sevennet").build(where / "student.pth", ["Ni", "Ca", "Si", "O", "H"], seed=0,
                                            size="student"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(SETTINGS), default="ci")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    profile = SETTINGS[args.profile]
    stem = "lammps_md" if args.profile == "full" else f"lammps_md/{args.profile}"
    out_json, out_png = RESULTS / f"{stem}.json", RESULTS / f"{stem}.png"
    from tqdm.auto import tqdm

    from umlip_helpers.export import export_model
    from umlip_helpers.lammps import lammps_version

    memory_limit_mb = MEMORY_FRACTION * available_mb()
    record = benchmark_provenance(__file__, argv, None, profile=args.profile, md=MD, threads=1, **profile)
    done = rows_to_resume(out_json, record) if args.resume else {}
    systems = [("ni", n) for n in profile["ni_repeats"]] + [("tobermorite", n) for n in profile["tobermorite_repeats"]]
    rows: list[dict] = []
    checks = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model in profile["atom_steps"]:
            path = model_path(model, Path(scratch))
            export_dir = Path(scratch) / f"export-{model}"
            checks[model] = export_model(path, out=export_dir, elements=["Ni", "Ca", "Si", "O", "H"]).lammps_check
            for system in tqdm(systems, desc=f"lammps_md {model}"):
                name = f"{model}:{system[0]}x{system[1]}"
                rows.append(done.get(name) or measure(model, system, profile, str(export_dir), path, rows,
                                                      memory_limit_mb))
                result = summarise(rows, record, checks, lammps_version(), memory_limit_mb)
                atomic_write_json(out_json, result)
    plot(rows, out_png)
    result["plot"] = str(out_png.relative_to(ROOT))
    atomic_write_json(out_json, result)
    return result


def summarise(rows: list[dict], record: dict, checks: dict, version: str | None, memory_limit_mb: float) -> dict:
    headline = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        ni = [r for r in rows if r["model"] == model and r["kind"] == "ni" and "lammps_over_ase_throughput" in r]
        largest = max(ni, key=lambda r: r["n_atoms"]) if ni else None
        headline[model] = {
            "largest_ni_atoms_both_engines": largest and largest["n_atoms"],
            "lammps_over_ase_throughput": largest and largest["lammps_over_ase_throughput"],
            "lammps_atom_steps_per_s": largest and largest["lammps"]["atom_steps_per_s"],
            "ase_atom_steps_per_s": largest and largest["ase"]["atom_steps_per_s"],
            "cost_exponent_lammps": power_law_exponent(rows, model, "lammps"),
            "cost_exponent_ase": power_law_exponent(rows, model, "ase"),
        }
    return {"headline": headline, "lammps_version": version, "export_check": checks,
            "memory_limit_gb": memory_limit_mb / 1024, "systems": rows, "provenance": record}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        engine, kind, repeat, steps, model, export_dir = sys.argv[2:8]
        print(json.dumps(worker(engine, kind, int(repeat), int(steps), model, export_dir)))
    else:
        print(json.dumps(main()["headline"], indent=1))
