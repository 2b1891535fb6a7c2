"""Errors of a model against labelled DFT frames, with parity plots."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from ase.units import GPa
from tqdm.auto import tqdm

from .data import DFTDataset, fit_energy_shifts, read_dataset, shift_for
from .io import model_info, provenance
from .models import check_elements
from .results import Result


@dataclasses.dataclass(frozen=True)
class Predictions:
    """A model's energies (eV), forces (eV/Å) and stresses (eV/Å^3, Voigt) on every frame of a dataset."""

    energies_ev: np.ndarray
    forces_ev_per_angstrom: list[np.ndarray]
    stresses_ev_per_angstrom3: np.ndarray | None
    seconds_per_frame: float


def predict(calc, dataset: DFTDataset, *, stress: bool | None = None, progress: bool = True,
            desc: str | None = None) -> Predictions:
    """Run ``calc`` on every frame (elements are checked first, before any computation)."""
    for frame in dataset:
        check_elements(frame.atoms, calc, where=frame.where())
    stress = dataset.has("stress") if stress is None else stress
    name = model_info(calc).name
    energies, forces, stresses = [], [], []
    start = time.perf_counter()
    for frame in tqdm(dataset, desc=desc or f"{name} on {dataset.name}", disable=not progress, unit="frame"):
        atoms = frame.atoms.copy()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
        forces.append(np.array(atoms.get_forces()))
        if stress:
            stresses.append(np.array(atoms.get_stress(voigt=True)))
    elapsed = time.perf_counter() - start
    return Predictions(np.array(energies), forces, np.array(stresses) if stress else None,
                       elapsed / max(len(dataset), 1))


@dataclasses.dataclass(frozen=True)
class EvaluationResult(Result):
    """Errors of one model on one dataset. Energies per atom in meV/atom; 'aligned' means after the
    per-element least-squares shift (:func:`umlip_helpers.data.fit_energy_shifts`)."""

    model: str
    dataset: str
    n_frames: int
    n_atoms: int
    energy_offset_mev_per_atom: float
    energy_mae_mev_per_atom: float
    energy_rmse_mev_per_atom: float
    energy_mae_aligned_mev_per_atom: float
    energy_rmse_aligned_mev_per_atom: float
    force_mae_ev_per_angstrom: float
    force_rmse_ev_per_angstrom: float
    force_cosine_mean: float
    stress_mae_gpa: float | None
    stress_rmse_gpa: float | None
    seconds_per_frame: float
    energy_shifts_ev: dict[str, float]
    energies_dft_ev_per_atom: np.ndarray
    energies_model_ev_per_atom: np.ndarray
    energies_model_aligned_ev_per_atom: np.ndarray
    forces_dft_ev_per_angstrom: np.ndarray
    forces_model_ev_per_angstrom: np.ndarray
    stresses_dft_gpa: np.ndarray | None
    stresses_model_gpa: np.ndarray | None
    provenance: dict[str, Any]

    summary_fields = ("model", "dataset", "n_frames", "energy_offset_mev_per_atom", "energy_mae_mev_per_atom",
                      "energy_mae_aligned_mev_per_atom", "energy_rmse_aligned_mev_per_atom",
                      "force_mae_ev_per_angstrom", "force_rmse_ev_per_angstrom", "force_cosine_mean",
                      "stress_mae_gpa", "seconds_per_frame")

    def plot(self, axes=None):
        """Parity plots of energy (aligned), force components and stress components."""
        import matplotlib.pyplot as plt

        panels = 3 if self.stresses_dft_gpa is not None else 2
        if axes is None:
            _, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4), layout="constrained")
        data = [
            ("energy (eV/atom, aligned)", self.energies_dft_ev_per_atom, self.energies_model_aligned_ev_per_atom,
             f"MAE {self.energy_mae_aligned_mev_per_atom:.2f} meV/atom"),
            ("force component (eV/Å)", self.forces_dft_ev_per_angstrom.ravel(),
             self.forces_model_ev_per_angstrom.ravel(), f"MAE {self.force_mae_ev_per_angstrom:.3f} eV/Å"),
        ]
        if panels == 3:
            data.append(("stress component (GPa)", self.stresses_dft_gpa.ravel(), self.stresses_model_gpa.ravel(),
                         f"MAE {self.stress_mae_gpa:.2f} GPa"))
        for ax, (label, dft, model, note) in zip(np.atleast_1d(axes), data):
            ax.scatter(dft, model, s=4, alpha=0.5)
            low, high = np.nanmin([dft.min(), model.min()]), np.nanmax([dft.max(), model.max()])
            ax.plot([low, high], [low, high], "k--", lw=0.8)
            ax.set(xlabel=f"DFT {label}", ylabel=f"{self.model} {label}", title=note)
        return axes


