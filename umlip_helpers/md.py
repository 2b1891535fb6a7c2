"""Molecular dynamics with any ASE calculator: NVE, NVT and NPT from ase.md, a live progress bar, a trajectory and
a CSV log, exact restart after a kill, and a guard that stops a run that blows up.

Files in ``out_dir``:

* ``md.traj``: ASE trajectory (full-precision positions, momenta, cell, energy, forces, stress, and the step in
  ``atoms.info["md_step"]``). ASE's trajectory format appends a frame and only then updates the frame count in its
  header, so a frame torn by a kill is never read back. ``ase convert md.traj md.extxyz`` gives extxyz for OVITO.
* ``md_log.csv``: step, time, energies, temperature, pressure and volume every ``log_interval`` steps.
* ``md_run.json``: the run's settings; ``resume=True`` refuses to continue a run with different settings.
* ``unstable_frame.extxyz``: written only when the guard stops a run, the frame that tripped it.

One module, though near 600 lines: one MD run's settings (:class:`MDSettings`), its session (:class:`_MDRun`: the
files above, the loop, the guard) and its result belong together; every piece serves :func:`run_md` alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import all_properties

from .analysis import closest_pair, neighbor_pairs
from .choices import Ensemble, Thermostat
from .errors import UmlipError, UnstableStructure
from .io import atomic_write_json, atomic_write_text, check_same_settings, model_info, provenance
from .models import check_elements
from .results import Result

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

NPTCell = Literal["full", "isotropic"]

TRAJECTORY_NAME = "md.traj"
LOG_NAME = "md_log.csv"
RUN_NAME = "md_run.json"
UNSTABLE_NAME = "unstable_frame.extxyz"
#: the progress bar redraws (and its T, E, P are refreshed) at most this often
PROGRESS_INTERVAL_S = 1.0
LOG_COLUMNS = ("step", "time_ps", "epot_ev", "ekin_ev", "etot_ev", "conserved_ev", "temperature_k", "pressure_gpa",
               "volume_angstrom3")


@dataclasses.dataclass(frozen=True)
class MDResult(Result):
    """An MD run: its log as arrays (every ``log_interval`` steps, over the whole run including earlier sessions
    of a resumed run) and headline numbers. ``conserved_ev`` is the total energy in NVE, the extended-system
    energy for Nosé-Hoover and MTK, E minus the energy exchanged with the bath for Bussi, and NaN for Langevin."""

    ensemble: str
    thermostat: str
    target_temperature_k: float
    timestep_fs: float
    n_atoms: int
    steps_completed: int
    steps_this_session: int
    resumed_from_step: int
    step: np.ndarray
    time_ps: np.ndarray
    epot_ev: np.ndarray
    ekin_ev: np.ndarray
    etot_ev: np.ndarray
    conserved_ev: np.ndarray
    temperature_k: np.ndarray
    pressure_gpa: np.ndarray
    volume_angstrom3: np.ndarray
    #: mean and standard deviation of the temperature over the second half of the log
    mean_temperature_k: float
    std_temperature_k: float
    #: slope of a straight-line fit of ``conserved_ev`` per atom against time (NaN when nothing is conserved)
    energy_drift_mev_per_atom_per_ps: float
    #: atoms x steps per second of wall time, this session only
    throughput_atom_steps_per_s: float
    wall_time_s: float
    trajectory_path: str | None
    log_path: str | None
    provenance: dict

    summary_fields = ("ensemble", "thermostat", "target_temperature_k", "timestep_fs", "n_atoms", "steps_completed",
                      "mean_temperature_k", "std_temperature_k", "energy_drift_mev_per_atom_per_ps",
                      "throughput_atom_steps_per_s", "wall_time_s")

    def frames(self, index: str = ":") -> list[Atoms]:
        """The trajectory's frames (``index`` as in ``ase.io.read``)."""
        if self.trajectory_path is None:
            raise UmlipError("this run wrote no trajectory (out_dir was None)")
        from ase.io import read

        return read(self.trajectory_path, index)

    def plot(self, ax=None):
        """Temperature and energies against time (two axes; pass a pair to draw into your own)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        ax_t, ax_e = ax
        ax_t.plot(self.time_ps, self.temperature_k, lw=0.8)
        ax_t.axhline(self.target_temperature_k, color="grey", ls=":", lw=0.8)
        ax_t.set_xlabel("time (ps)")
        ax_t.set_ylabel("T (K)")
        ax_t.set_title(f"{self.ensemble.upper()} ({self.thermostat})")
        reference = self.etot_ev[0] if len(self.etot_ev) else 0.0
        per_atom = 1000.0 / self.n_atoms
        ax_e.plot(self.time_ps, (self.epot_ev - reference) * per_atom, lw=0.8, label="E_pot")
        ax_e.plot(self.time_ps, (self.etot_ev - reference) * per_atom, lw=0.8, label="E_tot")
        if np.isfinite(self.conserved_ev).any():
            ax_e.plot(self.time_ps, (self.conserved_ev - self.conserved_ev[0]) * per_atom, lw=0.8, label="conserved")
        ax_e.set_xlabel("time (ps)")
        ax_e.set_ylabel("E - E_tot(0) (meV/atom)")
        ax_e.legend(fontsize="small")
        return ax


def _make_dynamics(atoms: Atoms, ensemble: str, thermostat: str, temperature_k: float, timestep_fs: float,
                   friction_per_fs: float, tdamp_fs: float, pressure_gpa: float, pdamp_fs: float, npt_cell: str,
                   rng: np.random.Generator):
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        from ase.md.verlet import VelocityVerlet

        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "npt":
        from ase.md.nose_hoover_chain import IsotropicMTKNPT, MTKNPT

        integrator = MTKNPT if npt_cell == "full" else IsotropicMTKNPT
        return integrator(atoms, timestep=dt, temperature_K=temperature_k, pressure_au=pressure_gpa * units.GPa,
                          tdamp=tdamp_fs * units.fs, pdamp=pdamp_fs * units.fs)
    if thermostat == "langevin":
        from ase.constraints import FixCom
        from ase.md.langevin import Langevin

        if not any(isinstance(c, FixCom) for c in atoms.constraints):
            atoms.set_constraint([*atoms.constraints, FixCom()])
        return Langevin(atoms, timestep=dt, temperature_K=temperature_k, friction=friction_per_fs / units.fs,
                        fixcm=False, rng=rng)
    if thermostat == "nose-hoover":
        from ase.md.nose_hoover_chain import NoseHooverChainNVT

        return NoseHooverChainNVT(atoms, timestep=dt, temperature_K=temperature_k, tdamp=tdamp_fs * units.fs)
    from ase.md.bussi import Bussi

    return Bussi(atoms, timestep=dt, temperature_K=temperature_k, taut=tdamp_fs * units.fs, rng=rng)


def _noise_rng(seed: int, step: int) -> np.random.Generator:
    """The thermostat's random stream from ``step`` on. It must differ from the velocity stream
    ``default_rng(seed)``: ``default_rng([seed, 0])`` is that very stream, and kicks equal to the initial velocity
    draws heat the system coherently."""
    return np.random.default_rng([seed, step, 1])


def _conserved_energy(dyn, atoms: Atoms, etot: float) -> float:
    if hasattr(dyn, "get_conserved_energy"):
        return float(dyn.get_conserved_energy())
    if hasattr(dyn, "transferred_energy"):
        return etot - float(dyn.transferred_energy)
    if type(dyn).__name__ == "VelocityVerlet":
        return etot
    return float("nan")


def _latest(atoms: Atoms, name: str):
    """``name`` from the calculator's last evaluation, which the integrator has just made at these positions; this
    skips ASE's comparison of the whole Atoms on every property call. None if the calculator cannot give it."""
    from ase.calculators.calculator import PropertyNotImplementedError

    value = atoms.calc.results.get(name)
    if value is None:
        try:
            value = atoms.calc.get_property(name, atoms)
        except PropertyNotImplementedError:
            return None
    return value


