"""Online active learning (FINETUNA-style): relax on the surrogate, query the parent, refit the readout, repeat.

Musielewicz et al., Mach. Learn.: Sci. Technol. 3, 03LT01 (2022), doi:10.1088/2632-2153/ac8fe0.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, get_args

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..errors import UmlipError
from ..io import provenance
from ..results import Result
from ..parents import Parent, ParentFailed, parent_info, parent_single_point
from .head_fit import FitFrame, fit_readout, has_closed_form_readout, predict, readout_for
from .uncertainty import DescriptorDistance, committee_coefficients, committee_force_std

if TYPE_CHECKING:
    from ase import Atoms

Query = Literal["k_steps", "relax_only", "uncertainty"]
Update = Literal["closed_form", "finetune", "none"]
Correction = Literal["gp", "secant", "anchor", "none"]
ParentOptimizer = Literal["BFGS", "GPMin"]
FirstParentCall = Literal["start", "prior_minimum"]


@dataclasses.dataclass(frozen=True)
class ActiveRelaxResult(Result):
    converged: bool
    n_parent_calls: int
    n_surrogate_steps: int
    final_parent_energy_ev: float
    final_parent_fmax_ev_per_angstrom: float
    #: one entry per trajectory point: parent energy at parent calls, else the surrogate's (offset-aligned)
    energies_ev: list
    is_parent_call: list
    #: why each parent call was made: "start", "prior minimum", "prior reach", "surrogate converged", "k steps",
    #: "trust radius", "step bound", "uncertainty" or "max surrogate steps"
    parent_call_reasons: list
    positions_angstrom: np.ndarray
    symbols: list
    cell_angstrom: np.ndarray
    pbc: list
    #: at each parent call after the first: what the surrogate predicted there, and how wrong it was
    committee_force_std_ev_per_angstrom: list
    descriptor_q_score: list
    gp_force_std_ev_per_angstrom: list
    true_force_error_ev_per_angstrom: list
    surrogate_seconds: float
    parent_seconds: float
    training_seconds: float
    wall_seconds: float
    stop_reason: str
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = (
        "converged", "n_parent_calls", "n_surrogate_steps", "final_parent_energy_ev",
        "final_parent_fmax_ev_per_angstrom", "surrogate_seconds", "parent_seconds", "training_seconds",
        "wall_seconds")

    def final_atoms(self) -> "Atoms":
        from ase import Atoms

        return Atoms(self.symbols, positions=self.positions_angstrom[-1], cell=self.cell_angstrom, pbc=self.pbc)

    def plot(self, ax=None):
        """Energy along the relaxation; parent calls are marked."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 3.5))
        energies = np.asarray(self.energies_ev, dtype=float)
        parent = np.asarray(self.is_parent_call, dtype=bool)
        steps = np.arange(energies.size)
        ax.plot(steps, energies, "-", color="grey", lw=1, label="surrogate steps")
        ax.plot(steps[parent], energies[parent], "o", color="C3", label=f"parent calls ({parent.sum()})")
        ax.set_xlabel("relaxation step")
        ax.set_ylabel("energy (eV)")
        ax.legend()
        return ax


class ActiveLearningFailed(UmlipError, RuntimeError):
    """The relaxation stopped on an error; ``result`` holds the trajectory up to that point."""

    def __init__(self, message: str, result: ActiveRelaxResult):
        super().__init__(message)
        self.result = result


