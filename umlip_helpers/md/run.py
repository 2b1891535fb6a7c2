"""One :func:`run_md` session (:class:`_MDRun`): the files it continues or starts, the integration loop with the
guard, the log and the trajectory, and the result."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import all_properties

from ..analysis import closest_pair
from ..choices import Ensemble
from ..errors import UmlipError, UnstableStructure
from ..io import atomic_write_json, atomic_write_text, check_same_settings, provenance
from ..models import check_elements
from ..settings import settings_from
from .dynamics import conserved_energy, latest, make_dynamics, noise_rng, pressure_gpa
from .files import LOG_COLUMNS, LOG_NAME, RUN_NAME, TRAJECTORY_NAME, UNSTABLE_NAME, log_line, read_last_frame, read_log
from .guard import stop_reason, ProximityGuard
from .result import MDResult
from .settings import MDSettings

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: the progress bar redraws (and its T, E, P are refreshed) at most this often
PROGRESS_INTERVAL_S = 1.0


def run_md(
    atoms: Atoms,
    calc: "Calculator",
    ensemble: Ensemble | None = None,
    temperature_k: float | None = None,
    timestep_fs: float | None = None,
    steps: int | None = None,
    *,
    settings: MDSettings | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> MDResult:
    """Run ``steps`` MD steps in total (a resumed run continues up to ``steps``); the input ``atoms`` is not changed.

    ensemble: "nve" (velocity Verlet), "nvt" (thermostat "langevin" (default), "nose-hoover" (chain) or "bussi"),
        "npt" (Martyna-Tobias-Klein with Nosé-Hoover chains; ``npt_cell`` "full" lets every cell vector move,
        "isotropic" only the volume).
    friction_per_fs: Langevin friction; tdamp_fs / pdamp_fs: thermostat / barostat time constants.
    out_dir: where the trajectory and log go (None: keep the log in memory only; no restart possible).
    resume: continue from the last frame in ``out_dir`` (positions, momenta, cell and step counter; random
        numbers are re-seeded from ``seed`` and the step at every trajectory frame, so a resumed Langevin or Bussi
        run repeats the uninterrupted one exactly; Nosé-Hoover and MTK chain variables restart from zero).
        With nothing to resume from, the run starts afresh.
    overwrite: delete the files of an earlier run in ``out_dir`` first (otherwise an existing run is an error).
    init_velocities: draw Maxwell-Boltzmann velocities at ``temperature_k`` from ``seed`` (False keeps the
        momenta already in ``atoms``).
    The guard (every ``guard_interval`` steps, and before the first force call) raises UnstableStructure on an
    interatomic distance below ``min_distance_angstrom``, a temperature above ``max_temperature_factor`` times the
    target, or non-finite forces; the trajectory written so far is kept and the bad frame is saved. Its distance
    check searches neighbours again only once some atom has moved far enough to bring a pair below the limit.

    ``settings`` (an :class:`MDSettings`) or its fields as keyword arguments (``ensemble``, ``temperature_k``,
    ``timestep_fs`` and ``steps`` also by position); keywords given beside ``settings`` replace those fields.
    """
    given = {name: value for name, value in (("ensemble", ensemble), ("temperature_k", temperature_k),
                                             ("timestep_fs", timestep_fs), ("steps", steps)) if value is not None}
    settings = settings_from(MDSettings, settings, {**given, **options}, "run_md")
    check_elements(atoms, calc, where="run_md")
    run = _MDRun(atoms, calc, settings, out_dir, resume, overwrite)
    run.integrate(progress)
    return run.result(resume)


class _MDRun:
    """One :func:`run_md` session: the files it continues or starts (:meth:`open`), the integration loop
    (:meth:`integrate`, one :meth:`advance` per step) and the result."""

    def __init__(self, atoms: Atoms, calc, settings: MDSettings, out_dir, resume: bool, overwrite: bool):
        self.settings, self.calc = settings, calc
        self.record = settings.run_record(atoms, calc)
        self.work = atoms.copy()
        self.work.calc = calc
        self.out = Path(out_dir) if out_dir is not None else None
        self.traj_path = self.log_path = None
        self.start_step, self.rows, self.frame = 0, [], None
        if self.out is not None:
            self.open(resume, overwrite)
        if self.frame is None:
            self.fresh_start()
        s = settings
        self.dyn = make_dynamics(self.work, s.ensemble, s.thermostat_label if s.ensemble == "nvt" else "",
                                  s.temperature_k, s.timestep_fs, s.friction_per_fs, s.tdamp_fs, s.pressure_gpa,
                                  s.pdamp_fs, s.npt_cell, noise_rng(s.seed, self.start_step))
        self.dyn.nsteps = self.start_step
        self.stochastic = hasattr(self.dyn, "rng")
        self.last_logged = self.rows[-1][0] if self.rows else -1
        self.last_frame = self.start_step if self.frame is not None else -1
        self.proximity = ProximityGuard(s.min_distance_angstrom)
        self.last_postfix = -np.inf

    def open(self, resume: bool, overwrite: bool) -> None:
        """Clear an earlier run (``overwrite``), or continue it from its last frame (``resume``); write the record."""
        out = self.out
        out.mkdir(parents=True, exist_ok=True)
        self.traj_path, self.log_path, run_path = out / TRAJECTORY_NAME, out / LOG_NAME, out / RUN_NAME
        existing = [p for p in (self.traj_path, self.log_path, run_path) if p.exists()]
        if existing and overwrite:
            for p in existing:
                p.unlink()
        elif existing and not resume:
            raise UmlipError(f"{out} already holds an MD run ({', '.join(p.name for p in existing)}); pass "
                             "resume=True to continue it or overwrite=True to start again")
        self.frame = read_last_frame(self.traj_path) if resume else None
        if self.frame is not None:
            self.continue_from(self.frame, run_path)
        else:
            for p in (self.traj_path, self.log_path):
                p.unlink(missing_ok=True)
        atomic_write_json(run_path, self.record)

    def continue_from(self, frame: Atoms, run_path: Path) -> None:
        saved = json.loads(run_path.read_text()) if run_path.is_file() else {}
        # a setting that an older run did not record counts as unchanged
        check_same_settings(run_path, {k: saved.get(k, v) for k, v in self.record.items()}, self.record,
                            "pass overwrite=True to start again")
        work = self.work
        if not np.array_equal(frame.numbers, work.numbers):
            raise UmlipError(f"{self.traj_path}: its frames hold {frame.get_chemical_formula()}, but the structure "
                             f"given is {work.get_chemical_formula()}")
        self.start_step = int(frame.info["md_step"])
        work.set_cell(frame.cell, scale_atoms=False)
        work.positions = frame.positions
        work.set_momenta(frame.get_momenta())
        self.rows = read_log(self.log_path, self.start_step)

    def fresh_start(self) -> None:
        """Refuse an overlapping start before any force call; draw the velocities (``init_velocities``)."""
        from ase.md.velocitydistribution import Stationary, thermalize_momenta

        s = self.settings
        pair = closest_pair(self.work, s.min_distance_angstrom)
        if pair is not None:
            i, j, d = pair
            raise UnstableStructure(f"run_md: atoms {i} and {j} of the starting structure are {d:.3f} Å apart "
                                    f"(< {s.min_distance_angstrom} Å); fix the structure before running MD")
        if s.init_velocities:
            thermalize_momenta(self.work, s.temperature_k, rng=np.random.default_rng(s.seed))
            Stationary(self.work)

    def integrate(self, progress: bool) -> None:
        from ase.io.trajectory import Trajectory
        from tqdm.auto import tqdm

        s = self.settings
        self.rows = [list(r) for r in self.rows]
        if self.log_path is not None:
            atomic_write_text(self.log_path, ",".join(LOG_COLUMNS) + "\n" + "".join(log_line(r) for r in self.rows))
        self.t_begin, self.t_loop = time.perf_counter(), None
        # frames take the calculator's results of this step as they are (properties=[]): asking the calculator for
        # each property would compare the whole Atoms a dozen times per frame
        traj = Trajectory(str(self.traj_path), "a", properties=[]) if self.traj_path is not None else None
        log_file = open(self.log_path, "a") if self.log_path is not None else None
        try:
            with tqdm(total=s.steps, initial=self.start_step, desc=f"MD {s.ensemble}", unit="step",
                      disable=not progress, mininterval=PROGRESS_INTERVAL_S) as bar:
                for _ in self.dyn.irun(s.steps - self.start_step):
                    if self.t_loop is None:
                        self.t_loop = time.perf_counter()
                    else:
                        bar.update(1)
                    self.advance(self.dyn.nsteps, bar, traj, log_file)
        finally:
            if traj is not None:
                traj.close()
            if log_file is not None:
                log_file.close()
        self.t_end = time.perf_counter()

    def advance(self, step: int, bar, traj, log_file) -> None:
        """After a step: the guard, the log row and the trajectory frame, each when its interval says so."""
        s, work = self.settings, self.work
        check = step % s.guard_interval == 0 or step == s.steps
        log = (step % s.log_interval == 0 or step == s.steps) and step > self.last_logged
        if check or log:
            epot, ekin = float(latest(work, "energy")), float(work.get_kinetic_energy())
            temperature = float(work.get_temperature())
        if check:
            reason = stop_reason(work, epot, temperature, s.temperature_k, s.max_temperature_factor, self.proximity)
            if reason is not None:
                self.stop(step, reason)
        if log:
            self.log(step, epot, ekin, temperature, bar, log_file)
        if (step % s.traj_interval == 0 or step == s.steps) and step > self.last_frame:
            if traj is not None:
                work.info.update(md_step=step, time_fs=step * s.timestep_fs)
                traj.write(work, **{k: v for k, v in work.calc.results.items() if k in all_properties})
            self.last_frame = step
            if self.stochastic:
                self.dyn.rng = noise_rng(s.seed, step)

    def stop(self, step: int, reason: str) -> None:
        """Raise UnstableStructure, with the frame that tripped the guard saved next to the trajectory."""
        saved_to = ""
        if self.out is not None:
            from ase.io import write

            write(self.out / UNSTABLE_NAME, self.work, format="extxyz")
            saved_to = f"; that frame is in {self.out / UNSTABLE_NAME}, the trajectory so far in {self.traj_path}"
        raise UnstableStructure(f"run_md stopped at step {step} ({step * self.settings.timestep_fs / 1000:.4g} ps): "
                                f"{reason}{saved_to}")

    def log(self, step: int, epot: float, ekin: float, temperature: float, bar, log_file) -> None:
        work = self.work
        volume = float(work.get_volume()) if work.cell.rank == 3 else float("nan")
        row = [step, step * self.settings.timestep_fs / 1000.0, epot, ekin, epot + ekin,
               conserved_energy(self.dyn, work, epot + ekin), temperature, pressure_gpa(work, ekin, volume), volume]
        self.rows.append(row)
        self.last_logged = step
        if log_file is not None:
            log_file.write(log_line(row))
            log_file.flush()
        now = time.perf_counter()
        if now - self.last_postfix >= PROGRESS_INTERVAL_S or step == self.settings.steps:
            bar.set_postfix(T=f"{row[6]:.0f}K", E=f"{row[4]:.3f}eV", P=f"{row[7]:.2f}GPa", refresh=False)
            self.last_postfix = now

    def result(self, resume: bool) -> MDResult:
        s, n_atoms = self.settings, len(self.work)
        data = np.array(self.rows, dtype=float).reshape(-1, len(LOG_COLUMNS))
        columns = {name: data[:, k] for k, name in enumerate(LOG_COLUMNS)}
        half = columns["temperature_k"][len(data) // 2:]
        drift = float("nan")
        finite = np.isfinite(columns["conserved_ev"])
        if finite.sum() >= 3:
            slope = np.polyfit(columns["time_ps"][finite], columns["conserved_ev"][finite] / n_atoms, 1)[0]
            drift = float(slope * 1000.0)
        steps_run = s.steps - self.start_step
        loop_time = self.t_end - (self.t_loop or self.t_end)
        return MDResult(
            ensemble=s.ensemble, thermostat=s.thermostat_label, target_temperature_k=float(s.temperature_k),
            timestep_fs=float(s.timestep_fs), n_atoms=n_atoms, steps_completed=int(max(s.steps, self.start_step)),
            steps_this_session=int(max(steps_run, 0)), resumed_from_step=int(self.start_step),
            step=columns["step"].astype(int), **{name: columns[name] for name in LOG_COLUMNS[1:]},
            mean_temperature_k=float(half.mean()) if len(half) else float("nan"),
            std_temperature_k=float(half.std()) if len(half) else float("nan"),
            energy_drift_mev_per_atom_per_ps=drift,
            throughput_atom_steps_per_s=float(n_atoms * steps_run / loop_time) if steps_run > 0 and loop_time > 0
            else float("nan"),
            wall_time_s=float(self.t_end - self.t_begin),
            trajectory_path=str(self.traj_path) if self.traj_path is not None else None,
            log_path=str(self.log_path) if self.log_path is not None else None,
            provenance=provenance(self.calc, **self.record, steps=s.steps, log_interval=s.log_interval,
                                  npt_cell=s.npt_cell, resume=resume, init_velocities=s.init_velocities,
                                  min_distance_angstrom=s.min_distance_angstrom,
                                  max_temperature_factor=s.max_temperature_factor),
        )
