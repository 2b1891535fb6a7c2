"""Production comparison: a longer MD with each fitted model of :mod:`.periodic`, its error against the parent
along that trajectory, how far the production frames lie from the labelled ones (Q-residuals of per-atom
environment descriptors, :mod:`.uncertainty`; PCA coverage), and artefacts (nearest-neighbour distances, unphysical
events)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from ..io import provenance
from ..parents import Parent, parent_info, parent_single_point
from ..results import Result
from .periodic import SamplingRun, drop_run_dir, langevin_frames, run_dir
from .settings import ProductionSettings, settings_from
from .uncertainty import DescriptorDistance, environment_descriptors, nearest_neighbour_distances

if TYPE_CHECKING:
    from ase import Atoms


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


@dataclasses.dataclass
class _Measured:
    """One workflow's production MD, measured (the per-workflow entries of :class:`ProductionComparison`)."""

    err_e: np.ndarray
    err_f: np.ndarray
    time: np.ndarray
    q_p: np.ndarray
    q_t: np.ndarray
    in_dist: float
    nn: np.ndarray
    min_nn: float
    events: int
    reason: str | None
    done: int
    features_t: np.ndarray
    features_p: np.ndarray


class _Production:
    """Runs and measures the production MD of each model from ``atoms`` (Langevin NVT), in ``out/<workflow>``."""

    def __init__(self, atoms: "Atoms", parent: Parent, settings: ProductionSettings, out: Path, progress: bool):
        self.atoms, self.parent, self.settings, self.out, self.progress = atoms, parent, settings, out, progress
        self.elements = sorted(set(atoms.get_chemical_symbols()))

    def describe(self, frame: "Atoms") -> np.ndarray:
        return environment_descriptors(frame, self.elements, self.settings.descriptor_cutoff_angstrom)

    def trajectory(self, name: str, calc) -> tuple[list["Atoms"], str | None]:
        s = self.settings
        return langevin_frames(self.atoms, calc, s.steps, s.temperature_k, s.timestep_fs, s.eval_interval_steps,
                               s.seed, self.out / name, progress=self.progress, keep_unstable=True)

    def errors_along(self, name: str, frames: list["Atoms"]) -> tuple[np.ndarray, np.ndarray]:
        """Energy (meV/atom, model - parent) and force MAE (eV/Å) of the model at each frame."""
        from tqdm.auto import tqdm

        n_atoms = len(self.atoms)
        err_e, err_f = [], []
        for frame in tqdm(frames, desc=f"{name}: parent along production", disable=not self.progress):
            e_model, f_model = frame.get_potential_energy(), frame.get_forces()
            e_parent, f_parent = parent_single_point(self.parent, frame)
            err_e.append(1000.0 * (e_model - e_parent) / n_atoms)
            err_f.append(float(np.abs(f_model - f_parent).mean()))
        return np.array(err_e), np.array(err_f)

    def measure(self, run: SamplingRun) -> _Measured:
        name = run.workflow
        frames, reason = self.trajectory(name, run.calculator())
        err_e, err_f = self.errors_along(name, frames)
        training = [self.describe(f.atoms) for f in run.frames()]
        production = [self.describe(f) for f in frames]
        distance = DescriptorDistance(np.vstack(training))
        nn = [nearest_neighbour_distances(f) for f in frames]
        q_p = np.array([distance.score(x) for x in production])
        all_nn = np.concatenate(nn) if nn else np.zeros(0)
        return _Measured(
            err_e=err_e, err_f=err_f, time=np.array([f.info["md_step"] * self.settings.timestep_fs / 1000.0
                                                     for f in frames]),
            q_p=q_p, q_t=np.array([distance.score(x) for x in training]),
            in_dist=float(np.mean(q_p <= 1.0)) if frames else float("nan"), nn=all_nn,
            min_nn=float(all_nn.min()) if nn else float("nan"),
            events=int(sum(d.min() < 0.5 for d in nn) + (reason is not None)), reason=reason,
            done=int(frames[-1].info["md_step"]) if frames else 0, features_t=np.vstack(training),
            features_p=np.vstack(production))

    def parent_neighbour_distances(self) -> np.ndarray:
        """Nearest-neighbour distances along an MD with the parent itself (the reference distribution)."""
        from ..parents import parent_calculator

        frames, _ = self.trajectory("parent", parent_calculator(self.parent))
        return np.concatenate([nearest_neighbour_distances(f) for f in frames])