class OnlineSurrogate(Calculator):
    """The refitted model plus a correction fitted to what the refit leaves of the parent's energies and forces.

    The readout fit alone cannot represent the parent (a different potential); left uncorrected, the surrogate's
    curvature stays wrong and the relaxation stalls with parent forces above ``fmax``. ``correction``:

    * ``"gp"``: Gaussian-process regression (ASE's ``gpmin`` GP, squared-exponential kernel with derivatives,
      length ``gp_length_scale_angstrom``) of the residual energy and forces at every parent point, so the
      surrogate reproduces all parent points and interpolates smoothly between them.
    * ``"secant"``: an anchor that adds the residual force at the newest parent point as a constant force (and
      the matching linear energy term), plus ``C (x - x_anchor)`` (and ``-½ dᵀCd`` in the energy) with ``C``
      fitted to how the residual changed along the steps between parent points (Powell-symmetric-Broyden).
    * ``"anchor"``: the anchor alone; ``"none"``: the refitted model alone.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, model_calc, rank: int, ridge: float, committee_size: int, seed: int,
                 correction: Correction = "gp", update: Update = "closed_form", finetune_epochs: int = 20,
                 gp_length_scale_angstrom: float = 0.4):
        super().__init__()
        if correction not in get_args(Correction):
            raise ValueError(f"correction must be gp, secant, anchor or none, not {correction!r}")
        self.correction = correction
        self.anchor, self.secant = correction in ("secant", "anchor"), correction == "secant"
        self.update, self.gp_length_scale_angstrom = update, gp_length_scale_angstrom
        self.secant_matrix = None
        self.gp = None
        self.readout = readout_for(model_calc) if update == "closed_form" else None
        self.engine = EngineModel(model_calc, finetune_epochs, seed) if update == "finetune" else \
            FixedModel(model_calc) if update == "none" else None
        self.residuals: list[tuple[float, np.ndarray]] = []  # parent minus refitted model, per parent frame
        self.rank, self.ridge, self.committee_size, self.seed = rank, ridge, committee_size, seed
        self.frames: list[FitFrame] = []
        self.frame_features: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []
        self.coefficients = np.zeros(0)
        self.offset_per_atom = 0.0
        self.anchor_positions = None
        self.anchor_energy = 0.0
        self.anchor_forces = None
        self.committee_directions = np.zeros((0, 0))
        self.descriptor: DescriptorDistance | None = None
        self.with_uncertainty = False
        self.last_uncertainty = (float("nan"), float("nan"), float("nan"))  # committee, descriptor, GP
        self.seconds = 0.0

    def add_parent_frame(self, atoms: "Atoms", energy: float, forces: np.ndarray) -> None:
        """Refit the model on every parent frame so far (closed form or the fine-tuning engine), then refit the
        correction and re-anchor at ``atoms``."""
        self.positions.append(atoms.get_positions())
        if self.engine is not None:
            self.residuals = self.engine.refit(atoms, energy, forces)
        else:
            self.refit_readout(atoms, energy, forces)
        self.secant_matrix = self.secant_correction() if self.secant else None
        self.gp = self.residual_gp() if self.correction == "gp" else None
        self.anchor_at(len(self.positions) - 1)

    def residual_gp(self):
        """ASE's gpmin Gaussian process on the residual (parent minus refitted model) energies and forces, with
        its default weight (1 eV) and noise (0.005), around the mean energy residual."""
        from ase.optimize.gpmin.gp import GaussianProcess
        from ase.optimize.gpmin.prior import ConstantPrior

        positions = np.array([p.reshape(-1) for p in self.positions])
        targets = np.array([np.concatenate([[e], -f.reshape(-1)]) for e, f in self.residuals])
        gp = GaussianProcess(prior=ConstantPrior(float(targets[:, 0].mean())))
        gp.set_hyperparams(np.array([1.0, self.gp_length_scale_angstrom, 0.005]))
        gp.train(positions, targets)
        return gp

    def refit_readout(self, atoms: "Atoms", energy: float, forces: np.ndarray) -> None:
        """Linearise at ``atoms`` and refit the readout in closed form; committee and descriptor PCA too."""
        if self.readout.basis is None:
            self.readout.choose_basis(self.readout.evaluate(atoms).atom_features, self.rank)
            self.coefficients = np.zeros(self.readout.basis.shape[1])
        k = self.coefficients.size
        ev = self.readout.evaluate(atoms, directions=np.eye(k))
        base_energy = ev.energy_ev - ev.phi @ self.coefficients
        base_forces = ev.forces - np.tensordot(self.coefficients, ev.phi_forces, axes=1)
        self.frames.append(FitFrame(energy, forces, base_energy, base_forces, ev.phi, ev.phi_forces))
        self.frame_features.append(ev.atom_features)
        self.coefficients, self.offset_per_atom = self.fit()
        self.readout.set_coefficients(self.coefficients)
        self.residuals = []
        for frame in self.frames:
            fitted_energy, fitted_forces = predict(frame, self.coefficients, self.offset_per_atom)
            self.residuals.append((frame.energy_ev - fitted_energy, frame.forces - fitted_forces))
        if self.committee_size > 1 and self.training_frames():
            replicas = committee_coefficients(self.training_frames(), self.committee_size, self.ridge,
                                              self.seed + len(self.frames))
            self.committee_directions = replicas - replicas.mean(axis=0)
        self.descriptor = DescriptorDistance(np.vstack(self.frame_features))

    def anchor_at(self, index: int) -> None:
        """Make the surrogate reproduce parent frame ``index`` exactly (a constant force and energy correction)."""
        energy_residual, force_residual = self.residuals[index]
        self.anchor_positions = self.positions[index]
        self.anchor_energy = energy_residual if self.anchor else 0.0
        self.anchor_forces = force_residual if self.anchor else np.zeros_like(force_residual)
        self.reset()

    def secant_correction(self) -> np.ndarray:
        """A symmetric force correction C (3N x 3N, eV/Å²) with C s = y for the steps s between successive parent
        frames and y the change of the fit's force residual along them (Powell-symmetric-Broyden updates, replayed
        in order from C = 0 after every refit, so the newest step is matched exactly)."""
        size = self.positions[0].size
        correction = np.zeros((size, size))
        residuals = [force_residual.reshape(-1) for _, force_residual in self.residuals]
        for i in range(1, len(self.positions)):
            step = (self.positions[i] - self.positions[i - 1]).reshape(-1)
            norm2 = float(step @ step)
            if norm2 < 1e-10:
                continue
            miss = residuals[i] - residuals[i - 1] - correction @ step
            correction += (np.outer(miss, step) + np.outer(step, miss)) / norm2 \
                - float(miss @ step) * np.outer(step, step) / norm2 ** 2
        return correction

    def training_frames(self) -> list[FitFrame]:
        """With the anchor: earlier frames as differences from the newest one (the anchor fixes the newest point
        exactly, so the readout only has to learn how energy and forces change away from it)."""
        if not self.anchor:
            return self.frames
        last = self.frames[-1]
        return [FitFrame(f.energy_ev - last.energy_ev, f.forces - last.forces, f.base_energy_ev - last.base_energy_ev,
                         f.base_forces - last.base_forces, f.phi - last.phi, f.phi_forces - last.phi_forces)
                for f in self.frames[:-1]]

    def fit(self) -> tuple[np.ndarray, float]:
        frames = self.training_frames()
        if not frames:
            return np.zeros_like(self.coefficients), 0.0
        coefficients, offset = fit_readout(frames, ridge=self.ridge)
        return coefficients, 0.0 if self.anchor else offset

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        start = time.perf_counter()
        if self.engine is not None:
            model_energy, model_forces = self.engine.energy_forces(self.atoms)
        else:
            ev = self.readout.evaluate(self.atoms, directions=self.committee_directions if self.with_uncertainty
                                       else None)
            model_energy, model_forces = ev.energy_ev + self.offset_per_atom * len(self.atoms), ev.forces
        displacement = self.atoms.get_positions() - self.anchor_positions
        energy = model_energy + self.anchor_energy - float((self.anchor_forces * displacement).sum())
        forces = model_forces + self.anchor_forces
        gp_std = float("nan")
        if self.gp is not None:
            x = self.atoms.get_positions().reshape(-1)
            if self.with_uncertainty:
                energy_and_gradient, covariance = self.gp.predict(x, get_variance=True)
                gp_std = gp_force_std(np.diag(covariance)[1:].reshape(-1, 3), self.atoms)
            else:
                energy_and_gradient = self.gp.predict(x)
            energy += float(energy_and_gradient[0])
            forces = forces - energy_and_gradient[1:].reshape(-1, 3)
        if self.secant_matrix is not None:
            corrected = self.secant_matrix @ displacement.reshape(-1)
            energy -= 0.5 * float(displacement.reshape(-1) @ corrected)
            forces = forces + corrected.reshape(-1, 3)
        self.results["energy"] = energy
        self.results["forces"] = forces
        if self.with_uncertainty and self.engine is None:
            std = committee_force_std(ev.phi_forces) if ev.phi_forces is not None else float("nan")
            self.last_uncertainty = (std, self.descriptor.score(ev.atom_features), gp_std)
        self.seconds += time.perf_counter() - start


def relax_on_prior(atoms: "Atoms", prior, fmax: float, max_move_angstrom: float, maxstep: float,
                   max_steps: int) -> tuple[list[tuple[float, np.ndarray]], str]:
    """BFGS on ``prior`` alone, in place, until its forces are below ``fmax`` or an atom has moved
    ``max_move_angstrom``; returns (prior energy, positions) at the start and after every step, and why it stopped
    ("prior minimum", "prior reach" or "max surrogate steps")."""
    from ase.optimize import BFGS

    atoms.calc = prior
    start = atoms.get_positions()
    optimizer = BFGS(atoms, maxstep=maxstep, logfile=None)
    stretch = []
    while True:
        forces = atoms.get_forces()
        stretch.append((float(atoms.get_potential_energy()), atoms.get_positions()))
        if np.linalg.norm(forces, axis=1).max() < fmax:
            return stretch, "prior minimum"
        if np.linalg.norm(atoms.get_positions() - start, axis=1).max() >= max_move_angstrom:
            return stretch, "prior reach"
        if len(stretch) > max_steps:
            return stretch, "max surrogate steps"
        optimizer.step()


def free_atoms(atoms: "Atoms") -> np.ndarray:
    """Mask of the atoms no index constraint (FixAtoms and the like) holds."""
    free = np.ones(len(atoms), dtype=bool)
    for constraint in atoms.constraints:
        if hasattr(constraint, "get_indices"):
            free[constraint.get_indices()] = False
    return free


def gp_force_std(force_variance: np.ndarray, atoms: "Atoms") -> float:
    """The GP's predictive standard deviation of the force on the most uncertain free atom (eV/Å)."""
    per_atom = force_variance.clip(min=0.0).sum(axis=1)
    return float(np.sqrt(np.where(free_atoms(atoms), per_atom, 0.0).max()))


