"""Periodic against naive fine-tuning along MD, at equal parent-label budgets.

Wong and Yang, "Bias in universal MLIPs and its effects on fine-tuning": a foundation model's MD samples the
configurations *it* prefers, not those the fine-tuned model will visit.

* :func:`naive_finetune` runs several MD trajectories with the base model, labels frames along them with the
  parent and fine-tunes once.
* :func:`periodic_finetune` runs one trajectory and fine-tunes every ``interval_steps``; the newest model continues
  the MD, so later labels come from the configurations of the (partly) fine-tuned model.
* :func:`compare_production` runs a longer production MD with each fine-tuned model and measures its error
  against the parent along that trajectory, how far the production frames lie from the labelled ones
  (Q-residuals of per-atom environment descriptors; PCA coverage) and artefacts (nearest-neighbour distances,
  unphysical events).

Every fit starts from the base model and uses all labels so far. ``fit="head"``, ``"lora"`` or ``"full"`` use the
project's trainer (:func:`umlip_helpers.finetune.finetune`, any family); ``fit="readout"`` refits SevenNet's last
linear layer in closed form (:mod:`.head_fit`), which is fast enough for CPU notebooks.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..errors import UmlipError, UnstableStructure
from ..io import atomic_write_json, check_same_settings, provenance
from ..parents import Parent, parent_info, parent_label, parent_single_point
from ..results import Result

if TYPE_CHECKING:
    from ase import Atoms

    from ..data import LabelledFrame

Fit = Literal["readout", "head", "lora", "full"]
Workflow = Literal["naive", "periodic"]


# ---------------------------------------------------------------------------------------------------- descriptors


def environment_descriptors(atoms: "Atoms", elements: Sequence[str], cutoff_angstrom: float = 5.0,
                            n_radial: int = 12) -> np.ndarray:
    """Per-atom radial environment descriptors (N, len(elements) * n_radial): for each neighbour element, Gaussians
    on a grid of distances up to ``cutoff_angstrom``, weighted by a cosine cutoff (Behler's G2 functions).

    They depend on the structure only, so the configurations sampled by different models (and workflows) are
    compared in one space, whatever model family is fine-tuned.
    """
    from ..analysis import neighbor_pairs

    centres = np.linspace(0.8, cutoff_angstrom, n_radial)
    width = centres[1] - centres[0]
    i, j, d = neighbor_pairs(atoms, cutoff_angstrom, "ijd", full_list=True)
    numbers = np.asarray(atoms.get_chemical_symbols())
    index = {e: k for k, e in enumerate(elements)}
    weight = 0.5 * (np.cos(np.pi * d / cutoff_angstrom) + 1.0)
    gauss = np.exp(-((d[:, None] - centres[None, :]) / width) ** 2) * weight[:, None]
    out = np.zeros((len(atoms), len(elements), n_radial))
    element_of_j = np.array([index[s] for s in numbers[j]], dtype=int) if len(j) else np.zeros(0, dtype=int)
    np.add.at(out, (i, element_of_j), gauss)
    return out.reshape(len(atoms), -1)


def nearest_neighbour_distances(atoms: "Atoms", cutoff_angstrom: float = 6.0) -> np.ndarray:
    """Each atom's distance to its nearest neighbour (Å)."""
    from ..analysis import neighbor_pairs

    i, d = neighbor_pairs(atoms, cutoff_angstrom, "id", full_list=True)
    nearest = np.full(len(atoms), np.inf)
    np.minimum.at(nearest, i, d)
    return nearest


# ---------------------------------------------------------------------------------------------------- fitting


class ReadoutCalculator(Calculator):
    """SevenNet with its readout refitted in closed form on parent frames (energy offset per atom included)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, base_calc, rank: int = 16, ridge: float = 1e-2):
        from .head_fit import readout_for

        super().__init__()
        self.readout = readout_for(base_calc)
        self.rank, self.ridge = rank, ridge
        self.fit_frames: list = []
        self.coefficients = np.zeros(0)
        self.offset_ev_per_atom = 0.0
        info = dict(getattr(base_calc, "umlip_info", {}) or {})
        self.umlip_info = {**info, "version": f"readout refit (rank {rank}) of {info.get('name')}"}

    def add_frames(self, frames: Sequence["LabelledFrame"]) -> None:
        """Linearise the model at each new frame and refit the readout on all frames so far."""
        from .head_fit import FitFrame, fit_readout

        for frame in frames:
            if self.readout.basis is None:
                self.readout.choose_basis(self.readout.evaluate(frame.atoms).atom_features, self.rank)
                self.coefficients = np.zeros(self.readout.basis.shape[1])
            ev = self.readout.evaluate(frame.atoms, directions=np.eye(self.coefficients.size))
            self.fit_frames.append(FitFrame(
                frame.energy_ev, frame.forces_ev_per_angstrom, ev.energy_ev - ev.phi @ self.coefficients,
                ev.forces - np.tensordot(self.coefficients, ev.phi_forces, axes=1), ev.phi, ev.phi_forces))
        self.coefficients, self.offset_ev_per_atom = fit_readout(self.fit_frames, ridge=self.ridge)
        self.readout.set_coefficients(self.coefficients)
        self.reset()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        refitted = self.atoms.copy()
        refitted.calc = self.readout.calc  # the readout's own SevenNet, carrying the refitted weights
        energy = refitted.get_potential_energy() + self.offset_ev_per_atom * len(refitted)
        self.results = {"energy": energy, "free_energy": energy, "forces": refitted.get_forces()}
        if "stress" in properties:
            self.results["stress"] = refitted.get_stress()  # a constant energy per atom adds no stress


class _Fitter:
    """Fits the base model to all labels so far, with the chosen method; ``calc`` is the newest model."""

    def __init__(self, base_calc, fit: Fit, fit_options: dict[str, Any], out_dir: Path):
        self.base_calc, self.fit, self.options, self.out_dir = base_calc, fit, dict(fit_options), out_dir
        self.calc = base_calc
        self.model_dir: str | None = None
        self.rounds = 0
        if fit == "readout":
            self._readout = ReadoutCalculator(base_calc, rank=self.options.pop("rank", 16),
                                              ridge=self.options.pop("ridge", 1e-2))

    def restore(self, labels: list["LabelledFrame"], rounds_of_labels: list[int]) -> None:
        """After a restart: redo the readout fits in order (seconds), or load the trainer's newest saved model."""
        from ..models import load_calculator

        n_rounds = max(rounds_of_labels) + 1
        if self.fit == "readout":
            for r in range(n_rounds):  # identical labels in the same order give identical models
                end = sum(o <= r for o in rounds_of_labels)
                self.update(labels[:end], labels[end - rounds_of_labels.count(r):end])
            return
        self.rounds = n_rounds
        self.model_dir = str(self.out_dir / f"fit_{n_rounds:03d}")
        self.calc = load_calculator(self.model_dir, device=str(getattr(self.base_calc, "device", "cpu")))

    def update(self, all_frames: list["LabelledFrame"], new_frames: list["LabelledFrame"]):
        from ..data import DFTDataset
        from ..finetune import LossWeights, finetune
        from ..models import load_calculator

        self.rounds += 1
        if self.fit == "readout":
            self._readout.add_frames(new_frames)
            self.calc = self._readout
            return self.calc
        out = self.out_dir / f"fit_{self.rounds:03d}"
        # resume=True: a fit killed before the workflow saved its state continues from its last epoch
        options = {"epochs": 20, "loss_weights": LossWeights(stress_gpa=0.0), "val_fraction": 0.0,
                   "progress": False, "resume": True, **self.options}
        report = finetune(copy.deepcopy(self.base_calc), DFTDataset(all_frames, name=f"labels_{len(all_frames)}"),
                          strategy=self.fit, out=out, **options)
        self.model_dir = report.out_dir
        self.calc = load_calculator(report.out_dir, device=str(getattr(self.base_calc, "device", "cpu")))
        return self.calc


# ---------------------------------------------------------------------------------------------------- sampling


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


def _check_inputs(budget: int, parent: Parent | None, temperature_k: float) -> None:
    if not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget (the number of parent labels) must be a positive integer, got {budget!r}")
    if parent is None or isinstance(parent, str):
        raise ValueError(f"parent must be an ASE calculator or a factory (see umlip_helpers.parents.make_parent), "
                         f"got {parent!r}")
    if temperature_k <= 0:
        raise ValueError(f"temperature_k must be positive, got {temperature_k}")


def _run_dir(out_dir: str | Path | None, prefix: str) -> Path:
    """``out_dir``, or a new temporary directory when it is None (see :func:`_drop_run_dir`)."""
    import tempfile

    return Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix=prefix))


