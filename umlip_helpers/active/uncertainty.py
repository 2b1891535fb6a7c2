"""Uncertainty signals: a committee of readouts, descriptor distance (PCA + Q-residual), and the structure-only
descriptors (radial environments, nearest-neighbour distances) that the periodic workflows compare in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from ase import Atoms


def spearman_correlation(signal, error) -> float | None:
    """Spearman rank correlation of an uncertainty signal with the true error, over the points where both are
    finite; None with fewer than three such points or a constant column."""
    from scipy.stats import spearmanr

    signal, error = np.asarray(signal, float), np.asarray(error, float)
    keep = np.isfinite(signal) & np.isfinite(error)
    if keep.sum() < 3 or np.ptp(signal[keep]) == 0 or np.ptp(error[keep]) == 0:
        return None
    return float(spearmanr(signal[keep], error[keep]).statistic)


def committee_coefficients(frames, size: int, ridge: float, seed: int = 0) -> np.ndarray:
    """``size`` readout replicas, each fitted to a bootstrap resample of the parent force components."""
    from .head_fit import fit_readout

    rng = np.random.default_rng(seed)
    return np.array([fit_readout(frames, ridge=ridge, rng=rng)[0] for _ in range(size)])


def committee_force_std(replica_forces: np.ndarray) -> float:
    """Largest per-atom force standard deviation (eV/Å) over replicas; ``replica_forces`` is (K, N, 3)."""
    deviation = replica_forces - replica_forces.mean(axis=0)
    return float(np.sqrt((deviation ** 2).sum(axis=2).mean(axis=0)).max())


class DescriptorDistance:
    """PCA of the training atoms' readout inputs; a new atom's Q-residual is its squared distance to that subspace.

    ``score`` is the largest atom Q-residual divided by the 95th percentile of the training atoms' own
    (at least 1e-12), so values above 1 mean "further from the parent data than almost all of it".
    """

    def __init__(self, atom_features: np.ndarray, variance: float = 0.99):
        self.mean = atom_features.mean(axis=0)
        centred = atom_features - self.mean
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        total = (s ** 2).sum()
        n = int(np.searchsorted(np.cumsum(s ** 2) / total, variance) + 1) if total > 1e-20 else 0
        self.components = vt[:n]
        self.reference = max(float(np.percentile(self.q_residuals(atom_features), 95)), 1e-12)

    def q_residuals(self, atom_features: np.ndarray) -> np.ndarray:
        centred = atom_features - self.mean
        projected = centred @ self.components.T @ self.components
        return ((centred - projected) ** 2).sum(axis=1)

    def score(self, atom_features: np.ndarray) -> float:
        return float(self.q_residuals(atom_features).max() / self.reference)


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