class FixedModel:
    """The model as it is, never refitted (``update="none"``): the correction alone learns from the parent. Works
    for any ASE calculator, including a mix of models."""

    def __init__(self, calc):
        self.calc = calc
        self.frames: list = []
        self.residuals: list[tuple[float, np.ndarray]] = []  # parent minus model, per frame

    def refit(self, atoms: "Atoms", energy: float, forces: np.ndarray) -> list[tuple[float, np.ndarray]]:
        """Store the parent frame; returns (energy, forces) residuals, parent minus model, of every frame so far."""
        from ..data import LabelledFrame

        frame_atoms = atoms.copy()
        frame_atoms.calc = None
        self.frames.append(LabelledFrame(frame_atoms, float(energy), np.array(forces), None, "parent",
                                         len(self.frames)))
        self.train()
        for frame in self.frames[len(self.residuals):]:
            model_energy, model_forces = self.energy_forces(frame.atoms)
            self.residuals.append((frame.energy_ev - model_energy, frame.forces_ev_per_angstrom - model_forces))
        return list(self.residuals)

    def train(self) -> None:
        """Nothing to train: the model is fixed, so earlier residuals stay valid."""

    def energy_forces(self, atoms: "Atoms") -> tuple[float, np.ndarray]:
        work = atoms.copy()
        work.calc = self.calc
        return float(work.get_potential_energy()), work.get_forces(apply_constraint=False)


