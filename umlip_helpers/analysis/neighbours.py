"""Pairs of atoms from vesin's neighbour list (C++, O(N)) and the small helpers every analysis shares: frames as a
list, element pairs by name ("Si-O"), the largest radius free of self-images."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from ase import Atoms


def as_frames(frames: Atoms | Iterable[Atoms]) -> list[Atoms]:
    frames = [frames] if isinstance(frames, Atoms) else list(frames)
    if not frames:
        raise ValueError("no frames to analyse")
    return frames


def neighbor_pairs(atoms: Atoms, cutoff: float, quantities: str = "ijd", full_list: bool = False):
    """vesin neighbour list of ``atoms`` within ``cutoff`` Å (periodic directions from ``atoms.pbc``)."""
    from vesin import NeighborList

    box = atoms.cell.array if atoms.cell.rank == 3 else np.zeros((3, 3))
    return NeighborList(cutoff=cutoff, full_list=full_list).compute(
        points=atoms.positions, box=box, periodic=atoms.pbc.tolist() if atoms.cell.rank == 3 else False,
        quantities=quantities)


def closest_pair(atoms: Atoms, cutoff: float = 0.5) -> tuple[int, int, float] | None:
    """The closest pair ``(i, j, distance Å)`` among pairs nearer than ``cutoff``, or None if there is none."""
    # a cell list with sub-ångström cells costs far more than the pairs it finds, so search at least 1.5 Å
    i, j, d = neighbor_pairs(atoms, max(cutoff, 1.5), "ijd")
    near = d < cutoff
    if not near.any():
        return None
    i, j, d = i[near], j[near], d[near]
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


def pair_name(a: str, b: str) -> str:
    return f"{a}-{b}"


def parse_pair(pair: str | Sequence[str]) -> tuple[str, str]:
    parts = pair.split("-") if isinstance(pair, str) else list(pair)
    if len(parts) != 2:
        raise ValueError(f"pair {pair!r}: expected two element symbols such as 'Si-O'")
    return parts[0], parts[1]


def max_r(atoms: Atoms) -> float:
    """Half the smallest distance between opposite cell faces (the largest r free of self-images)."""
    cell = atoms.cell.array
    heights = [abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
               for k in range(3)]
    return 0.5 * min(heights)