def _pca_maps(measured: dict[str, _Measured]) -> tuple[dict, dict]:
    """Training and production atoms on the first two principal components of all of them together."""
    everything = np.vstack([m.features_t for m in measured.values()] + [m.features_p for m in measured.values()])
    mean = everything.mean(axis=0)
    components = np.linalg.svd(everything - mean, full_matrices=False)[2][:2]
    return ({name: (m.features_t - mean) @ components.T for name, m in measured.items()},
            {name: (m.features_p - mean) @ components.T for name, m in measured.items()})


def _nn_density(nn: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """Common bin edges over every distribution, and each one's density on them."""
    all_nn = np.concatenate([v for v in nn.values() if v.size])
    edges = np.linspace(max(all_nn.min() - 0.1, 0.0), all_nn.max() + 0.1, 61)
    return edges, {name: np.histogram(v, bins=edges, density=True)[0] for name, v in nn.items()}


def _mean_of(values: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(v)) if len(v) else float("nan") for name, v in values.items()}


def compare_production(
    atoms: "Atoms",
    runs: Sequence[SamplingRun],
    parent: Parent,
    *,
    settings: ProductionSettings | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> ProductionComparison:
    """Run a production MD (Langevin NVT, ``steps``) with each run's model from ``atoms`` and compare it with the
    parent every ``eval_interval_steps``. ``parent_md=True`` also runs the parent itself (cheap parents only) for
    the reference nearest-neighbour distribution. A run stopped by the MD guard is kept up to that point and
    counted as an unphysical event. Without ``out_dir`` the trajectories go to a temporary directory, removed at
    the end.

    ``settings`` (a :class:`~.settings.ProductionSettings`: ``temperature_k``, ``steps``, ``timestep_fs``,
    ``eval_interval_steps``, ``parent_md``, ``descriptor_cutoff_angstrom``, ``seed``) or those fields as keyword
    arguments.
    """
    s = settings_from(ProductionSettings, settings, options, "compare_production")
    if not runs:
        raise ValueError("compare_production needs at least one SamplingRun")
    names = [run.workflow for run in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"one run per workflow, got {names}")
    out = run_dir(out_dir, "umlip-production-")
    study = _Production(atoms, parent, s, out, progress)
    measured = {run.workflow: study.measure(run) for run in runs}
    nn = {name: m.nn for name, m in measured.items()}
    if s.parent_md:
        nn["parent"] = study.parent_neighbour_distances()
    drop_run_dir(out, out_dir)
    return _comparison(names, measured, nn, s, parent, runs)


def _comparison(names: list[str], measured: dict[str, _Measured], nn: dict[str, np.ndarray],
                s: ProductionSettings, parent: Parent, runs: Sequence[SamplingRun]) -> ProductionComparison:
    def per(field: str) -> dict:
        return {name: getattr(m, field) for name, m in measured.items()}

    pca_t, pca_p = _pca_maps(measured)
    edges, density = _nn_density(nn)
    energy, forces = _mean_of(per("err_e")), _mean_of(per("err_f"))
    both = "periodic" in names and "naive" in names
    return ProductionComparison(
        workflows=names, temperature_k=float(s.temperature_k), timestep_fs=float(s.timestep_fs), steps=int(s.steps),
        eval_interval_steps=int(s.eval_interval_steps), energy_error_mev_per_atom=energy,
        forces_mae_ev_per_angstrom=forces, time_ps=per("time"), energy_error_along_mev_per_atom=per("err_e"),
        forces_mae_along_ev_per_angstrom=per("err_f"), q_score_production=per("q_p"), q_score_training=per("q_t"),
        in_distribution_fraction=per("in_dist"),
        pca_coverage_fraction={n: _pca_coverage(pca_t[n], pca_p[n]) for n in names},
        pca_training=pca_t, pca_production=pca_p, nn_distance_bins_angstrom=edges,
        nn_distance_density=density, min_nn_distance_angstrom=per("min_nn"), unphysical_events=per("events"),
        md_stop_reason=per("reason"), steps_completed=per("done"),
        force_mae_ratio_periodic_over_naive=forces["periodic"] / forces["naive"] if both else float("nan"),
        abs_energy_error_ratio_periodic_over_naive=(abs(energy["periodic"]) / abs(energy["naive"]) if both
                                                    else float("nan")),
        provenance=provenance(None, parent=parent_info(parent), runs={r.workflow: r.provenance["model"] for r in runs},
                              temperature_k=s.temperature_k, steps=s.steps, timestep_fs=s.timestep_fs,
                              eval_interval_steps=s.eval_interval_steps, seed=s.seed,
                              descriptor_cutoff_angstrom=s.descriptor_cutoff_angstrom),
    )