class EngineModel(FixedModel):
    """The surrogate's model fine-tuned by gradient descent with :func:`umlip_helpers.finetune.finetune` (head
    strategy), continuing from its previous weights on all parent frames at every parent call. Works for every
    model family the fine-tuning engine supports."""

    def __init__(self, calc, epochs: int, seed: int):
        import copy

        super().__init__(copy.deepcopy(calc))  # trained in place; the caller's model stays as it was
        self.epochs, self.seed = epochs, seed

    def train(self) -> None:
        import shutil
        import tempfile

        from ..finetune import LossWeights, finetune

        out = tempfile.mkdtemp(prefix="umlip-active-")
        try:
            finetune(self.calc, self.frames, strategy="head", out=out, epochs=self.epochs, val_fraction=0.0,
                     loss_weights=LossWeights(stress_gpa=0.0), seed=self.seed, progress=False)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        self.calc.reset()
        self.residuals = []  # the model changed: every frame's residual is recomputed


def constrained_fmax(atoms: "Atoms", forces: np.ndarray) -> float:
    forces = forces.copy()
    for constraint in atoms.constraints:
        constraint.adjust_forces(atoms, forces)
    return float(np.linalg.norm(forces, axis=1).max())


def relax_active(
    atoms: "Atoms",
    model: Any = "sevennet-0",
    parent: Parent | None = None,
    fmax: float = 0.03,
    query: Query = "k_steps",
    k: int = 10,
    *,
    surrogate_fmax_ratio: float = 0.5,
    trust_radius_angstrom: float = 0.25,
    max_trust_radius_angstrom: float = 0.5,
    uphill_tolerance_ev: float = 1e-3,
    k_grows_with_trust: bool = True,
    trusted_prior_residual: float | None = 0.25,
    min_stiffness_ev_per_angstrom2: float | None = None,
    first_parent_call: FirstParentCall = "start",
    prior_reach_angstrom: float | None = None,
    uncertainty_threshold_ev_per_angstrom: float = 0.05,
    rank: int = 2,
    ridge: float = 1e-2,
    correction: Correction = "gp",
    gp_length_scale_angstrom: float = 0.4,
    update: Update | Literal["auto"] = "auto",
    finetune_epochs: int = 20,
    committee_size: int = 4,
    maxstep: float = 0.2,
    max_parent_calls: int = 100,
    max_surrogate_steps: int = 2000,
    trajectory_json: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> ActiveRelaxResult:
    """Relax ``atoms`` to parent forces ≤ ``fmax`` eV/Å, calling the parent only when ``query`` says so.

    The optimiser (ASE BFGS) follows the surrogate. ``query``: ``"k_steps"`` calls the parent every ``k``
    surrogate steps and whenever the surrogate converges (to ``surrogate_fmax_ratio * fmax``) or an atom leaves
    the trust radius around the last parent point; ``"relax_only"``
    only when it converges; ``"uncertainty"`` when the committee force spread has grown by more than
    ``uncertainty_threshold_ev_per_angstrom`` since the last parent point (or after ``k`` steps, or on
    convergence; the spread's absolute level is not calibrated, as the benchmark's correlations show). Every
    parent point refits the model on all parent frames so far and restarts BFGS (Hessian reset). ``update``:
    ``"closed_form"`` refits a ``rank``-dimensional subspace of the readout by ridge least squares
    (:mod:`.head_fit`, SevenNet); ``"finetune"`` runs the fine-tuning engine's head strategy for
    ``finetune_epochs`` epochs (any family it supports); ``"none"`` keeps the model as it is (any ASE
    calculator), so that only the correction learns; ``"auto"`` picks closed form where available, else the
    engine for the model families it knows, else ``"none"``. On top of
    the refitted model, ``correction`` (see :class:`OnlineSurrogate`) makes the surrogate reproduce the parent
    points: ``"gp"`` a Gaussian process on the residual at every parent point, ``"secant"`` an anchor at the
    newest point plus a secant curvature correction along the steps between them.
    The trust radius starts at ``trust_radius_angstrom`` and adapts as in trust-region methods: a segment
    that raises the parent energy by more than ``uphill_tolerance_ev`` is rejected (back to the previous point,
    radius halved); one whose energy drop the surrogate predicted well doubles it (up to
    ``max_trust_radius_angstrom``). With ``k_grows_with_trust`` ``k`` counts at the initial radius and grows
    with it. If the prior's forces at the start differ from the parent's by at most ``trusted_prior_residual``
    of their norm (free atoms), the first segment already gets the largest radius. With
    ``min_stiffness_ev_per_angstrom2`` (k) no segment reaches further than the harmonic bound
    ``fmax_parent / k`` (at least 0.01 Å) from its parent point: near convergence a wrong surrogate cannot throw
    the structure out of the parent's basin. ``first_parent_call``:
    ``"start"`` (FINETUNA's rule) calls the parent at the start structure; ``"prior_minimum"`` first relaxes on the
    prior alone (to the surrogate threshold, or until an atom has moved ``prior_reach_angstrom``, by default
    ``max_trust_radius_angstrom``) and calls the parent there, which saves the start call when the prior is matched
    to the parent (its energies along that first stretch are shifted to the parent's at its end). The relaxation ends
    only at a parent-verified point.
    ``model`` is a calculator or a model name; ``parent`` an ASE calculator or a per-structure factory (default:
    EMT). With ``trajectory_json`` the trajectory so far is written (atomically) after every parent call. The result
    says why each parent call was made (``parent_call_reasons``).
    """
    from ase.optimize import BFGS
    from tqdm.auto import tqdm

    from ..models import load_calculator
    from ..models.loading import check_elements
    from ..parents import emt_parent

    if query not in get_args(Query):
        raise ValueError(f"query must be k_steps, relax_only or uncertainty, not {query!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if trusted_prior_residual is not None and not trusted_prior_residual > 0:
        raise ValueError(f"trusted_prior_residual must be positive or None, got {trusted_prior_residual}")
    if min_stiffness_ev_per_angstrom2 is not None and not min_stiffness_ev_per_angstrom2 > 0:
        raise ValueError(f"min_stiffness_ev_per_angstrom2 must be positive or None, "
                         f"got {min_stiffness_ev_per_angstrom2}")
    if prior_reach_angstrom is not None and not prior_reach_angstrom > 0:
        raise ValueError(f"prior_reach_angstrom must be positive or None, got {prior_reach_angstrom}")
    prior_reach_angstrom = max_trust_radius_angstrom if prior_reach_angstrom is None else prior_reach_angstrom
    if first_parent_call not in get_args(FirstParentCall):
        raise ValueError(f"first_parent_call must be start or prior_minimum, not {first_parent_call!r}")
    if update not in ("auto", *get_args(Update)):
        raise ValueError(f"update must be auto, closed_form, finetune or none, not {update!r}")
    calc = load_calculator(model, device=device) if isinstance(model, (str, Path)) else model
    check_elements(atoms, calc)
    if update == "auto":
        update = "closed_form" if has_closed_form_readout(calc) else \
            "finetune" if getattr(calc, "umlip_family", None) is not None else "none"
    if update != "closed_form":
        committee_size = 0  # the committee and descriptor PCA live on the closed-form readout
    parent = emt_parent() if parent is None else parent
    surrogate = OnlineSurrogate(calc, rank=rank, ridge=ridge, correction=correction,
                                gp_length_scale_angstrom=gp_length_scale_angstrom,
                                committee_size=committee_size if committee_size > 1 else 0, seed=seed,
                                update=update, finetune_epochs=finetune_epochs)
    surrogate.with_uncertainty = query == "uncertainty" and committee_size > 1
    params = dict(fmax=fmax, query=query, k=k, surrogate_fmax_ratio=surrogate_fmax_ratio,
                  trust_radius_angstrom=trust_radius_angstrom, max_trust_radius_angstrom=max_trust_radius_angstrom,
                  uphill_tolerance_ev=uphill_tolerance_ev, k_grows_with_trust=k_grows_with_trust,
                  trusted_prior_residual=trusted_prior_residual,
                  min_stiffness_ev_per_angstrom2=min_stiffness_ev_per_angstrom2, first_parent_call=first_parent_call,
                  prior_reach_angstrom=prior_reach_angstrom, rank=rank,
                  ridge=ridge, correction=correction, gp_length_scale_angstrom=gp_length_scale_angstrom,
                  update=update, finetune_epochs=finetune_epochs, committee_size=committee_size, maxstep=maxstep,
                  uncertainty_threshold_ev_per_angstrom=uncertainty_threshold_ev_per_angstrom,
                  parent=parent_info(parent))
    work = atoms.copy()
    work.calc = surrogate
    record: dict[str, list] = {"energies": [], "parent": [], "positions": [], "std": [], "q": [], "gp": [],
                               "err": [], "reasons": []}
    clock = {"parent": 0.0, "training": 0.0, "start": time.perf_counter()}
    state = {"energy": float("nan"), "fmax": float("nan"), "steps": 0, "reason": "", "calls": 0}

    def result() -> ActiveRelaxResult:
        return ActiveRelaxResult(
            converged=state["reason"] == "parent fmax reached", n_parent_calls=state["calls"],
            n_surrogate_steps=state["steps"], final_parent_energy_ev=state["energy"],
            final_parent_fmax_ev_per_angstrom=state["fmax"], energies_ev=list(record["energies"]),
            is_parent_call=list(record["parent"]), parent_call_reasons=list(record["reasons"]),
            positions_angstrom=np.array(record["positions"]),
            symbols=work.get_chemical_symbols(), cell_angstrom=np.array(work.cell[:]), pbc=work.pbc.tolist(),
            committee_force_std_ev_per_angstrom=list(record["std"]), descriptor_q_score=list(record["q"]),
            gp_force_std_ev_per_angstrom=list(record["gp"]),
            true_force_error_ev_per_angstrom=list(record["err"]), surrogate_seconds=surrogate.seconds,
            parent_seconds=clock["parent"], training_seconds=clock["training"],
            wall_seconds=time.perf_counter() - clock["start"], stop_reason=state["reason"],
            provenance=provenance(calc, **params))

    free = free_atoms(work)
    bar = tqdm(total=None, desc=f"relax_active {work.get_chemical_formula()}", unit=" parent calls",
               disable=not progress, leave=False)
    radius = trust_radius_angstrom
    accepted = None  # (frame index, parent energy, parent fmax) of the last accepted parent point
    start = time.perf_counter()
    prior_stretch, why = relax_on_prior(work, calc, surrogate_fmax_ratio * fmax, prior_reach_angstrom, maxstep,
                                        max_surrogate_steps) if first_parent_call == "prior_minimum" else ([], "start")
    surrogate.seconds += time.perf_counter() - start
    for energy, positions in prior_stretch:
        record["energies"].append(energy)
        record["parent"].append(False)
        record["positions"].append(positions)
    state["steps"] = max(len(prior_stretch) - 1, 0)
    work.calc = surrogate
    while True:
        # parent call at the current point
        if state["calls"] > 0 and committee_size > 1:  # what the surrogate believed here, before seeing the parent
            surrogate.with_uncertainty = True
            surrogate.reset()
            predicted = work.get_forces(apply_constraint=False)
            record["std"].append(surrogate.last_uncertainty[0])
            record["q"].append(surrogate.last_uncertainty[1])
            record["gp"].append(surrogate.last_uncertainty[2])
            surrogate.with_uncertainty = query == "uncertainty"
        start = time.perf_counter()
        try:
            energy, forces = parent_single_point(parent, work)
        except ParentFailed as exc:
            if record["std"] and len(record["std"]) > len(record["err"]):
                record["std"].pop(), record["q"].pop(), record["gp"].pop()
            bar.close()
            state["reason"] = f"parent failed: {exc}"
            partial = result()
            if trajectory_json:
                partial.save_json(trajectory_json)
            raise ActiveLearningFailed(f"{exc} (after {state['calls']} parent calls and {state['steps']} "
                                       f"surrogate steps; the trajectory so far is on .result"
                                       + (f" and in {trajectory_json})" if trajectory_json else ")"), partial) from exc
        clock["parent"] += time.perf_counter() - start
        if state["calls"] > 0 and committee_size > 1:
            record["err"].append(float(np.linalg.norm((predicted - forces)[free], axis=1).max()))
        state["calls"] += 1
        state["energy"], state["fmax"] = energy, constrained_fmax(work, forces)
        if state["calls"] == 1 and prior_stretch:  # the prior's energies on the parent's scale
            shift = energy - prior_stretch[-1][0]
            record["energies"] = [e + shift for e in record["energies"]]
            record["energies"].pop(), record["parent"].pop(), record["positions"].pop()  # the parent point replaces it
        record["energies"].append(energy)
        record["parent"].append(True)
        record["positions"].append(work.get_positions())
        record["reasons"].append(why)
        bar.update(1)
        bar.set_postfix(parent_fmax=f"{state['fmax']:.3f}", surrogate_steps=state["steps"])
        if state["fmax"] <= fmax:
            state["reason"] = "parent fmax reached"
            break
        if state["calls"] >= max_parent_calls or state["steps"] >= max_surrogate_steps:
            state["reason"] = "max_parent_calls reached" if state["calls"] >= max_parent_calls else \
                "max_surrogate_steps reached"
            break
        predicted_energy = work.get_potential_energy() if accepted is not None else energy
        start = time.perf_counter()
        surrogate.add_parent_frame(work, energy, forces)
        clock["training"] += time.perf_counter() - start
        # trust region: compare the parent's energy change with the surrogate's prediction for this segment
        if accepted is not None:
            actual, predicted = energy - accepted[1], predicted_energy - accepted[1]
            if actual > uphill_tolerance_ev:  # reject: back to the last accepted point with a smaller radius
                radius = max(radius / 2, 0.01)
                work.positions = surrogate.positions[accepted[0]]
                surrogate.anchor_at(accepted[0])
            else:
                ratio = actual / predicted if predicted < 0 else 1.0
                radius = min(radius * 2, max_trust_radius_angstrom) if ratio > 0.75 else \
                    max(radius / 2, 0.01) if ratio < 0.25 else radius
                accepted = (len(surrogate.frames) - 1, energy, state["fmax"])
        else:
            accepted = (0, energy, state["fmax"])
            if trusted_prior_residual is not None:  # the prior already agrees with the parent: trust it further
                prior = work.copy()
                prior.calc = calc
                residual = np.linalg.norm((forces - prior.get_forces(apply_constraint=False))[free])
                if residual <= trusted_prior_residual * np.linalg.norm(forces[free]):
                    radius = max_trust_radius_angstrom
        if trajectory_json:
            result().save_json(trajectory_json)

        # surrogate relaxation from the parent point, with a fresh BFGS Hessian
        reach = radius if min_stiffness_ev_per_angstrom2 is None else \
            min(radius, max(accepted[2] / min_stiffness_ev_per_angstrom2, 0.01))  # from the segment's start point
        optimizer = BFGS(work, maxstep=min(maxstep, reach), logfile=None)
        segment = 0
        why = "max surrogate steps"
        while state["steps"] < max_surrogate_steps:
            surrogate_forces = work.get_forces()
            if segment == 0:
                spread_at_parent_point = surrogate.last_uncertainty[0]
            else:
                record["energies"].append(work.get_potential_energy())
                record["parent"].append(False)
                record["positions"].append(work.get_positions())
                if np.linalg.norm(surrogate_forces, axis=1).max() < surrogate_fmax_ratio * fmax:
                    why = "surrogate converged"
                    break
                if query == "k_steps" and segment >= (k * radius / trust_radius_angstrom if k_grows_with_trust else k):
                    why = "k steps"
                    break
                moved = np.linalg.norm(work.get_positions() - surrogate.anchor_positions, axis=1).max()
                if moved >= reach - 1e-9:
                    why = "trust radius" if reach == radius else "step bound"
                    break
                if query == "uncertainty" and (segment >= k or surrogate.last_uncertainty[0] - spread_at_parent_point
                                               > uncertainty_threshold_ev_per_angstrom):
                    why = "k steps" if segment >= k else "uncertainty"
                    break
            optimizer.step()
            segment += 1
            state["steps"] += 1
    bar.close()
    final = result()
    if trajectory_json:
        final.save_json(trajectory_json)
    return final


def parent_relax(atoms: "Atoms", parent: Parent, fmax: float = 0.03, optimizer: ParentOptimizer = "BFGS",
                 maxstep: float = 0.2, max_steps: int = 1000, keep_path: bool = False) -> dict[str, Any]:
    """A baseline on the parent alone: ASE's BFGS (``maxstep``), or ASE's GPMin (a Gaussian process on the parent's
    energies and forces, with its default hyperparameters and no other prior). Returns parent calls, final energy
    and fmax, and seconds; with ``keep_path`` also ``path``, the (positions, energy, forces) the optimiser reported
    at the start and after every step, all of them parent results it had already computed."""
    from ase.optimize import BFGS, GPMin

    from ..parents import parent_calculator

    if optimizer not in get_args(ParentOptimizer):
        raise ValueError(f"optimizer must be one of {get_args(ParentOptimizer)}, not {optimizer!r}")
    work = atoms.copy()
    work.calc = parent_calculator(parent)
    start = time.perf_counter()
    relax = BFGS(work, maxstep=maxstep, logfile=None) if optimizer == "BFGS" else GPMin(work, logfile=None)
    path = []
    if keep_path:
        relax.attach(lambda: path.append((work.get_positions(), float(work.get_potential_energy()),
                                          work.get_forces(apply_constraint=False).copy())))
    converged = relax.run(fmax=fmax, steps=max_steps)
    calls = relax.nsteps + 1 if optimizer == "BFGS" else relax.function_calls  # GPMin may re-evaluate within a step
    return {"n_parent_calls": calls, "converged": bool(converged),
            "final_energy_ev": float(work.get_potential_energy()),
            "final_fmax_ev_per_angstrom": constrained_fmax(work, work.get_forces(apply_constraint=False)),
            "seconds": time.perf_counter() - start, "positions_angstrom": work.get_positions(),
            **({"path": path} if keep_path else {})}
