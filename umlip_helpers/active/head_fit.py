"""Closed-form fine-tuning of a model's last linear readout on parent energies and forces.

The total energy is linear in the readout weights θ: ``E(x) = θ·Φ(x) + E_rest(x)`` with ``Φ = ∂E/∂θ``. Forces are
then linear in θ too, ``F = F_rest + Σ_d θ_d B_d(x)`` with ``B_d = -∂Φ_d/∂x``. Once Φ and B are computed for a
parent frame, fitting θ to energies and forces is ridge-regularised linear least squares (milliseconds).

B costs one backward pass per fitted direction, so θ moves in a ``rank``-dimensional subspace of the readout
(the leading principal directions of the per-atom readout inputs of the first fitted frame); ``rank`` equal to
the readout width fits the whole layer exactly.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UmlipError

if TYPE_CHECKING:
    from ase import Atoms


@dataclasses.dataclass
class Evaluation:
    """One forward (and backward) pass of the surrogate at fixed readout weights."""
    energy_ev: float
    forces: np.ndarray            # (N, 3) eV/Å
    atom_features: np.ndarray     # (N, D) readout inputs, for descriptor distances
    phi: np.ndarray | None = None         # (k,) ∂E/∂a for the subspace coordinates a
    phi_forces: np.ndarray | None = None  # (k, N, 3) force of each subspace direction


class SevenNetReadout:
    """SevenNet's ``reduce_hidden_to_energy`` (an o3.Linear on scalars, no bias) as a linear head.

    Works on a private copy of the model, so the calculator passed in is never modified.
    """

    def __init__(self, calc):
        import torch

        self.calc = copy.deepcopy(calc)
        self.model = self.calc.model
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.weight = self.model.reduce_hidden_to_energy.linear.weight
        self.weight.requires_grad_(True)
        self.theta0 = self.weight.detach().clone()
        self.basis = None  # (D, k) torch tensor, orthonormal columns
        self.device = next(self.model.parameters()).device
        self.torch = torch

    @property
    def width(self) -> int:
        return self.theta0.numel()

    def set_coefficients(self, coefficients: np.ndarray | None) -> None:
        """θ = θ0 + U a (a=None restores the pretrained readout)."""
        with self.torch.no_grad():
            self.weight.copy_(self.theta0)
            if coefficients is not None:
                self.weight.add_(self.basis @ self.torch.as_tensor(coefficients, dtype=self.weight.dtype,
                                                                    device=self.device))
        self.calc.reset()  # its cached results came from the old weights

    def choose_basis(self, atom_features: np.ndarray, rank: int) -> None:
        """The ``rank`` leading principal directions of per-atom readout inputs (all of θ when rank ≥ width)."""
        D = self.width
        if rank >= D:
            basis = np.eye(D)
        else:
            centred = atom_features - atom_features.mean(axis=0)
            _, _, vt = np.linalg.svd(np.vstack([centred, atom_features.mean(axis=0, keepdims=True)]),
                                     full_matrices=False)
            basis = vt[:rank].T
        self.basis = self.torch.as_tensor(basis, dtype=self.weight.dtype, device=self.device)

    def _forward(self, atoms: "Atoms"):
        """Energy (with its graph), edge vectors, edge index and readout inputs, without sevenn's force module."""
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, self.calc.cutoff, with_shift=False))
        if self.calc.modal:
            data[KEY.DATA_MODALITY] = self.calc.modal
        data.to(self.device)
        data = self.model._preprocess(data)
        features = None
        for name, module in self.model._modules.items():
            if name == "force_output":
                continue
            if name == "reduce_hidden_to_energy":
                features = data[KEY.NODE_FEATURE]
            data = module(data)
        return data[KEY.PRED_TOTAL_ENERGY].sum(), data[KEY.EDGE_VEC], data[KEY.EDGE_IDX], features

    def _edge_to_forces(self, grad, edge_idx, n: int):
        """Per-atom forces from ∂E/∂(edge vector), with the sign convention of sevenn's ForceStressOutputFromEdge."""
        out = self.torch.zeros(n, 3, dtype=grad.dtype, device=grad.device)
        return out.index_add_(0, edge_idx[0], grad).index_add_(0, edge_idx[1], -grad)

    def graph_forces(self, atoms: "Atoms"):
        """Forces as a torch tensor differentiable w.r.t. the readout weight (for gradient-descent training)."""
        energy, edge_vec, edge_idx, _ = self._forward(atoms)
        grad, = self.torch.autograd.grad(energy, edge_vec, create_graph=True)
        return self._edge_to_forces(grad, edge_idx, len(atoms))

    def evaluate(self, atoms: "Atoms", directions: np.ndarray | None = None) -> Evaluation:
        """Energy, forces and readout inputs; with ``directions`` (m, k) also Φ and B along them.

        ``directions=np.eye(k)`` gives the full subspace Jacobian (k backward passes).
        """
        torch = self.torch
        energy, edge_vec, edge_idx, features = self._forward(atoms)
        n = len(atoms)

        def edge_to_forces(grad):
            return self._edge_to_forces(grad, edge_idx, n)

        jacobian = directions is not None and len(directions) > 0
        grad_e, = torch.autograd.grad(energy, edge_vec, retain_graph=jacobian)
        result = Evaluation(float(energy.detach()), edge_to_forces(grad_e).detach().cpu().numpy().astype(float),
                            features.detach().cpu().numpy().astype(float))
        if jacobian:
            phi_full, = torch.autograd.grad(energy, self.weight, create_graph=True)
            phi = phi_full @ (self.basis @ torch.as_tensor(np.asarray(directions).T, dtype=self.weight.dtype,
                                                            device=self.device))
            phi_forces = []
            for j in range(phi.numel()):
                g, = torch.autograd.grad(phi[j], edge_vec, retain_graph=j < phi.numel() - 1)
                phi_forces.append(edge_to_forces(g))
            result.phi = phi.detach().cpu().numpy().astype(float)
            result.phi_forces = torch.stack(phi_forces).detach().cpu().numpy().astype(float)
        return result


def has_closed_form_readout(calc) -> bool:
    """Whether :func:`readout_for` supports the calculator's model (the SevenNet family)."""
    family = getattr(getattr(calc, "umlip_family", None), "name", None)
    return family == "sevennet" or type(calc).__name__ == "SevenNetCalculator"


def readout_for(calc) -> SevenNetReadout:
    """The linear-head view of a calculator's model (SevenNet family)."""
    family = getattr(getattr(calc, "umlip_family", None), "name", None)
    if has_closed_form_readout(calc):
        return SevenNetReadout(calc)
    raise UmlipError(f"closed-form readout fitting is implemented for SevenNet models; got family {family!r}")


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