def _drop_run_dir(out: Path, out_dir: str | Path | None, fit: Fit | None = None) -> None:
    """Remove a temporary run directory once its files are read, unless a trainer fit's model lives there."""
    import shutil

    if out_dir is None and fit in (None, "readout"):
        shutil.rmtree(out, ignore_errors=True)


def _base(model: Any, device: str):
    from ..models import load_calculator

    return load_calculator(model, device=device) if isinstance(model, (str, Path)) else model


def _md_segment(atoms: "Atoms", calc, steps: int, temperature_k: float, timestep_fs: float, sample_every: int,
                seed: int, init_velocities: bool, out: Path, progress: bool) -> list["Atoms"]:
    """``steps`` of Langevin NVT; the frames every ``sample_every`` steps (with momenta), the last one included."""
    from ase.io import read

    from ..md import run_md

    result = run_md(atoms, calc, "nvt", temperature_k=temperature_k, timestep_fs=timestep_fs, steps=steps,
                    out_dir=out, traj_interval=sample_every, overwrite=True, seed=seed,
                    init_velocities=init_velocities, progress=progress)
    return [f for f in read(result.trajectory_path, ":") if f.info.get("md_step", 0) > 0]


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


def _finish(workflow: Workflow, fit: Fit, budget: int, labels: list["LabelledFrame"], origin: list[int],
            sampled_by: list[int], fitter: _Fitter, steps: int, temperature_k: float, timestep_fs: float,
            seconds: dict[str, float], params: dict[str, Any], parent: Parent) -> SamplingRun:
    first = labels[0].atoms
    run = SamplingRun(
        workflow=workflow, fit=fit, budget=budget, n_parent_calls=len(labels), n_md_steps=steps,
        n_fits=fitter.rounds, temperature_k=float(temperature_k), timestep_fs=float(timestep_fs),
        symbols=first.get_chemical_symbols(), cell_angstrom=first.cell.array.copy(), pbc=first.pbc.tolist(),
        positions_angstrom=np.array([f.atoms.positions for f in labels]),
        parent_energies_ev=np.array([f.energy_ev for f in labels]),
        parent_forces_ev_per_angstrom=np.array([f.forces_ev_per_angstrom for f in labels]),
        origin=np.array(origin), sampled_by_fit=np.array(sampled_by), model_dir=fitter.model_dir,
        md_seconds=seconds["md"], parent_seconds=seconds["parent"], fit_seconds=seconds["fit"],
        provenance=provenance(fitter.base_calc, workflow=workflow, fit=fit, budget=budget, parent=parent_info(parent),
                              temperature_k=temperature_k, timestep_fs=timestep_fs, **params),
    )
    object.__setattr__(run, "_calc", fitter.calc)
    return run


