"""The guard that stops a run that blows up: non-finite forces, a runaway temperature, two atoms too close (found
without a neighbour search every step)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ..analysis import neighbor_pairs
from .dynamics import latest


class ProximityGuard:
    """Finds a pair of atoms nearer than ``min_distance`` without a neighbour search every step. A search that
    finds the nearest pair at distance d proves that no pair comes nearer than ``min_distance`` until some atom
    has moved (d - min_distance) / 2 from where it was then (in the same cell); only then is the search redone."""

    def __init__(self, min_distance: float):
        self.min_distance = min_distance
        # a cell list with sub-ångström cells costs more than the pairs it finds (as in analysis.closest_pair)
        self.radius = max(1.5, min_distance + 1.0)
        self.reference: np.ndarray | None = None
        self.cell: np.ndarray | None = None
        self.allowed_squared = 0.0

    def check(self, atoms: Atoms) -> tuple[int, int, float] | None:
        positions = atoms.positions
        if self.reference is not None and np.array_equal(atoms.cell.array, self.cell):
            moved = positions - self.reference
            if np.einsum("ij,ij->i", moved, moved).max() < self.allowed_squared:
                return None
        i, j, d = neighbor_pairs(atoms, self.radius, "ijd")
        nearest = self.radius
        if len(d):
            k = int(np.argmin(d))
            if d[k] < self.min_distance:
                return int(i[k]), int(j[k]), float(d[k])
            nearest = float(d[k])
        self.reference = positions.copy()
        self.cell = atoms.cell.array.copy()
        self.allowed_squared = (0.5 * (nearest - self.min_distance)) ** 2
        return None


def stop_reason(atoms: Atoms, epot: float, temperature: float, target_k: float, max_factor: float,
           proximity: ProximityGuard) -> str | None:
    """Why the run must stop now, or None."""
    forces = latest(atoms, "forces")
    if not np.all(np.isfinite(forces)) or not np.isfinite(epot):
        bad = np.flatnonzero(~np.isfinite(forces).all(axis=1))
        return f"non-finite energy or forces (atoms {bad[:10].tolist()})"
    if target_k > 0:
        if temperature > max_factor * target_k:
            return f"temperature {temperature:.0f} K exceeds {max_factor:g} x the target {target_k:g} K"
    pair = proximity.check(atoms)
    if pair is not None:
        i, j, d = pair
        symbols = atoms.get_chemical_symbols()
        return (f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {d:.3f} Å apart "
                f"(< {proximity.min_distance} Å)")
    return None
