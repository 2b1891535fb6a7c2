"""Periodic against naive fine-tuning along MD, at equal parent-label budgets.

Wong and Yang, "Bias in universal MLIPs and its effects on fine-tuning": a foundation model's MD samples the
configurations *it* prefers, not those the fine-tuned model will visit.

* :func:`naive_finetune` runs several MD trajectories with the base model, labels frames along them with the
  parent and fine-tunes once.
* :func:`periodic_finetune` runs one trajectory and fine-tunes every ``interval_steps``; the newest model continues
  the MD, so later labels come from the configurations of the (partly) fine-tuned model.

:func:`~.production.compare_production` then runs a production MD with each fitted model. Every fit starts from the
base model and uses all labels so far (:class:`~.readout.Fitter`). ``fit="head"``, ``"lora"`` or ``"full"`` use the
project's trainer (:func:`umlip_helpers.finetune.finetune`, any family); ``fit="readout"`` refits SevenNet's last
linear layer in closed form (:mod:`.head_fit`), which is fast enough for CPU notebooks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UmlipError, UnstableStructure
from ..io import atomic_write_json, check_same_settings, provenance
from ..parents import Parent, parent_info, parent_label
from ..results import Result
from .readout import Fitter
from .settings import Fit, NaiveSettings, PeriodicSettings, SamplingSettings, settings_from

if TYPE_CHECKING:
    from ase import Atoms

    from ..data import LabelledFrame


@dataclasses.dataclass(frozen=True)
class SamplingRun(Result):
    """The labelled frames of one workflow and the model fitted on them (``calculator()``)."""

    workflow: str
    fit: str
    budget: int
    n_parent_calls: int
    n_md_steps: int
    n_fits: int
    temperature_k: float
    timestep_fs: float
    symbols: list
    cell_angstrom: np.ndarray
    pbc: list
    #: (budget, N, 3) labelled positions, their parent energies and forces, and the trajectory (naive) or
    #: fine-tuning round (periodic) each came from
    positions_angstrom: np.ndarray
    parent_energies_ev: np.ndarray
    parent_forces_ev_per_angstrom: np.ndarray
    origin: np.ndarray
    #: the model that sampled each label: 0 is the base model, k the model after k fits
    sampled_by_fit: np.ndarray
    model_dir: str | None
    md_seconds: float
    parent_seconds: float
    fit_seconds: float
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = ("workflow", "fit", "budget", "n_parent_calls", "n_md_steps",
                                                 "n_fits", "md_seconds", "parent_seconds", "fit_seconds")

    def frames(self) -> list["LabelledFrame"]:
        from ase import Atoms

        from ..data import LabelledFrame

        return [LabelledFrame(Atoms(self.symbols, positions=p, cell=self.cell_angstrom, pbc=self.pbc), float(e),
                              np.asarray(f), None, f"{self.workflow} labels", k)
                for k, (p, e, f) in enumerate(zip(self.positions_angstrom, self.parent_energies_ev,
                                                  self.parent_forces_ev_per_angstrom))]

    def calculator(self):
        """The fitted model (the in-memory one; for trainer fits also ``load_calculator(model_dir)``)."""
        calc = getattr(self, "_calc", None)
        if calc is None:
            from ..models import load_calculator

            if self.model_dir is None:
                raise UmlipError("a readout fit is kept in memory only; re-run the workflow to get its model")
            calc = load_calculator(self.model_dir)
        return calc

    def plot(self, ax=None):
        """Parent energy per atom of the labelled frames, by origin."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        n = len(self.symbols)
        ax.scatter(np.arange(self.budget), self.parent_energies_ev / n, c=self.origin, cmap="viridis")
        ax.set_xlabel("label")
        ax.set_ylabel("parent energy (eV/atom)")
        ax.set_title(f"{self.workflow}: {self.budget} labels ({self.fit} fit)")
        return ax


def _check_inputs(budget: int, parent: Parent | None) -> None:
    if not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget (the number of parent labels) must be a positive integer, got {budget!r}")
    if parent is None or isinstance(parent, str):
        raise ValueError(f"parent must be an ASE calculator or a factory (see umlip_helpers.parents.make_parent), "
                         f"got {parent!r}")