def naive_finetune(
    atoms: "Atoms",
    model: Any,
    parent: Parent,
    budget: int,
    *,
    n_trajectories: int = 4,
    sample_interval_steps: int = 20,
    temperature_k: float = 300.0,
    timestep_fs: float = 2.0,
    fit: Fit = "readout",
    fit_options: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> SamplingRun:
    """Naive fine-tuning: ``n_trajectories`` Langevin MD runs with the base ``model`` from ``atoms`` (different
    seeds), a parent label every ``sample_interval_steps`` until ``budget`` labels are spent, one fit at the end.
    Without ``out_dir`` the trajectories go to a temporary directory, removed at the end unless a trainer fit's
    model (``model_dir``) lives there.
    """
    from tqdm.auto import tqdm

    _check_inputs(budget, parent, temperature_k)
    if n_trajectories < 1 or budget < n_trajectories:
        raise ValueError(f"need 1 <= n_trajectories <= budget, got n_trajectories={n_trajectories}, budget={budget}")
    base = _base(model, device)
    out = _run_dir(out_dir, "umlip-naive-")
    fitter = _Fitter(base, fit, fit_options or {}, out)
    per_trajectory = [budget // n_trajectories + (k < budget % n_trajectories) for k in range(n_trajectories)]
    labels, origin, seconds, steps = [], [], {"md": 0.0, "parent": 0.0, "fit": 0.0}, 0
    with tqdm(total=budget, desc="naive: labels", disable=not progress) as bar:
        for k, n_labels in enumerate(per_trajectory):
            start = time.perf_counter()
            frames = _md_segment(atoms, base, n_labels * sample_interval_steps, temperature_k, timestep_fs,
                                 sample_interval_steps, seed + k, True, out / f"trajectory_{k}", False)
            seconds["md"] += time.perf_counter() - start
            steps += n_labels * sample_interval_steps
            for frame in frames[:n_labels]:
                start = time.perf_counter()
                labels.append(parent_label(parent, frame, f"naive trajectory {k}", len(labels)))
                seconds["parent"] += time.perf_counter() - start
                origin.append(k)
                bar.update(1)
    start = time.perf_counter()
    fitter.update(labels, labels)
    seconds["fit"] += time.perf_counter() - start
    _drop_run_dir(out, out_dir, fit)
    return _finish("naive", fit, budget, labels, origin, [0] * len(labels), fitter, steps, temperature_k,
                   timestep_fs, seconds, dict(n_trajectories=n_trajectories,
                                              sample_interval_steps=sample_interval_steps, seed=seed), parent)


def periodic_finetune(
    atoms: "Atoms",
    model: Any,
    parent: Parent,
    budget: int,
    *,
    interval_steps: int = 20,
    labels_per_interval: int = 1,
    temperature_k: float = 300.0,
    timestep_fs: float = 2.0,
    fit: Fit = "readout",
    fit_options: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> SamplingRun:
    """Periodic fine-tuning: one Langevin MD from ``atoms``; every ``interval_steps`` the newest model's frames
    (``labels_per_interval`` of them, evenly spaced) are labelled, the base model is fitted on all labels so far,
    and that model continues the trajectory (positions and momenta carried over), until ``budget`` labels.

    With ``out_dir`` the labels and the MD state are saved after every fit (atomically); ``resume=True``
    continues an interrupted run from there (readout fits are redone from the saved labels, in seconds). Without
    it they go to a temporary directory, removed at the end unless a trainer fit's model (``model_dir``) lives there.
    """
    from ase.io import read
    from tqdm.auto import tqdm

    from ..data import DFTDataset, read_dataset

    _check_inputs(budget, parent, temperature_k)
    if labels_per_interval < 1 or interval_steps % labels_per_interval:
        raise ValueError(f"labels_per_interval ({labels_per_interval}) must be >= 1 and divide interval_steps "
                         f"({interval_steps})")
    base = _base(model, device)
    out = _run_dir(out_dir, "umlip-periodic-")
    out.mkdir(parents=True, exist_ok=True)
    labels_path, state_path, last_path = out / "labels.extxyz", out / "state.json", out / "last_frame.extxyz"
    settings = dict(budget=budget, interval_steps=interval_steps, labels_per_interval=labels_per_interval,
                    temperature_k=temperature_k, timestep_fs=timestep_fs, fit=fit, seed=seed)
    fitter = _Fitter(base, fit, fit_options or {}, out)
    labels, origin, sampled_by = [], [], []
    seconds, steps, work = {"md": 0.0, "parent": 0.0, "fit": 0.0}, 0, atoms.copy()
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        check_same_settings(state_path, state["settings"], settings, "choose another out_dir to start afresh")
        labels = list(read_dataset(labels_path, require=("energy", "forces")))
        origin, sampled_by, steps, seconds = state["origin"], state["sampled_by_fit"], state["steps"], state["seconds"]
        work = read(last_path)
        fitter.restore(labels, origin)
    rounds = -(-budget // labels_per_interval)
    with tqdm(total=budget, initial=len(labels), desc="periodic: labels", disable=not progress) as bar:
        for r in range(len(set(origin)), rounds):
            start = time.perf_counter()
            frames = _md_segment(work, fitter.calc, interval_steps, temperature_k, timestep_fs,
                                 interval_steps // labels_per_interval, seed + r, r == 0, out / "md_segment", False)
            seconds["md"] += time.perf_counter() - start
            steps += interval_steps
            work = frames[-1].copy()
            work.set_momenta(frames[-1].get_momenta())
            new = []
            for frame in frames[:budget - len(labels)]:
                start = time.perf_counter()
                new.append(parent_label(parent, frame, f"periodic round {r}", len(labels) + len(new)))
                seconds["parent"] += time.perf_counter() - start
                bar.update(1)
            labels += new
            origin += [r] * len(new)
            sampled_by += [fitter.rounds] * len(new)
            start = time.perf_counter()
            fitter.update(labels, new)
            seconds["fit"] += time.perf_counter() - start
            DFTDataset(labels, name="periodic labels").write_extxyz(labels_path)
            _write_state_frame(last_path, work)
            atomic_write_json(state_path, {"settings": settings, "origin": origin, "sampled_by_fit": sampled_by,
                                           "steps": steps, "seconds": seconds})
    _drop_run_dir(out, out_dir, fit)
    return _finish("periodic", fit, budget, labels, origin, sampled_by, fitter, steps, temperature_k, timestep_fs,
                   seconds, dict(interval_steps=interval_steps, labels_per_interval=labels_per_interval, seed=seed),
                   parent)


# ---------------------------------------------------------------------------------------------------- production


@dataclasses.dataclass(frozen=True)
class ProductionComparison(Result):
    """Each workflow's model along its own production MD, against the parent. Dicts are keyed by workflow.

    Energy errors are signed means of (model - parent) per atom; force errors are MAEs over components. Q-scores are
    each frame's largest atom Q-residual against the PCA of that workflow's labelled atoms, divided by the 95th
    percentile of the labelled atoms' own (> 1: outside the labelled data). PCA coverage: the share of the
    production atoms' cells on a 12 x 12 grid of the first two principal components that hold a labelled atom.
    """

    workflows: list
    temperature_k: float
    timestep_fs: float
    steps: int
    eval_interval_steps: int
    energy_error_mev_per_atom: dict
    forces_mae_ev_per_angstrom: dict
    time_ps: dict
    energy_error_along_mev_per_atom: dict
    forces_mae_along_ev_per_angstrom: dict
    q_score_production: dict
    q_score_training: dict
    in_distribution_fraction: dict
    pca_coverage_fraction: dict
    pca_training: dict
    pca_production: dict
    nn_distance_bins_angstrom: np.ndarray
    nn_distance_density: dict
    min_nn_distance_angstrom: dict
    #: frames with a pair closer than 0.5 Å, or a run stopped by run_md's guard (overlap, heat-up, NaN)
    unphysical_events: dict
    md_stop_reason: dict
    steps_completed: dict
    force_mae_ratio_periodic_over_naive: float
    abs_energy_error_ratio_periodic_over_naive: float
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = (
        "temperature_k", "steps", "energy_error_mev_per_atom", "forces_mae_ev_per_angstrom",
        "in_distribution_fraction", "pca_coverage_fraction", "unphysical_events",
        "force_mae_ratio_periodic_over_naive", "abs_energy_error_ratio_periodic_over_naive")

    def plot(self, ax=None):
        """Four panels: energy error along the production MD, PCA map, nearest-neighbour distances, Q-scores."""
        import matplotlib.pyplot as plt

        axes = np.asarray(ax).ravel() if ax is not None else plt.subplots(2, 2, figsize=(10, 7))[1].ravel()
        centres = 0.5 * (self.nn_distance_bins_angstrom[1:] + self.nn_distance_bins_angstrom[:-1])
        for k, name in enumerate(self.workflows):
            colour = f"C{k}"
            axes[0].plot(self.time_ps[name], self.energy_error_along_mev_per_atom[name], color=colour,
                         label=f"{name}: mean {self.energy_error_mev_per_atom[name]:+.2f}")
            pca_p, pca_t = np.asarray(self.pca_production[name]), np.asarray(self.pca_training[name])
            axes[1].scatter(pca_p[:, 0], pca_p[:, 1], s=2, alpha=0.25, color=colour)
            axes[1].scatter(pca_t[:, 0], pca_t[:, 1], s=25, marker="x", color=colour,
                            label=f"{name} labels (coverage {self.pca_coverage_fraction[name]:.2f})")
            axes[2].plot(centres, self.nn_distance_density[name], color=colour, label=name)
            axes[3].hist(self.q_score_production[name], bins=20, histtype="step", color=colour, label=name)
        if "parent" in self.nn_distance_density:
            axes[2].plot(centres, self.nn_distance_density["parent"], "k:", label="parent MD")
        axes[0].axhline(0.0, color="grey", lw=0.5)
        axes[0].set(xlabel="production time (ps)", ylabel="E_model - E_parent (meV/atom)")
        axes[1].set(xlabel="PC 1", ylabel="PC 2", title="atom environments: production (dots), labels (x)")
        axes[2].set(xlabel="nearest-neighbour distance (Å)", ylabel="density")
        axes[3].axvline(1.0, color="grey", ls=":")
        axes[3].set(xlabel="Q-score of production frames", ylabel="frames")
        for a in axes:
            a.legend(fontsize=7)
        return axes


def _pca_coverage(training: np.ndarray, production: np.ndarray, bins: int = 12) -> float:
    lo, hi = production.min(axis=0), production.max(axis=0)
    edges = [np.linspace(lo[d], hi[d] + 1e-12, bins + 1) for d in range(2)]
    occupied = np.histogram2d(production[:, 0], production[:, 1], bins=edges)[0] > 0
    covered = np.histogram2d(training[:, 0], training[:, 1], bins=edges)[0] > 0
    return float((occupied & covered).sum() / max(occupied.sum(), 1))


def compare_production(
    atoms: "Atoms",
    runs: Sequence[SamplingRun],
    parent: Parent,
    *,
    temperature_k: float = 600.0,
    steps: int = 200,
    timestep_fs: float = 2.0,
    eval_interval_steps: int = 10,
    parent_md: bool = False,
    descriptor_cutoff_angstrom: float = 5.0,
    out_dir: str | Path | None = None,
    seed: int = 1,
    progress: bool = True,
) -> ProductionComparison:
    """Run a production MD (Langevin NVT, ``steps``) with each run's model from ``atoms`` and compare it with the
    parent every ``eval_interval_steps``. ``parent_md=True`` also runs the parent itself (cheap parents only) for
    the reference nearest-neighbour distribution. A run stopped by the MD guard is kept up to that point and
    counted as an unphysical event. Without ``out_dir`` the trajectories go to a temporary directory, removed at
    the end.
    """
    from ase.io import read
    from tqdm.auto import tqdm

    from ..md import run_md
    from .uncertainty import DescriptorDistance

    if not runs:
        raise ValueError("compare_production needs at least one SamplingRun")
    if steps < eval_interval_steps:
        raise ValueError(f"steps ({steps}) must be at least eval_interval_steps ({eval_interval_steps})")
    out = _run_dir(out_dir, "umlip-production-")
    elements = sorted(set(atoms.get_chemical_symbols()))
    names = [run.workflow for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"one run per workflow, got {names}")

    def describe(frame):
        return environment_descriptors(frame, elements, descriptor_cutoff_angstrom)

    def trajectory(name, calc):
        reason = None
        try:
            run_md(atoms, calc, "nvt", temperature_k=temperature_k, timestep_fs=timestep_fs, steps=steps,
                   out_dir=out / name, traj_interval=eval_interval_steps, overwrite=True, seed=seed, progress=progress)
        except UnstableStructure as exc:
            reason = str(exc)
        frames = [f for f in read(out / name / "md.traj", ":") if f.info.get("md_step", 0) > 0]
        return frames, reason

    keys = ("err_e", "err_f", "time", "q_p", "q_t", "in_dist", "pca_t", "pca_p", "nn", "min_nn", "events",
            "reason", "done")
    per = {k: {} for k in keys}
    features_t, features_p = {}, {}
    n_atoms = len(atoms)
    for run in runs:
        name = run.workflow
        frames, reason = trajectory(name, run.calculator())
        err_e, err_f = [], []
        for frame in tqdm(frames, desc=f"{name}: parent along production", disable=not progress):
            e_model, f_model = frame.get_potential_energy(), frame.get_forces()
            e_parent, f_parent = parent_single_point(parent, frame)
            err_e.append(1000.0 * (e_model - e_parent) / n_atoms)
            err_f.append(float(np.abs(f_model - f_parent).mean()))
        training = [describe(f.atoms) for f in run.frames()]
        production = [describe(f) for f in frames]
        distance = DescriptorDistance(np.vstack(training))
        nn = [nearest_neighbour_distances(f) for f in frames]
        per["err_e"][name], per["err_f"][name] = np.array(err_e), np.array(err_f)
        per["time"][name] = np.array([f.info["md_step"] * timestep_fs / 1000.0 for f in frames])
        per["q_p"][name] = np.array([distance.score(x) for x in production])
        per["q_t"][name] = np.array([distance.score(x) for x in training])
        per["in_dist"][name] = float(np.mean(per["q_p"][name] <= 1.0)) if frames else float("nan")
        per["nn"][name] = np.concatenate(nn) if nn else np.zeros(0)
        per["min_nn"][name] = float(per["nn"][name].min()) if nn else float("nan")
        per["events"][name] = int(sum(d.min() < 0.5 for d in nn) + (reason is not None))
        per["reason"][name] = reason
        per["done"][name] = int(frames[-1].info["md_step"]) if frames else 0
        features_t[name], features_p[name] = np.vstack(training), np.vstack(production)
    if parent_md:
        from ..parents import parent_calculator

        parent_calc = parent_calculator(parent)
        frames, _ = trajectory("parent", parent_calc)
        per["nn"]["parent"] = np.concatenate([nearest_neighbour_distances(f) for f in frames])

    everything = np.vstack(list(features_t.values()) + list(features_p.values()))
    mean = everything.mean(axis=0)
    components = np.linalg.svd(everything - mean, full_matrices=False)[2][:2]
    for name in names:
        per["pca_t"][name] = (features_t[name] - mean) @ components.T
        per["pca_p"][name] = (features_p[name] - mean) @ components.T
    all_nn = np.concatenate([v for v in per["nn"].values() if v.size])
    edges = np.linspace(max(all_nn.min() - 0.1, 0.0), all_nn.max() + 0.1, 61)
    density = {name: np.histogram(v, bins=edges, density=True)[0] for name, v in per["nn"].items()}

    def mean_of(values):
        return {name: float(np.mean(v)) if len(v) else float("nan") for name, v in values.items()}

    _drop_run_dir(out, out_dir)
    energy, forces = mean_of(per["err_e"]), mean_of(per["err_f"])
    both = "periodic" in names and "naive" in names
    return ProductionComparison(
        workflows=names, temperature_k=float(temperature_k), timestep_fs=float(timestep_fs), steps=int(steps),
        eval_interval_steps=int(eval_interval_steps), energy_error_mev_per_atom=energy,
        forces_mae_ev_per_angstrom=forces, time_ps=per["time"], energy_error_along_mev_per_atom=per["err_e"],
        forces_mae_along_ev_per_angstrom=per["err_f"], q_score_production=per["q_p"], q_score_training=per["q_t"],
        in_distribution_fraction=per["in_dist"],
        pca_coverage_fraction={n: _pca_coverage(per["pca_t"][n], per["pca_p"][n]) for n in names},
        pca_training=per["pca_t"], pca_production=per["pca_p"], nn_distance_bins_angstrom=edges,
        nn_distance_density=density, min_nn_distance_angstrom=per["min_nn"], unphysical_events=per["events"],
        md_stop_reason=per["reason"], steps_completed=per["done"],
        force_mae_ratio_periodic_over_naive=forces["periodic"] / forces["naive"] if both else float("nan"),
        abs_energy_error_ratio_periodic_over_naive=(abs(energy["periodic"]) / abs(energy["naive"]) if both
                                                    else float("nan")),
        provenance=provenance(None, parent=parent_info(parent), runs={r.workflow: r.provenance["model"] for r in runs},
                              temperature_k=temperature_k, steps=steps, timestep_fs=timestep_fs,
                              eval_interval_steps=eval_interval_steps, seed=seed,
                              descriptor_cutoff_angstrom=descriptor_cutoff_angstrom),
    )


# ---------------------------------------------------------------------------------------------------- profiles

#: Settings of notebook 07 and benchmarks/periodic_vs_naive.py. "ci": 4-atom Au, EMT parent, closed-form readout
#: fits (minutes on a laptop CPU); for Au SevenNet-0 is much stiffer than EMT, a strong bias. "full": 32-atom Au,
#: trainer fits (a GPU). "ymno3": real VASP frames through the nearest-frame lookup parent. "gpaw": 4-atom Au with
#: a GPAW PBE parent (about an hour on a CPU).
STUDY_PROFILES: dict[str, dict[str, Any]] = {
    "ci": dict(system="Au", repeat=1, parent="emt", model="sevennet-0", fit="readout", fit_options={},
               budget=6, n_trajectories=3, interval_steps=20, sampling_k=300.0, production_k=600.0,
               production_steps=100, eval_interval_steps=5, timestep_fs=2.0, parent_md=True),
    "full": dict(system="Au", repeat=2, parent="emt", model="sevennet-0", fit="head", fit_options={"epochs": 30},
                 budget=40, n_trajectories=8, interval_steps=50, sampling_k=300.0, production_k=600.0,
                 production_steps=2000, eval_interval_steps=20, timestep_fs=2.0, parent_md=True),
    "ymno3": dict(system="YMnO3", repeat=1, parent="labelled", model="sevennet-0", fit="readout", fit_options={},
                  budget=8, n_trajectories=4, interval_steps=10, sampling_k=300.0, production_k=600.0,
                  production_steps=40, eval_interval_steps=10, timestep_fs=1.0, parent_md=False),
    "gpaw": dict(system="Au", repeat=1, parent="gpaw", model="sevennet-0", fit="readout", fit_options={},
                 budget=6, n_trajectories=3, interval_steps=20, sampling_k=300.0, production_k=600.0,
                 production_steps=100, eval_interval_steps=20, timestep_fs=2.0, parent_md=False),
}


def study_setup(settings: dict[str, Any], ymno3_path: str | Path | None = None) -> tuple["Atoms", Parent]:
    """The starting structure and the parent a profile of :data:`STUDY_PROFILES` names."""
    from ase.build import bulk

    from ..parents import make_parent

    if settings["system"] == "YMnO3":
        from ..data import read_dataset

        path = ymno3_path or Path(__file__).resolve().parents[2] / "data" / "ymno3" / "ymno3_vasp_200.xyz"
        dataset = read_dataset(path, require=("energy", "forces"))
        atoms = dataset[0].atoms.copy()
        atoms.calc = None
        return atoms, make_parent("labelled", dataset=dataset)
    atoms = bulk(settings["system"], cubic=True).repeat(settings["repeat"])
    options = {"kpts_density": 3.0, "ecut_ev": 400.0} if settings["parent"] == "gpaw" else {}
    return atoms, make_parent(settings["parent"], **options)
