"""Replay: structures labelled by the base model itself, mixed into fine-tuning so that the model keeps what it knew.

Fine-tuning on one system (YMnO3, Ni) moves every weight that the strategy frees, and nothing in the new data says
what the model should still predict for other chemistry. MACE's multi-head fine-tuning answers this by replaying
the foundation model's pre-training data. That data is not shipped with SevenNet-0 or CHGNet, so here the base model
labels a small, seeded, diverse set of structures itself (rattled and strained bulk cells of common elements and of
the training elements, small molecules in a periodic box) and those labels are what the fine-tuned model is asked
to keep.

**Weighting.** As in a multi-head fine-tune, every optimiser step sees both: its batch of DFT frames plus
``ceil(replay_frames / steps_per_epoch)`` replay frames (each epoch passes once over all of them, shuffled), and the
step's loss is ``mean(DFT frames' losses) + replay_weight * mean(replay frames' losses)``, each frame's loss being the
same weighted energy-per-atom, force and stress errors (:class:`~umlip_helpers.finetune.trainer.LossWeights`).
``replay_weight=0`` turns replay off (nothing is labelled). The number of optimiser steps and the learning-rate
schedule are those of the run without replay. Replay frames as separate samples of their own would not do: with
Adam a step on a batch of replay frames alone is a full-size step whatever its loss weight (the update is divided by
the gradient's running RMS), so a small weight would not make replay matter less; on a tiny SevenNet such steps moved
the model more on the replay frames, not less.

**Energy scale.** The trainer fits per-element shifts that bring the base model onto the DFT reference and trains
the raw (unshifted) model to ``E_DFT - shifts``, which is the base model's own scale: the shifts are fitted once and
kept fixed. Replay labels are therefore the *raw* base model's predictions (a fine-tuned base is unshifted first),
with no shift added and none subtracted, and they are left out of the shift fit (they would pull the shifts towards
zero). At the first step the replay loss is zero up to rounding, whatever the DFT reference (tested).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule
from ase.data import atomic_numbers, covalent_radii, reference_states

from ..data import DFTDataset, LabelledFrame
from ..models import adapter_for, supported_elements, unshifted
from .trainer import Hyperparameters, Sample, make_samples, predict_all, prepare_samples

__all__ = ["REPLAY_ELEMENTS", "REPLAY_MOLECULES", "base_labels", "replay_samples", "replay_structures"]

#: common elements of the pre-training data (metals, a semiconductor) replayed besides the training elements
REPLAY_ELEMENTS = ("Al", "Si", "Fe", "Ni", "Cu", "Ti", "Mg", "W")
#: small molecules, each in a periodic box with 5 Å of vacuum (stress labels stay defined)
REPLAY_MOLECULES = ("H2O", "CH4", "NH3", "CO2")
_CRYSTALS = ("fcc", "bcc", "hcp", "diamond")


def _element_cell(symbol: str) -> Atoms:
    """The element's ASE reference crystal; a dimer in a box for diatomic gases; else bcc at twice the covalent
    radius (Mn's 58-atom cell and the like)."""
    state = reference_states[atomic_numbers[symbol]] or {}
    if state.get("symmetry") in _CRYSTALS:
        return bulk(symbol, cubic=state["symmetry"] != "hcp")
    if state.get("symmetry") == "diatom":
        return _boxed(Atoms(2 * symbol, positions=[(0, 0, 0), (0, 0, state["d"])]))
    radius = covalent_radii[atomic_numbers[symbol]]
    return bulk(symbol, "bcc", a=4 * radius / np.sqrt(3), cubic=True)


def _boxed(atoms: Atoms) -> Atoms:
    atoms.center(vacuum=5.0)
    atoms.pbc = True
    atoms.info["boxed"] = True
    return atoms


def replay_structures(elements: Sequence[str] = (), n_frames: int = 16, seed: int = 0,
                      covered: set[str] | None = None) -> list[Atoms]:
    """``n_frames`` seeded structures cycling through :data:`REPLAY_ELEMENTS` and ``elements`` (the training
    elements) as bulk cells, then :data:`REPLAY_MOLECULES`; whatever the model does not cover (``covered``) is left
    out. Each cell is repeated to at least 4 atoms, its volume scaled by a random factor in 0.94-1.06 and its atoms
    rattled with a standard deviation drawn in 0.02-0.1 Å (molecules: 0.02-0.05 Å, volume kept)."""
    rng = np.random.default_rng([seed, 7])
    symbols = [s for s in dict.fromkeys([*REPLAY_ELEMENTS, *elements]) if covered is None or s in covered]
    molecules = [m for m in REPLAY_MOLECULES if covered is None or set(molecule(m).get_chemical_symbols()) <= covered]
    recipes = [("element", s) for s in symbols] + [("molecule", m) for m in molecules]
    if not recipes:
        return []
    structures = []
    for i in range(n_frames):
        kind, name = recipes[i % len(recipes)]
        atoms = _element_cell(name) if kind == "element" else _boxed(molecule(name))
        if "boxed" in atoms.info:
            stdev = rng.uniform(0.02, 0.05)
        else:
            atoms = atoms.repeat((2, 2, 1) if len(atoms) == 1 else (2, 1, 1)) if len(atoms) < 4 else atoms
            atoms.set_cell(atoms.cell * rng.uniform(0.94, 1.06) ** (1 / 3), scale_atoms=True)
            stdev = rng.uniform(0.02, 0.1)
        atoms.rattle(stdev=stdev, seed=int(rng.integers(2**31)))
        atoms.info["replay"] = f"{name} #{i}"
        structures.append(atoms)
    return structures


def base_labels(calc: Any, structures: Sequence[Atoms], *, progress: bool = False,
                predict: Callable[[list, str], list] | None = None) -> tuple[DFTDataset, list[Any]]:
    """The structures labelled by ``calc``'s raw (unshifted) model through the trainer's own forward, as a
    dataset, with the prepared graphs (for training on them without building them again)."""
    raw = unshifted(calc)
    adapter = adapter_for(raw)
    frames = DFTDataset([LabelledFrame(a, None, None, None, "replay", i) for i, a in enumerate(structures)],
                        name="replay")
    prepared = prepare_samples(adapter, raw, frames, "replay", progress)
    if predict is None:
        module = adapter.module(raw)
        labels = predict_all(adapter, module, prepared, "replay labels", progress)
    else:
        labels = predict(prepared, "replay labels")
    dataset = DFTDataset([LabelledFrame(a, label["energy"], label["forces"], label["stress"], "replay", i)
                          for i, (a, label) in enumerate(zip(structures, labels))], name="replay")
    return dataset, prepared


def replay_samples(calc: Any, train_elements: Sequence[str], hp: Hyperparameters, device: str,
                   predict: Callable[[list, str], list] | None = None, progress: bool = False) -> list[Sample]:
    """The replay frames of a fine-tuning run as training samples (none when ``hp.replay_weight`` is 0), labelled by
    ``calc``'s raw model before training starts; energy targets unshifted (module docstring). The trainer weights
    them per step."""
    if not hp.replay_weight:
        return []
    structures = replay_structures(train_elements, hp.replay_frames, hp.seed, supported_elements(calc))
    dataset, prepared = base_labels(calc, structures, progress=progress, predict=predict)
    return make_samples(dataset, prepared, {}, device)
