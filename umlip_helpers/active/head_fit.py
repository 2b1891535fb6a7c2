"""Closed-form fine-tuning of a model's last linear readout on parent energies and forces.

The total energy is linear in the readout weights θ: ``E(x) = θ·Φ(x) + E_rest(x)`` with ``Φ = ∂E/∂θ``. Forces are
then linear in θ too, ``F = F_rest + Σ_d θ_d B_d(x)`` with ``B_d = -∂Φ_d/∂x``. Once Φ and B are computed for a
parent frame, fitting θ to energies and forces is ridge-regularised linear least squares (milliseconds).

B costs one backward pass per fitted direction, so θ moves in a ``rank``-dimensional subspace of the readout
(the leading principal directions of the per-atom readout inputs of the first fitted frame); ``rank`` equal to
the readout width fits the whole layer exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import UmlipError
from ..models import family_of


def has_closed_form_readout(calc) -> bool:
    """Whether the calculator's family has a closed-form readout (:meth:`ModelFamily.readout`; SevenNet)."""
    try:
        return family_of(calc).has_readout
    except NotImplementedError:
        return False


def readout_for(calc):
    """The linear-head view of a calculator's model, from its family (:meth:`ModelFamily.readout`)."""
    try:
        family = family_of(calc)
    except NotImplementedError:
        raise UmlipError(f"closed-form readout fitting is implemented for SevenNet models; got "
                         f"{type(calc).__name__}") from None
    return family.readout(calc)


@dataclasses.dataclass
class FitFrame:
    """A parent frame with the surrogate's linearisation at the pretrained readout (a = 0)."""
    energy_ev: float
    forces: np.ndarray
    base_energy_ev: float
    base_forces: np.ndarray
    phi: np.ndarray
    phi_forces: np.ndarray


def fit_readout(frames: list[FitFrame], ridge: float = 1e-3, energy_weight: float = 1.0,
                forces_weight: float = 1.0, rng: np.random.Generator | None = None
                ) -> tuple[np.ndarray, float]:
    """Least-squares subspace coefficients ``a`` and an energy offset per atom.

    Rows: per-atom energy errors (weight ``energy_weight``) and force components (``forces_weight``, divided by
    √(3N) so each frame counts once). ``ridge`` pulls ``a`` towards 0, i.e. θ towards the pretrained readout.
    With ``rng`` the force rows are resampled with replacement (a bootstrap replica for a committee).
    """
    rows, targets = [], []
    k = frames[0].phi.size
    for frame in frames:
        n = frame.forces.shape[0]
        rows.append(np.concatenate([frame.phi / n, [1.0]]) * energy_weight)
        targets.append((frame.energy_ev - frame.base_energy_ev) / n * energy_weight)
        design = frame.phi_forces.reshape(k, -1).T
        residual = (frame.forces - frame.base_forces).reshape(-1)
        pick = np.arange(3 * n) if rng is None else rng.integers(0, 3 * n, 3 * n)
        scale = forces_weight / np.sqrt(3 * n)
        rows.extend(np.hstack([design[pick], np.zeros((pick.size, 1))]) * scale)
        targets.extend(residual[pick] * scale)
    A, b = np.asarray(rows), np.asarray(targets)
    scale = np.linalg.norm(A[:, :k], axis=0).max() or 1.0
    penalty = np.sqrt(ridge) * scale * np.eye(k + 1)[:k]
    solution, *_ = np.linalg.lstsq(np.vstack([A, penalty]), np.concatenate([b, np.zeros(k)]), rcond=None)
    return solution[:k], float(solution[k])


def predict(frame: FitFrame, coefficients: np.ndarray, offset_per_atom: float) -> tuple[float, np.ndarray]:
    """The linearised surrogate's energy and forces on a fitted frame (exact: E and F are linear in θ)."""
    n = frame.forces.shape[0]
    energy = frame.base_energy_ev + frame.phi @ coefficients + offset_per_atom * n
    forces = frame.base_forces + np.tensordot(coefficients, frame.phi_forces, axes=1)
    return float(energy), forces
