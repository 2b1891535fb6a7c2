"""MD of an exported model in LAMMPS, with the settings of :func:`umlip_helpers.md.run_md`.

``run_lammps_md(atoms, export_dir, workdir, settings)`` writes the data file and an input that does the same run
as ``run_md(atoms, calc, settings=settings)`` would in ASE (same ensemble, thermostat, temperature, time step,
friction or damping, seed-drawn velocities), runs ``.venv/bin/lmp`` and returns a :class:`LammpsMDResult`: the
thermo log as arrays, the trajectory dump (read back into ASE with :meth:`LammpsMDResult.frames`), LAMMPS's own
loop time and the throughput in atom-steps/s. A run writes a restart file every ``restart_every`` steps;
``resume=True`` continues from the newest one up to ``settings.steps`` (LAMMPS's ``run N upto``).

Thermostats: ASE's Langevin friction γ (1/fs) is LAMMPS's ``fix langevin`` damping time 1/γ; Nosé-Hoover is
``fix nvt`` and Bussi ``fix temp/csvr`` with ``tdamp_fs``; NPT is ``fix npt`` (``tri`` for a full cell, ``iso``
for an isotropic one). The random streams differ from ASE's, so the two runs agree in distribution, not step by
step.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import UmlipError
from ..io import provenance
from ..md import MDSettings
from ..results import Result
from . import EXPORT_MANIFEST, check_type_map, lammps_version, read_dump, run_lammps, write_data

if TYPE_CHECKING:
    from ase import Atoms

DUMP_FILE = "traj.dump"
RESTART_FILES = ("md.restart.a", "md.restart.b")
GPA_TO_BAR = 1e4
THERMO = "step time temp pe ke etotal press vol"
_LOOP = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


@dataclasses.dataclass(frozen=True)
class LammpsMDResult(Result):
    """A LAMMPS MD run: its thermo log as arrays (every ``settings.log_interval`` steps) and throughput.
    ``loop_time_s`` is LAMMPS's "Loop time" (the steps only: no start-up, no model loading, no initial forces)."""

    n_atoms: int
    steps_completed: int
    steps_this_session: int
    step: np.ndarray
    time_ps: np.ndarray
    temperature_k: np.ndarray
    epot_ev: np.ndarray
    ekin_ev: np.ndarray
    etot_ev: np.ndarray
    pressure_gpa: np.ndarray
    volume_angstrom3: np.ndarray
    mean_temperature_k: float
    std_temperature_k: float
    loop_time_s: float
    throughput_atom_steps_per_s: float
    workdir: str
    dump_path: str | None
    elements: tuple
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = ("n_atoms", "steps_completed", "mean_temperature_k",
                                                 "std_temperature_k", "loop_time_s", "throughput_atom_steps_per_s")

    def frames(self, structure: "Atoms", index: str | int = ":") -> list["Atoms"]:
        """The dumped frames as ASE Atoms, in the orientation of ``structure`` (the one the run started from)."""
        if self.dump_path is None:
            raise UmlipError(f"{self.workdir}: this run wrote no trajectory (traj_interval larger than the run)")
        frames = read_dump(self.dump_path, structure, self.elements, index=index)
        return frames if isinstance(frames, list) else [frames]


def _thermostat_lines(settings: MDSettings) -> list[str]:
    temp, seed = settings.temperature_k, settings.seed + 1  # LAMMPS seeds must be positive
    tdamp_ps = settings.tdamp_fs / 1000.0
    if settings.ensemble == "nve":
        return ["fix integrate all nve"]
    if settings.ensemble == "npt":
        pressure = settings.pressure_gpa * GPA_TO_BAR
        cell = "tri" if settings.npt_cell == "full" else "iso"
        return [f"fix integrate all npt temp {temp} {temp} {tdamp_ps} {cell} {pressure} {pressure} "
                f"{settings.pdamp_fs / 1000.0}"]
    thermostat = settings.thermostat_label
    if thermostat == "langevin":
        damp_ps = 1.0 / settings.friction_per_fs / 1000.0
        return ["fix integrate all nve", f"fix thermostat all langevin {temp} {temp} {damp_ps} {seed} zero yes"]
    if thermostat == "nose-hoover":
        return [f"fix integrate all nvt temp {temp} {temp} {tdamp_ps}"]
    return ["fix integrate all nve", f"fix thermostat all temp/csvr {temp} {temp} {tdamp_ps} {seed}"]