def _pressure_gpa(atoms: Atoms, ekin: float, volume: float) -> float:
    """Pressure including the kinetic (ideal-gas) term 2 E_kin / 3V (NaN without a 3D cell or a stress)."""
    stress = _latest(atoms, "stress") if np.isfinite(volume) else None
    if stress is None:
        return float("nan")
    stress = np.asarray(stress)
    trace = np.trace(stress) if stress.shape == (3, 3) else stress[:3].sum()
    return float((-trace / 3.0 + 2.0 * ekin / (3.0 * volume)) / units.GPa)


def _read_log(path: Path, up_to_step: int) -> list[list[float]]:
    """Complete rows of a log with step <= ``up_to_step`` (a row torn by a kill is dropped)."""
    if not path.is_file():
        return []
    rows = []
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    for line in lines[1:]:
        fields = line.rstrip("\n").split(",")
        if not line.endswith("\n") or len(fields) != len(LOG_COLUMNS):
            break
        try:
            row = [float(x) for x in fields]
        except ValueError:
            break
        if row[0] > up_to_step:
            break
        rows.append(row)
    return rows


def _log_line(row: list[float]) -> str:
    return ",".join(repr(float(x)) if i else str(int(x)) for i, x in enumerate(row)) + "\n"


def _last_frame(path: Path) -> Atoms | None:
    from ase.io.trajectory import Trajectory
    from ase.io.ulm import InvalidULMFileError

    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        with Trajectory(str(path)) as traj:
            return traj[-1] if len(traj) else None
    except InvalidULMFileError:
        # the header is written with the first frame, so a torn header means no frame was complete
        torn = path.with_name(path.name + ".torn")
        path.replace(torn)
        warnings.warn(f"{path}: no complete frame (killed during the first write); moved it to {torn}, starting afresh")
        return None