def _per_atom_errors(dft: np.ndarray, model: np.ndarray, n_atoms: np.ndarray) -> tuple[float, float]:
    diff = (model - dft) / n_atoms * 1000.0
    return float(np.mean(np.abs(diff))), float(np.sqrt(np.mean(diff ** 2)))


def evaluate(calc, dataset: DFTDataset, *, stress: bool | None = None, progress: bool = True,
             predictions: Predictions | None = None) -> EvaluationResult:
    """Energy (raw and aligned), force and stress errors of ``calc`` on ``dataset``, and time per frame."""
    pred = predictions or predict(calc, dataset, stress=stress, progress=progress)
    n_atoms = np.array([f.n_atoms for f in dataset], dtype=float)
    e_dft = dataset.energies_ev()
    shifts = fit_energy_shifts(dataset, pred.energies_ev)
    e_aligned = pred.energies_ev + np.array([shift_for(f.atoms, shifts) for f in dataset])
    mae_raw, rmse_raw = _per_atom_errors(e_dft, pred.energies_ev, n_atoms)
    mae_al, rmse_al = _per_atom_errors(e_dft, e_aligned, n_atoms)
    offset = float(np.mean((pred.energies_ev - e_dft) / n_atoms) * 1000.0)

    f_dft = np.concatenate([f.forces_ev_per_angstrom for f in dataset])
    f_model = np.concatenate(pred.forces_ev_per_angstrom)
    f_err = f_model - f_dft
    norms = np.linalg.norm(f_dft, axis=1) * np.linalg.norm(f_model, axis=1)
    significant = norms > 1e-8
    cosine = float(np.mean(np.sum(f_dft * f_model, axis=1)[significant] / norms[significant]))

    s_dft = s_model = None
    s_mae = s_rmse = None
    if pred.stresses_ev_per_angstrom3 is not None and dataset.has("stress"):
        s_dft = np.array([f.stress_ev_per_angstrom3 for f in dataset]) / GPa
        s_model = pred.stresses_ev_per_angstrom3 / GPa
        s_mae = float(np.mean(np.abs(s_model - s_dft)))
        s_rmse = float(np.sqrt(np.mean((s_model - s_dft) ** 2)))

    name = model_info(calc).name
    return EvaluationResult(
        model=name, dataset=dataset.name, n_frames=len(dataset), n_atoms=int(n_atoms.sum()),
        energy_offset_mev_per_atom=offset,
        energy_mae_mev_per_atom=mae_raw, energy_rmse_mev_per_atom=rmse_raw,
        energy_mae_aligned_mev_per_atom=mae_al, energy_rmse_aligned_mev_per_atom=rmse_al,
        force_mae_ev_per_angstrom=float(np.mean(np.abs(f_err))),
        force_rmse_ev_per_angstrom=float(np.sqrt(np.mean(f_err ** 2))),
        force_cosine_mean=cosine, stress_mae_gpa=s_mae, stress_rmse_gpa=s_rmse,
        seconds_per_frame=pred.seconds_per_frame, energy_shifts_ev=shifts,
        energies_dft_ev_per_atom=e_dft / n_atoms, energies_model_ev_per_atom=pred.energies_ev / n_atoms,
        energies_model_aligned_ev_per_atom=e_aligned / n_atoms,
        forces_dft_ev_per_angstrom=f_dft, forces_model_ev_per_angstrom=f_model,
        stresses_dft_gpa=s_dft, stresses_model_gpa=s_model,
        provenance=provenance(calc, dataset=dataset.name, dataset_sha256=dataset.sha256(), n_frames=len(dataset)),
    )


def cli_evaluate(args) -> dict[str, Any]:
    from .models import load_calculator

    dataset = read_dataset(args.data, max_frames=args.max_frames)
    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    result = evaluate(calc, dataset)
    for key, value in result.summary().items():
        print(f"{key:36s} {value}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        axes = result.plot()
        axes[0].figure.savefig(args.plot, dpi=120)
    return {**result.summary(), "energy_shifts_ev": result.energy_shifts_ev, "provenance": result.provenance}
