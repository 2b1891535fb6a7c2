"""What an MD run does (:class:`MDSettings`): the ensemble and thermostat, the time step, the intervals, the guard's
limits. ASE's :func:`~umlip_helpers.md.run_md` and LAMMPS's :func:`~umlip_helpers.lammps.md.run_lammps_md` both
take it."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ase import Atoms

from ..choices import Ensemble, Thermostat
from ..io import model_info

NPTCell = Literal["full", "isotropic"]


@dataclasses.dataclass(frozen=True)
class MDSettings:
    """What an MD run does (see :func:`run_md`); where it writes, and whether it resumes, are arguments of
    :func:`run_md`. ``thermostat`` is what was asked for (None: the ensemble's default); :attr:`thermostat_label`
    is what runs."""

    ensemble: Ensemble = "nvt"
    temperature_k: float = 300.0
    timestep_fs: float = 1.0
    steps: int = 1000
    thermostat: Thermostat | None = None
    friction_per_fs: float = 0.01
    tdamp_fs: float = 100.0
    pressure_gpa: float = 0.0
    pdamp_fs: float = 1000.0
    npt_cell: NPTCell = "full"
    traj_interval: int = 10
    log_interval: int = 1
    seed: int = 0
    init_velocities: bool = True
    min_distance_angstrom: float = 0.5
    max_temperature_factor: float = 10.0
    guard_interval: int = 1

    def __post_init__(self):
        if self.ensemble not in ("nvt", "npt", "nve"):
            raise ValueError(f"ensemble must be 'nvt', 'npt' or 'nve', not {self.ensemble!r}")
        if self.ensemble == "nvt" and self.thermostat_label not in ("langevin", "nose-hoover", "bussi"):
            raise ValueError(f"thermostat must be 'langevin', 'nose-hoover' or 'bussi', not {self.thermostat_label!r}")
        if self.ensemble == "npt":
            if self.thermostat not in (None, "nose-hoover"):
                raise ValueError("npt uses the MTK barostat with Nosé-Hoover chains; leave thermostat unset")
            if self.npt_cell not in ("full", "isotropic"):
                raise ValueError(f"npt_cell must be 'full' or 'isotropic', not {self.npt_cell!r}")
        if self.ensemble == "nve" and self.thermostat is not None:
            raise ValueError("nve has no thermostat; leave thermostat unset")
        if self.steps < 0 or self.timestep_fs <= 0 or self.temperature_k < 0:
            raise ValueError(f"need steps >= 0, timestep_fs > 0 and temperature_k >= 0; got {self.steps}, "
                             f"{self.timestep_fs}, {self.temperature_k}")
        if min(self.traj_interval, self.log_interval, self.guard_interval) < 1:
            raise ValueError("traj_interval, log_interval and guard_interval must be >= 1")

    @property
    def thermostat_label(self) -> str:
        """The thermostat that runs: "langevin", "nose-hoover" or "bussi" (NVT), "nose-hoover + MTK (<cell> cell)"
        (NPT) or "none" (NVE)."""
        if self.ensemble == "nvt":
            return self.thermostat or "langevin"
        return f"nose-hoover + MTK ({self.npt_cell} cell)" if self.ensemble == "npt" else "none"

    def run_record(self, atoms: Atoms, calc) -> dict[str, Any]:
        """What ``md_run.json`` holds: a resumed run must match it (a setting an older run lacks counts as equal)."""
        return dict(ensemble=self.ensemble, thermostat=self.thermostat_label, temperature_k=float(self.temperature_k),
                    timestep_fs=float(self.timestep_fs), friction_per_fs=float(self.friction_per_fs),
                    tdamp_fs=float(self.tdamp_fs), pressure_gpa=float(self.pressure_gpa),
                    pdamp_fs=float(self.pdamp_fs), seed=int(self.seed), traj_interval=int(self.traj_interval),
                    n_atoms=len(atoms), formula=atoms.get_chemical_formula(), model=model_info(calc).name)