def run_dir(out_dir: str | Path | None, prefix: str) -> Path:
    """``out_dir``, or a new temporary directory when it is None (see :func:`drop_run_dir`)."""
    import tempfile

    return Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix=prefix))


def drop_run_dir(out: Path, out_dir: str | Path | None, fit: Fit | None = None) -> None:
    """Remove a temporary run directory once its files are read, unless a trainer fit's model lives there."""
    import shutil

    if out_dir is None and fit in (None, "readout"):
        shutil.rmtree(out, ignore_errors=True)


def _base(model: Any, device: str):
    from ..models import load_calculator

    return load_calculator(model, device=device) if isinstance(model, (str, Path)) else model


def langevin_frames(atoms: "Atoms", calc, steps: int, temperature_k: float, timestep_fs: float, every: int,
                    seed: int, out: Path, init_velocities: bool = True, progress: bool = False,
                    keep_unstable: bool = False) -> tuple[list["Atoms"], str | None]:
    """``steps`` of Langevin NVT into ``out``; the frames every ``every`` steps (with momenta; the last one
    included, the start not), and None, or with ``keep_unstable`` the frames up to where run_md's guard stopped the
    run and its reason."""
    from ase.io import read

    from ..md import TRAJECTORY_NAME, run_md

    reason = None
    try:
        run_md(atoms, calc, "nvt", temperature_k=temperature_k, timestep_fs=timestep_fs, steps=steps, out_dir=out,
               traj_interval=every, overwrite=True, seed=seed, init_velocities=init_velocities, progress=progress)
    except UnstableStructure as exc:
        if not keep_unstable:
            raise
        reason = str(exc)
    return [f for f in read(out / TRAJECTORY_NAME, ":") if f.info.get("md_step", 0) > 0], reason


def _write_state_frame(path: Path, atoms: "Atoms") -> None:
    """Positions and momenta of the MD's newest frame, written atomically (extxyz keeps the momenta)."""
    import io as _io

    from ase.io import write

    from ..io import atomic_write_text

    frame = atoms.copy()
    frame.calc = None
    buffer = _io.StringIO()
    write(buffer, frame, format="extxyz")
    atomic_write_text(path, buffer.getvalue())


@dataclasses.dataclass
class _Labels:
    """A workflow's parent labels so far: the frames, the trajectory (naive) or round (periodic) each came from, the
    fit that sampled it, the MD steps run and where the time went."""

    frames: list = dataclasses.field(default_factory=list)
    origin: list = dataclasses.field(default_factory=list)
    sampled_by: list = dataclasses.field(default_factory=list)
    seconds: dict = dataclasses.field(default_factory=lambda: {"md": 0.0, "parent": 0.0, "fit": 0.0})
    steps: int = 0

    def __len__(self) -> int:
        return len(self.frames)

    @contextlib.contextmanager
    def timed(self, what: str):
        start = time.perf_counter()
        yield
        self.seconds[what] += time.perf_counter() - start

    def label(self, parent: Parent, frames: list["Atoms"], where: str, origin: int, sampled_by: int,
              bar) -> list["LabelledFrame"]:
        """Label ``frames`` with the parent, one call each; returns the new labels."""
        new = []
        for frame in frames:
            with self.timed("parent"):
                new.append(parent_label(parent, frame, where, len(self.frames)))
            self.frames.append(new[-1])
            self.origin.append(origin)
            self.sampled_by.append(sampled_by)
            bar.update(1)
        return new


