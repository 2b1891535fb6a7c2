"""Online active learning (FINETUNA-style): relax on the surrogate, query the parent, refit the readout, repeat.

Musielewicz et al., Mach. Learn.: Sci. Technol. 3, 03LT01 (2022), doi:10.1088/2632-2153/ac8fe0.

:func:`relax_active` builds an :class:`ActiveRelaxSettings` and runs an :class:`_ActiveRelaxation`: one parent call,
one refit and trust-region update, one surrogate segment (BFGS on :class:`~.surrogate.OnlineSurrogate`), repeated.
The module is the loop and what it returns, nothing else (the surrogate, the settings and the baselines live in
their own modules), so it stays one piece.

One piece: the relaxation loop and what it returns; the surrogate, the settings and the baselines live in their
own modules.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import UmlipError
from ..io import model_info, provenance
from ..parents import Parent, ParentFailed, parent_info, parent_single_point
from ..results import Result
from .head_fit import has_closed_form_readout
from .settings import ActiveRelaxSettings, Query, Update, settings_from
from .surrogate import OnlineSurrogate, constrained_fmax, free_atoms

if TYPE_CHECKING:
    from ase import Atoms

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


def auto_update(calc) -> Update:
    """What ``update="auto"`` means for ``calc``: closed form where its family has a readout, the fine-tuning
    engine for another model the package loaded (a known family), else ``"none"``."""
    if has_closed_form_readout(calc):
        return "closed_form"
    return "finetune" if model_info(calc).family is not None else "none"


def relax_active(
    atoms: "Atoms",
    model: Any = "sevennet-0",
    parent: Parent | None = None,
    fmax: float | None = None,
    query: Query | None = None,
    k: int | None = None,
    *,
    settings: ActiveRelaxSettings | None = None,
    trajectory_json: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    **options: Any,
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

    ``settings`` (an :class:`ActiveRelaxSettings`) or its fields as keyword arguments, as above (``fmax``,
    ``query`` and ``k`` also by position); keywords given beside ``settings`` replace those fields.
    """
    from ..models import check_elements, load_calculator
    from ..parents import emt_parent

    given = {name: value for name, value in (("fmax", fmax), ("query", query), ("k", k)) if value is not None}
    settings = settings_from(ActiveRelaxSettings, settings, {**given, **options}, "relax_active")
    calc = load_calculator(model, device=device) if isinstance(model, (str, Path)) else model
    check_elements(atoms, calc)
    settings = settings.resolved(auto_update(calc) if settings.update == "auto" else settings.update)
    parent = emt_parent() if parent is None else parent
    return _ActiveRelaxation(atoms, calc, parent, settings, trajectory_json, progress).run()


@dataclasses.dataclass
class _Record:
    """The trajectory of one relaxation so far, and at each parent call after the first what the surrogate
    predicted there (committee spread, Q-score, GP spread) beside its true force error."""

    energies: list = dataclasses.field(default_factory=list)
    is_parent: list = dataclasses.field(default_factory=list)
    positions: list = dataclasses.field(default_factory=list)
    reasons: list = dataclasses.field(default_factory=list)
    committee_std: list = dataclasses.field(default_factory=list)
    q_score: list = dataclasses.field(default_factory=list)
    gp_std: list = dataclasses.field(default_factory=list)
    true_error: list = dataclasses.field(default_factory=list)

    def add(self, energy: float, positions: np.ndarray, parent: bool) -> None:
        self.energies.append(energy)
        self.is_parent.append(parent)
        self.positions.append(positions)

    def replace_prior_end(self, parent_energy: float) -> None:
        """The prior's energies on the parent's scale; the parent point at the stretch's end replaces its last."""
        shift = parent_energy - self.energies[-1]
        self.energies = [e + shift for e in self.energies]
        self.energies.pop(), self.is_parent.pop(), self.positions.pop()

    def add_prediction(self, uncertainty: tuple[float, float, float]) -> None:
        self.committee_std.append(uncertainty[0])
        self.q_score.append(uncertainty[1])
        self.gp_std.append(uncertainty[2])

    def drop_unmatched_prediction(self) -> None:
        """A prediction whose parent call failed has no true error to stand beside."""
        if len(self.committee_std) > len(self.true_error):
            self.committee_std.pop(), self.q_score.pop(), self.gp_std.pop()


