"""Readout fitting on parent frames: the one linearisation of a model's readout at a parent frame (used by the online
learner and the periodic workflows alike), a calculator whose readout is refitted in closed form, and the fitter
that the periodic workflows call after every round of labels (closed form, or the project's trainer).

The closed-form algebra itself (:class:`FitFrame`, :func:`fit_readout`, :func:`predict`) lives in :mod:`.head_fit`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from ..io import attach_model_info, model_info
from .head_fit import FitFrame, fit_readout, readout_for
from .settings import Fit

if TYPE_CHECKING:
    from ase import Atoms

    from ..data import LabelledFrame



class LinearisedReadout:
    """A model's readout (from its family, :func:`readout_for`) with the subspace coefficients fitted so far.

    :meth:`linearise` evaluates the model at a parent frame with the current coefficients and returns the frame's
    linearisation at the pretrained readout (``a = 0``), which is what :func:`fit_readout` fits. The subspace is
    chosen at the first frame: the ``rank`` leading principal directions of its per-atom readout inputs.
    """

    def __init__(self, calc, rank: int):
        self.readout = readout_for(calc)
        self.rank = rank
        self.coefficients = np.zeros(0)

    def linearise(self, atoms: "Atoms", energy_ev: float, forces: np.ndarray) -> tuple[FitFrame, np.ndarray]:
        """The :class:`FitFrame` of a parent frame and the per-atom readout inputs there."""
        if self.readout.basis is None:
            self.readout.choose_basis(self.readout.evaluate(atoms).atom_features, self.rank)
            self.coefficients = np.zeros(self.readout.basis.shape[1])
        ev = self.readout.evaluate(atoms, directions=np.eye(self.coefficients.size))
        base_energy = ev.energy_ev - ev.phi @ self.coefficients
        base_forces = ev.forces - np.tensordot(self.coefficients, ev.phi_forces, axes=1)
        return FitFrame(energy_ev, forces, base_energy, base_forces, ev.phi, ev.phi_forces), ev.atom_features

    def set_coefficients(self, coefficients: np.ndarray) -> None:
        """Load ``coefficients`` into the model's readout (the model then computes the refitted surrogate)."""
        self.coefficients = coefficients
        self.readout.set_coefficients(coefficients)


class ReadoutCalculator(Calculator):
    """SevenNet with its readout refitted in closed form on parent frames (energy offset per atom included)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, base_calc, rank: int = 16, ridge: float = 1e-2):
        super().__init__()
        self.linear = LinearisedReadout(base_calc, rank)
        self.rank, self.ridge = rank, ridge
        self.fit_frames: list[FitFrame] = []
        self.offset_ev_per_atom = 0.0
        base = model_info(base_calc)
        # no family: the family's methods (elements, adapter, readout) read the family's own calculator, not this one
        attach_model_info(self, base.replace(family=None, version=f"readout refit (rank {rank}) of {base.name}",
                                             base_model=base.to_dict()))

    @property
    def readout(self):
        return self.linear.readout

    @property
    def coefficients(self) -> np.ndarray:
        return self.linear.coefficients

    def add_frames(self, frames: Sequence["LabelledFrame"]) -> None:
        """Linearise the model at each new frame and refit the readout on all frames so far."""
        for frame in frames:
            self.fit_frames.append(self.linear.linearise(frame.atoms, frame.energy_ev, frame.forces_ev_per_angstrom)[0])
        coefficients, self.offset_ev_per_atom = fit_readout(self.fit_frames, ridge=self.ridge)
        self.linear.set_coefficients(coefficients)
        self.reset()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        refitted = self.atoms.copy()
        refitted.calc = self.readout.calc  # the readout's own SevenNet, carrying the refitted weights
        energy = refitted.get_potential_energy() + self.offset_ev_per_atom * len(refitted)
        self.results = {"energy": energy, "free_energy": energy, "forces": refitted.get_forces()}
        if "stress" in properties:
            self.results["stress"] = refitted.get_stress()  # a constant energy per atom adds no stress


class Fitter:
    """Fits the base model to all labels so far, with the chosen method; ``calc`` is the newest model.

    ``fit="readout"`` refits the readout in closed form (options ``rank``, ``ridge``); the others run the trainer
    (:func:`umlip_helpers.finetune.finetune` with that strategy, ``options`` passed on) into ``out_dir/fit_NNN``.
    """

    def __init__(self, base_calc, fit: Fit, fit_options: Mapping[str, Any], out_dir: Path):
        self.base_calc, self.fit, self.options, self.out_dir = base_calc, fit, dict(fit_options), out_dir
        self.calc = base_calc
        self.model_dir: str | None = None
        self.rounds = 0
        if fit == "readout":
            self._readout = ReadoutCalculator(base_calc, rank=self.options.pop("rank", 16),
                                              ridge=self.options.pop("ridge", 1e-2))

    @property
    def device(self) -> str:
        return str(getattr(self.base_calc, "device", "cpu"))

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
        self.calc = load_calculator(self.model_dir, device=self.device)

    def update(self, all_frames: list["LabelledFrame"], new_frames: list["LabelledFrame"]):
        """One more fit: the readout on ``new_frames`` added to the earlier ones, or the trainer on ``all_frames``."""
        self.rounds += 1
        if self.fit == "readout":
            self._readout.add_frames(new_frames)
            self.calc = self._readout
            return self.calc
        return self._train(all_frames)

    def _train(self, all_frames: list["LabelledFrame"]):
        from ..data import DFTDataset
        from ..finetune import LossWeights, finetune
        from ..models import load_calculator

        out = self.out_dir / f"fit_{self.rounds:03d}"
        # resume=True: a fit killed before the workflow saved its state continues from its last epoch
        options = {"epochs": 20, "loss_weights": LossWeights(stress_gpa=0.0), "val_fraction": 0.0,
                   "progress": False, "resume": True, **self.options}
        report = finetune(copy.deepcopy(self.base_calc), DFTDataset(all_frames, name=f"labels_{len(all_frames)}"),
                          strategy=self.fit, out=out, **options)
        self.model_dir = report.out_dir
        self.calc = load_calculator(report.out_dir, device=self.device)
        return self.calc