def _finish(workflow: str, settings: SamplingSettings, budget: int, labels: _Labels, fitter: Fitter,
            parent: Parent, params: dict[str, Any]) -> SamplingRun:
    first = labels.frames[0].atoms
    s, seconds = settings, labels.seconds
    run = SamplingRun(
        workflow=workflow, fit=s.fit, budget=budget, n_parent_calls=len(labels), n_md_steps=labels.steps,
        n_fits=fitter.rounds, temperature_k=float(s.temperature_k), timestep_fs=float(s.timestep_fs),
        symbols=first.get_chemical_symbols(), cell_angstrom=first.cell.array.copy(), pbc=first.pbc.tolist(),
        positions_angstrom=np.array([f.atoms.positions for f in labels.frames]),
        parent_energies_ev=np.array([f.energy_ev for f in labels.frames]),
        parent_forces_ev_per_angstrom=np.array([f.forces_ev_per_angstrom for f in labels.frames]),
        origin=np.array(labels.origin), sampled_by_fit=np.array(labels.sampled_by), model_dir=fitter.model_dir,
        md_seconds=seconds["md"], parent_seconds=seconds["parent"], fit_seconds=seconds["fit"],
        provenance=provenance(fitter.base_calc, workflow=workflow, fit=s.fit, budget=budget,
                              parent=parent_info(parent), temperature_k=s.temperature_k, timestep_fs=s.timestep_fs,
                              **params, seed=s.seed),
    )
    object.__setattr__(run, "_calc", fitter.calc)
    return run