class _ProximityGuard:
    """Finds a pair of atoms nearer than ``min_distance`` without a neighbour search every step. A search that
    finds the nearest pair at distance d proves that no pair comes nearer than ``min_distance`` until some atom
    has moved (d - min_distance) / 2 from where it was then (in the same cell); only then is the search redone."""

    def __init__(self, min_distance: float):
        self.min_distance = min_distance
        # a cell list with sub-ångström cells costs more than the pairs it finds (as in analysis.closest_pair)
        self.radius = max(1.5, min_distance + 1.0)
        self.reference: np.ndarray | None = None
        self.cell: np.ndarray | None = None
        self.allowed_squared = 0.0

    def check(self, atoms: Atoms) -> tuple[int, int, float] | None:
        positions = atoms.positions
        if self.reference is not None and np.array_equal(atoms.cell.array, self.cell):
            moved = positions - self.reference
            if np.einsum("ij,ij->i", moved, moved).max() < self.allowed_squared:
                return None
        i, j, d = neighbor_pairs(atoms, self.radius, "ijd")
        nearest = self.radius
        if len(d):
            k = int(np.argmin(d))
            if d[k] < self.min_distance:
                return int(i[k]), int(j[k]), float(d[k])
            nearest = float(d[k])
        self.reference = positions.copy()
        self.cell = atoms.cell.array.copy()
        self.allowed_squared = (0.5 * (nearest - self.min_distance)) ** 2
        return None


def _guard(atoms: Atoms, epot: float, temperature: float, target_k: float, max_factor: float,
           proximity: _ProximityGuard) -> str | None:
    """Why the run must stop now, or None."""
    forces = _latest(atoms, "forces")
    if not np.all(np.isfinite(forces)) or not np.isfinite(epot):
        bad = np.flatnonzero(~np.isfinite(forces).all(axis=1))
        return f"non-finite energy or forces (atoms {bad[:10].tolist()})"
    if target_k > 0:
        if temperature > max_factor * target_k:
            return f"temperature {temperature:.0f} K exceeds {max_factor:g} x the target {target_k:g} K"
    pair = proximity.check(atoms)
    if pair is not None:
        i, j, d = pair
        symbols = atoms.get_chemical_symbols()
        return (f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {d:.3f} Å apart "
                f"(< {proximity.min_distance} Å)")
    return None


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
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(MDSettings)})
    if unknown:
        raise TypeError(f"run_md() got unexpected keyword arguments: {', '.join(unknown)}")
    options = {**given, **options}
    settings = dataclasses.replace(settings, **options) if settings is not None else MDSettings(**options)
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
        self.dyn = _make_dynamics(self.work, s.ensemble, s.thermostat_label if s.ensemble == "nvt" else "",
                                  s.temperature_k, s.timestep_fs, s.friction_per_fs, s.tdamp_fs, s.pressure_gpa,
                                  s.pdamp_fs, s.npt_cell, _noise_rng(s.seed, self.start_step))
        self.dyn.nsteps = self.start_step
        self.stochastic = hasattr(self.dyn, "rng")
        self.last_logged = self.rows[-1][0] if self.rows else -1
        self.last_frame = self.start_step if self.frame is not None else -1
        self.proximity = _ProximityGuard(s.min_distance_angstrom)
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
        self.frame = _last_frame(self.traj_path) if resume else None
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
        self.rows = _read_log(self.log_path, self.start_step)

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
            atomic_write_text(self.log_path, ",".join(LOG_COLUMNS) + "\n" + "".join(_log_line(r) for r in self.rows))
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
            epot, ekin = float(_latest(work, "energy")), float(work.get_kinetic_energy())
            temperature = float(work.get_temperature())
        if check:
            reason = _guard(work, epot, temperature, s.temperature_k, s.max_temperature_factor, self.proximity)
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
                self.dyn.rng = _noise_rng(s.seed, step)

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
               _conserved_energy(self.dyn, work, epot + ekin), temperature, _pressure_gpa(work, ekin, volume), volume]
        self.rows.append(row)
        self.last_logged = step
        if log_file is not None:
            log_file.write(_log_line(row))
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


def cli_md(args) -> dict[str, Any]:
    """``umlip md``: run MD on a structure file; the trajectory and log go to ``--out`` (default md_<stem>)."""
    from .data import read_structure
    from .models import load_calculator

    atoms = read_structure(args.structure)
    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    out = args.out or f"md_{Path(args.structure).stem}"
    result = run_md(atoms, calc, ensemble=args.ensemble, temperature_k=args.temperature, timestep_fs=args.timestep,
                    steps=args.steps, out_dir=out, resume=args.resume)
    print(f"umlip md: {result.steps_completed} steps, mean T {result.mean_temperature_k:.1f} K, "
          f"{result.throughput_atom_steps_per_s:.4g} atom-steps/s; trajectory {result.trajectory_path}")
    return {"type": "MDResult", **result.to_dict()}
