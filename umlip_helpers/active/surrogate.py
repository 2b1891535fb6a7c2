"""The online learner's surrogate: the model, refitted on the parent frames (a closed-form readout fit, the
fine-tuning engine, or no refit at all), plus a correction fitted to what the refit leaves of the parent.

:func:`~.online.relax_active` relaxes on it; the committee and descriptor signals of :mod:`.uncertainty` are
computed on its closed-form readout.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, get_args

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .head_fit import FitFrame, fit_readout, predict
from .readout import LinearisedReadout
from .settings import Correction, Update, check_choice
from .uncertainty import DescriptorDistance, committee_coefficients, committee_force_std

if TYPE_CHECKING:
    from ase import Atoms


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
        check_choice("correction", correction, get_args(Correction), "gp, secant, anchor or none")
        self.correction = correction
        self.anchor, self.secant = correction in ("secant", "anchor"), correction == "secant"
        self.update, self.gp_length_scale_angstrom = update, gp_length_scale_angstrom
        self.secant_matrix = None
        self.gp = None
        self.linear = LinearisedReadout(model_calc, rank) if update == "closed_form" else None
        self.engine = EngineModel(model_calc, finetune_epochs, seed) if update == "finetune" else \
            FixedModel(model_calc) if update == "none" else None
        self.residuals: list[tuple[float, np.ndarray]] = []  # parent minus refitted model, per parent frame
        self.rank, self.ridge, self.committee_size, self.seed = rank, ridge, committee_size, seed
        self.frames: list[FitFrame] = []
        self.frame_features: list[np.ndarray] = []
        self.positions: list[np.ndarray] = []
        self.offset_per_atom = 0.0
        self.anchor_positions = None
        self.anchor_energy = 0.0
        self.anchor_forces = None
        self.committee_directions = np.zeros((0, 0))
        self.descriptor: DescriptorDistance | None = None
        self.with_uncertainty = False
        self.last_uncertainty = (float("nan"), float("nan"), float("nan"))  # committee, descriptor, GP
        self.seconds = 0.0

    @property
    def readout(self):
        """The model's readout (closed-form update only, else None)."""
        return self.linear.readout if self.linear is not None else None

    @property
    def coefficients(self) -> np.ndarray:
        """The readout's fitted subspace coefficients (empty before the first closed-form fit)."""
        return self.linear.coefficients if self.linear is not None else np.zeros(0)

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
        frame, atom_features = self.linear.linearise(atoms, energy, forces)
        self.frames.append(frame)
        self.frame_features.append(atom_features)
        coefficients, self.offset_per_atom = self.fit()
        self.linear.set_coefficients(coefficients)
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