def naive_finetune(
    atoms: "Atoms",
    model: Any,
    parent: Parent,
    budget: int,
    *,
    settings: NaiveSettings | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    **options: Any,
) -> SamplingRun:
    """Naive fine-tuning: ``n_trajectories`` Langevin MD runs with the base ``model`` from ``atoms`` (different
    seeds), a parent label every ``sample_interval_steps`` until ``budget`` labels are spent, one fit at the end.
    Without ``out_dir`` the trajectories go to a temporary directory, removed at the end unless a trainer fit's
    model (``model_dir``) lives there.

    ``settings`` (a :class:`~.settings.NaiveSettings`: ``n_trajectories``, ``sample_interval_steps``,
    ``temperature_k``, ``timestep_fs``, ``fit``, ``fit_options``, ``seed``) or those fields as keyword arguments.
    """
    from tqdm.auto import tqdm

    s = settings_from(NaiveSettings, settings, options, "naive_finetune")
    _check_inputs(budget, parent)
    if s.n_trajectories < 1 or budget < s.n_trajectories:
        raise ValueError(f"need 1 <= n_trajectories <= budget, got n_trajectories={s.n_trajectories}, "
                         f"budget={budget}")
    base = _base(model, device)
    out = run_dir(out_dir, "umlip-naive-")
    fitter = Fitter(base, s.fit, s.fit_options, out)
    per_trajectory = [budget // s.n_trajectories + (k < budget % s.n_trajectories) for k in range(s.n_trajectories)]
    labels = _Labels()
    with tqdm(total=budget, desc="naive: labels", disable=not progress) as bar:
        for k, n_labels in enumerate(per_trajectory):
            steps = n_labels * s.sample_interval_steps
            with labels.timed("md"):
                frames, _ = langevin_frames(atoms, base, steps, s.temperature_k, s.timestep_fs,
                                            s.sample_interval_steps, s.seed + k, out / f"trajectory_{k}")
            labels.steps += steps
            labels.label(parent, frames[:n_labels], f"naive trajectory {k}", k, 0, bar)
    with labels.timed("fit"):
        fitter.update(labels.frames, labels.frames)
    drop_run_dir(out, out_dir, s.fit)
    return _finish("naive", s, budget, labels, fitter, parent,
                   dict(n_trajectories=s.n_trajectories, sample_interval_steps=s.sample_interval_steps))


class _PeriodicRun:
    """The state of :func:`periodic_finetune`: the labels, the newest model (:class:`~.readout.Fitter`) and the
    MD's newest frame, saved after every round in ``out`` and restored from there."""

    def __init__(self, atoms: "Atoms", base, parent: Parent, budget: int, settings: PeriodicSettings, out: Path):
        s = self.settings = settings
        self.parent, self.budget, self.out = parent, budget, out
        self.labels_path, self.state_path, self.last_path = (out / "labels.extxyz", out / "state.json",
                                                             out / "last_frame.extxyz")
        #: what a saved state must match to be continued
        self.identity = dict(budget=budget, interval_steps=s.interval_steps, labels_per_interval=s.labels_per_interval,
                             temperature_k=s.temperature_k, timestep_fs=s.timestep_fs, fit=s.fit, seed=s.seed)
        self.fitter = Fitter(base, s.fit, s.fit_options, out)
        self.labels = _Labels()
        self.work = atoms.copy()

    def restore(self) -> None:
        """Continue from the saved state, if there is one (readout fits are redone from the saved labels)."""
        from ase.io import read

        from ..data import read_dataset

        if not self.state_path.is_file():
            return
        state = json.loads(self.state_path.read_text())
        check_same_settings(self.state_path, state["settings"], self.identity, "choose another out_dir to start afresh")
        self.labels = _Labels(list(read_dataset(self.labels_path, require=("energy", "forces"))), state["origin"],
                              state["sampled_by_fit"], state["seconds"], state["steps"])
        self.work = read(self.last_path)
        self.fitter.restore(self.labels.frames, self.labels.origin)

    def sample(self, progress: bool) -> None:
        from tqdm.auto import tqdm

        rounds = -(-self.budget // self.settings.labels_per_interval)
        with tqdm(total=self.budget, initial=len(self.labels), desc="periodic: labels", disable=not progress) as bar:
            for r in range(len(set(self.labels.origin)), rounds):
                self.round(r, bar)

    def round(self, r: int, bar) -> None:
        """MD with the newest model from the newest frame, labels along it, a fit on all labels, and a save."""
        s, labels = self.settings, self.labels
        with labels.timed("md"):
            frames, _ = langevin_frames(self.work, self.fitter.calc, s.interval_steps, s.temperature_k, s.timestep_fs,
                                        s.interval_steps // s.labels_per_interval, s.seed + r, self.out / "md_segment",
                                        init_velocities=r == 0)
        labels.steps += s.interval_steps
        self.work = frames[-1].copy()
        self.work.set_momenta(frames[-1].get_momenta())
        new = labels.label(self.parent, frames[:self.budget - len(labels)], f"periodic round {r}", r,
                           self.fitter.rounds, bar)
        with labels.timed("fit"):
            self.fitter.update(labels.frames, new)
        self.save()

    def save(self) -> None:
        from ..data import DFTDataset

        labels = self.labels
        DFTDataset(labels.frames, name="periodic labels").write_extxyz(self.labels_path)
        _write_state_frame(self.last_path, self.work)
        atomic_write_json(self.state_path, {"settings": self.identity, "origin": labels.origin,
                                            "sampled_by_fit": labels.sampled_by, "steps": labels.steps,
                                            "seconds": labels.seconds})


def periodic_finetune(
    atoms: "Atoms",
    model: Any,
    parent: Parent,
    budget: int,
    *,
    settings: PeriodicSettings | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    **options: Any,
) -> SamplingRun:
    """Periodic fine-tuning: one Langevin MD from ``atoms``; every ``interval_steps`` the newest model's frames
    (``labels_per_interval`` of them, evenly spaced) are labelled, the base model is fitted on all labels so far,
    and that model continues the trajectory (positions and momenta carried over), until ``budget`` labels.

    With ``out_dir`` the labels and the MD state are saved after every fit (atomically); ``resume=True``
    continues an interrupted run from there (readout fits are redone from the saved labels, in seconds). Without
    it they go to a temporary directory, removed at the end unless a trainer fit's model (``model_dir``) lives there.

    ``settings`` (a :class:`~.settings.PeriodicSettings`: ``interval_steps``, ``labels_per_interval``,
    ``temperature_k``, ``timestep_fs``, ``fit``, ``fit_options``, ``seed``) or those fields as keyword arguments.
    """
    s = settings_from(PeriodicSettings, settings, options, "periodic_finetune")
    _check_inputs(budget, parent)
    base = _base(model, device)
    out = run_dir(out_dir, "umlip-periodic-")
    out.mkdir(parents=True, exist_ok=True)
    run = _PeriodicRun(atoms, base, parent, budget, s, out)
    if resume:
        run.restore()
    run.sample(progress)
    drop_run_dir(out, out_dir, s.fit)
    return _finish("periodic", s, budget, run.labels, run.fitter, parent,
                   dict(interval_steps=s.interval_steps, labels_per_interval=s.labels_per_interval))