class _ActiveRelaxation:
    """One run of :func:`relax_active`: the surrogate, the trust region and the record, advanced one parent call,
    one refit and one surrogate segment at a time (:meth:`run`)."""

    def __init__(self, atoms: "Atoms", calc, parent: Parent, settings: ActiveRelaxSettings,
                 trajectory_json: str | Path | None, progress: bool):
        from tqdm.auto import tqdm

        s = self.settings = settings
        self.calc, self.parent, self.trajectory_json = calc, parent, trajectory_json
        self.surrogate = OnlineSurrogate(calc, rank=s.rank, ridge=s.ridge, correction=s.correction,
                                         gp_length_scale_angstrom=s.gp_length_scale_angstrom,
                                         committee_size=s.committee_size if s.uses_committee else 0, seed=s.seed,
                                         update=s.update, finetune_epochs=s.finetune_epochs)
        self.surrogate.with_uncertainty = s.query == "uncertainty" and s.uses_committee
        self.parameters = {**s.provenance_parameters(), "parent": parent_info(parent)}
        self.work = atoms.copy()
        self.work.calc = self.surrogate
        self.record = _Record()
        self.parent_seconds = self.training_seconds = 0.0
        self.started = time.perf_counter()
        self.energy = self.fmax = float("nan")  # at the newest parent call
        self.steps = self.calls = 0
        self.stop_reason = ""
        self.free = free_atoms(self.work)
        self.bar = tqdm(total=None, desc=f"relax_active {self.work.get_chemical_formula()}", unit=" parent calls",
                        disable=not progress, leave=False)
        self.radius = s.trust_radius_angstrom
        self.accepted = None  # (frame index, parent energy, parent fmax) of the last accepted parent point
        self.prior_stretch: list[tuple[float, np.ndarray]] = []

    def run(self) -> ActiveRelaxResult:
        why = self.relax_on_prior_first()
        while True:
            energy, forces = self.call_parent(why)
            if self.finished():
                break
            self.learn(energy, forces)
            why = self.relax_on_surrogate()
        self.bar.close()
        final = self.result()
        if self.trajectory_json:
            final.save_json(self.trajectory_json)
        return final

    def relax_on_prior_first(self) -> str:
        """With ``first_parent_call="prior_minimum"``, relax on the prior alone first; why the parent is called."""
        s = self.settings
        start = time.perf_counter()
        self.prior_stretch, why = relax_on_prior(self.work, self.calc, s.surrogate_fmax_ratio * s.fmax,
                                                 s.prior_reach_angstrom, s.maxstep, s.max_surrogate_steps) \
            if s.first_parent_call == "prior_minimum" else ([], "start")
        self.surrogate.seconds += time.perf_counter() - start
        for energy, positions in self.prior_stretch:
            self.record.add(energy, positions, False)
        self.steps = max(len(self.prior_stretch) - 1, 0)
        self.work.calc = self.surrogate
        return why

    def call_parent(self, why: str) -> tuple[float, np.ndarray]:
        """The parent at the current point (first, with the committee, what the surrogate believes there)."""
        predicted = self.predict_here() if self.calls > 0 and self.settings.uses_committee else None
        start = time.perf_counter()
        try:
            energy, forces = parent_single_point(self.parent, self.work)
        except ParentFailed as exc:
            raise self.failed(exc) from exc
        self.parent_seconds += time.perf_counter() - start
        if predicted is not None:
            self.record.true_error.append(float(np.linalg.norm((predicted - forces)[self.free], axis=1).max()))
        self.calls += 1
        self.energy, self.fmax = energy, constrained_fmax(self.work, forces)
        if self.calls == 1 and self.prior_stretch:
            self.record.replace_prior_end(energy)
        self.record.add(energy, self.work.get_positions(), True)
        self.record.reasons.append(why)
        self.bar.update(1)
        self.bar.set_postfix(parent_fmax=f"{self.fmax:.3f}", surrogate_steps=self.steps)
        return energy, forces

    def predict_here(self) -> np.ndarray:
        """The surrogate's forces and uncertainty signals at the current point, before the parent is seen."""
        surrogate = self.surrogate
        surrogate.with_uncertainty = True
        surrogate.reset()
        predicted = self.work.get_forces(apply_constraint=False)
        self.record.add_prediction(surrogate.last_uncertainty)
        surrogate.with_uncertainty = self.settings.query == "uncertainty"
        return predicted

    def failed(self, exc: Exception) -> ActiveLearningFailed:
        self.record.drop_unmatched_prediction()
        self.bar.close()
        self.stop_reason = f"parent failed: {exc}"
        partial = self.result()
        if self.trajectory_json:
            partial.save_json(self.trajectory_json)
        return ActiveLearningFailed(f"{exc} (after {self.calls} parent calls and {self.steps} surrogate steps; the "
                                    f"trajectory so far is on .result"
                                    + (f" and in {self.trajectory_json})" if self.trajectory_json else ")"), partial)

    def finished(self) -> bool:
        s = self.settings
        if self.fmax <= s.fmax:
            self.stop_reason = "parent fmax reached"
        elif self.calls >= s.max_parent_calls:
            self.stop_reason = "max_parent_calls reached"
        elif self.steps >= s.max_surrogate_steps:
            self.stop_reason = "max_surrogate_steps reached"
        return bool(self.stop_reason)

    def learn(self, energy: float, forces: np.ndarray) -> None:
        """Refit the surrogate on the new parent point, then judge the segment that led there (trust region)."""
        predicted_energy = self.work.get_potential_energy() if self.accepted is not None else energy
        start = time.perf_counter()
        self.surrogate.add_parent_frame(self.work, energy, forces)
        self.training_seconds += time.perf_counter() - start
        if self.accepted is not None:
            self.judge_segment(energy, predicted_energy)
        else:
            self.accept_first_point(energy, forces)
        if self.trajectory_json:
            self.result().save_json(self.trajectory_json)

    def judge_segment(self, energy: float, predicted_energy: float) -> None:
        """Compare the parent's energy change with the surrogate's prediction for the segment: an uphill one is
        rejected (back to the last accepted point, radius halved); a well predicted one doubles the radius."""
        s, accepted = self.settings, self.accepted
        actual, predicted = energy - accepted[1], predicted_energy - accepted[1]
        if actual > s.uphill_tolerance_ev:
            self.radius = max(self.radius / 2, 0.01)
            self.work.positions = self.surrogate.positions[accepted[0]]
            self.surrogate.anchor_at(accepted[0])
            return
        ratio = actual / predicted if predicted < 0 else 1.0
        self.radius = min(self.radius * 2, s.max_trust_radius_angstrom) if ratio > 0.75 else \
            max(self.radius / 2, 0.01) if ratio < 0.25 else self.radius
        self.accepted = (len(self.surrogate.frames) - 1, energy, self.fmax)

    def accept_first_point(self, energy: float, forces: np.ndarray) -> None:
        """The first parent point; a prior that already agrees with the parent there is trusted further at once."""
        s = self.settings
        self.accepted = (0, energy, self.fmax)
        if s.trusted_prior_residual is not None:
            prior = self.work.copy()
            prior.calc = self.calc
            residual = np.linalg.norm((forces - prior.get_forces(apply_constraint=False))[self.free])
            if residual <= s.trusted_prior_residual * np.linalg.norm(forces[self.free]):
                self.radius = s.max_trust_radius_angstrom

    def relax_on_surrogate(self) -> str:
        """BFGS on the surrogate from the parent point, with a fresh Hessian, until :meth:`segment_end` says why
        the parent is called next."""
        from ase.optimize import BFGS

        s, work = self.settings, self.work
        reach = self.radius if s.min_stiffness_ev_per_angstrom2 is None else \
            min(self.radius, max(self.accepted[2] / s.min_stiffness_ev_per_angstrom2, 0.01))  # from the start point
        optimizer = BFGS(work, maxstep=min(s.maxstep, reach), logfile=None)
        segment, spread_at_parent_point = 0, float("nan")
        while self.steps < s.max_surrogate_steps:
            surrogate_forces = work.get_forces()
            if segment == 0:
                spread_at_parent_point = self.surrogate.last_uncertainty[0]
            else:
                self.record.add(work.get_potential_energy(), work.get_positions(), False)
                why = self.segment_end(segment, reach, surrogate_forces, spread_at_parent_point)
                if why is not None:
                    return why
            optimizer.step()
            segment += 1
            self.steps += 1
        return "max surrogate steps"

    def segment_end(self, segment: int, reach: float, forces: np.ndarray, spread_at_parent_point: float) -> str | None:
        s = self.settings
        if np.linalg.norm(forces, axis=1).max() < s.surrogate_fmax_ratio * s.fmax:
            return "surrogate converged"
        if s.query == "k_steps" and segment >= (s.k * self.radius / s.trust_radius_angstrom if s.k_grows_with_trust
                                                else s.k):
            return "k steps"
        moved = np.linalg.norm(self.work.get_positions() - self.surrogate.anchor_positions, axis=1).max()
        if moved >= reach - 1e-9:
            return "trust radius" if reach == self.radius else "step bound"
        if s.query == "uncertainty" and (segment >= s.k or self.surrogate.last_uncertainty[0] - spread_at_parent_point
                                         > s.uncertainty_threshold_ev_per_angstrom):
            return "k steps" if segment >= s.k else "uncertainty"
        return None

    def result(self) -> ActiveRelaxResult:
        r, work = self.record, self.work
        return ActiveRelaxResult(
            converged=self.stop_reason == "parent fmax reached", n_parent_calls=self.calls,
            n_surrogate_steps=self.steps, final_parent_energy_ev=self.energy,
            final_parent_fmax_ev_per_angstrom=self.fmax, energies_ev=list(r.energies),
            is_parent_call=list(r.is_parent), parent_call_reasons=list(r.reasons),
            positions_angstrom=np.array(r.positions),
            symbols=work.get_chemical_symbols(), cell_angstrom=np.array(work.cell[:]), pbc=work.pbc.tolist(),
            committee_force_std_ev_per_angstrom=list(r.committee_std), descriptor_q_score=list(r.q_score),
            gp_force_std_ev_per_angstrom=list(r.gp_std), true_force_error_ev_per_angstrom=list(r.true_error),
            surrogate_seconds=self.surrogate.seconds, parent_seconds=self.parent_seconds,
            training_seconds=self.training_seconds, wall_seconds=time.perf_counter() - self.started,
            stop_reason=self.stop_reason, provenance=provenance(self.calc, **self.parameters))