def md_input(settings: MDSettings, pair_file: Path, boundary: str, restart: Path | None) -> str:
    """The LAMMPS input for ``settings``: from ``structure.data`` with fresh velocities, or from ``restart``."""
    start = ([f"read_restart {restart.name}"] if restart else
             ["units metal", "atom_style atomic", f"boundary {boundary}", "read_data structure.data"])
    velocities = [] if restart or not settings.init_velocities else [
        f"velocity all create {settings.temperature_k} {settings.seed + 1} mom yes rot no dist gaussian"]
    dump = [] if settings.traj_interval > settings.steps else [
        f"dump traj all custom {settings.traj_interval} {DUMP_FILE} id type x y z",
        "dump_modify traj sort id" + (" append yes delay $(step+1)" if restart else "")]
    return "\n".join([
        *start, f"include {pair_file}", f"timestep {settings.timestep_fs / 1000.0}", *velocities,
        *_thermostat_lines(settings),
        f"thermo {settings.log_interval}", f"thermo_style custom {THERMO}", "thermo_modify format float %.10g",
        *dump, f"restart {max(settings.steps // 4, 1)} {' '.join(RESTART_FILES)}",
        f"run {settings.steps} upto", ""])


def _newest_restart(workdir: Path) -> Path | None:
    found = [workdir / name for name in RESTART_FILES if (workdir / name).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def run_lammps_md(atoms: "Atoms", export_dir, workdir, settings: MDSettings | None = None, *, resume: bool = False,
                  threads: int = 1, timeout: float | None = None) -> LammpsMDResult:
    """Run ``settings`` (an :class:`~umlip_helpers.md.MDSettings`) in LAMMPS with the model exported in
    ``export_dir``; see the module docstring. The type map is checked before LAMMPS starts."""
    settings = settings or MDSettings()
    spec = check_type_map(atoms, export_dir)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    restart = _newest_restart(workdir) if resume else None
    if restart is None:
        for stale in [workdir / DUMP_FILE, *(workdir / name for name in RESTART_FILES)]:
            stale.unlink(missing_ok=True)
        write_data(atoms, workdir / "structure.data", spec.elements)
    boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    run = run_lammps(md_input(settings, spec.path.resolve(), boundary, restart), workdir, timeout=timeout,
                     threads=threads)
    manifest = json.loads((Path(export_dir) / EXPORT_MANIFEST).read_text())
    record = provenance(None, engine="lammps", lammps_version=lammps_version(), exported_model=manifest["model"],
                        export_dir=Path(export_dir).name, settings=dataclasses.asdict(settings),
                        resumed_from=restart.name if restart else None, threads=threads)
    return _result(run, settings, spec.elements, workdir, record)


def _result(run, settings: MDSettings, elements, workdir: Path, record: dict) -> LammpsMDResult:
    loops = _LOOP.findall(run.log)
    if not loops or not run.thermo:
        raise UmlipError(f"{workdir}/log.lammps: no 'Loop time' line or thermo rows; the run did not finish")
    loop_time, _, steps, n_atoms = loops[-1]
    rows = run.thermo
    column = {name: np.array([row[name] for row in rows]) for name in rows[0]}
    temperature = column["Temp"]
    half = temperature[len(temperature) // 2:]
    steps_this = int(steps)
    dump = workdir / DUMP_FILE
    return LammpsMDResult(
        int(n_atoms), int(column["Step"][-1]), steps_this, column["Step"].astype(int), column["Time"], temperature,
        column["PotEng"], column["KinEng"], column["TotEng"], column["Press"] / GPA_TO_BAR, column["Volume"],
        float(half.mean()), float(half.std()), float(loop_time),
        int(n_atoms) * steps_this / float(loop_time) if float(loop_time) > 0 else float("nan"),
        str(workdir), str(dump) if dump.is_file() else None, tuple(elements),
        record)
