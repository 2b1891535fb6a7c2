"""Bond-angle distributions A-B-C at vertex B, averaged over frames."""

from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms

from ..io import provenance
from ..results import Result
from .neighbours import as_frames, max_r, neighbor_pairs, pair_name
from .rdf import partial_rdf


@dataclasses.dataclass(frozen=True)
class AngleResult(Result):
    """Bond-angle distributions for triplets A-B-C (B the vertex), as probability densities per degree."""

    angle_deg: np.ndarray
    density: dict
    mean_angle_deg: dict
    most_probable_angle_deg: dict
    n_angles: dict
    cutoffs_angstrom: dict
    n_frames: int
    provenance: dict

    def summary(self):
        return {f"{key}_{triplet}": value for key in ("mean_angle_deg", "most_probable_angle_deg", "n_angles")
                for triplet, value in getattr(self, key).items()}

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 3.5))
        for triplet, density in self.density.items():
            if self.n_angles[triplet]:
                ax.plot(self.angle_deg, density, label=f"{triplet} ({self.n_angles[triplet]} angles)")
        ax.set_xlabel("angle (degrees)")
        ax.set_ylabel("probability density (1/degree)")
        ax.legend(fontsize="small")
        return ax


def _angles_at_vertex(atoms: Atoms, a: str, b: str, c: str, cut_ba: float, cut_bc: float) -> np.ndarray:
    """Every angle A-B-C in degrees, vertex B, with |BA| < cut_ba and |BC| < cut_bc."""
    i, j, vectors, d = neighbor_pairs(atoms, max(cut_ba, cut_bc), "ijDd", full_list=True)
    sym = np.asarray(atoms.get_chemical_symbols())
    keep = (sym[i] == b) & (((sym[j] == a) & (d < cut_ba)) | ((sym[j] == c) & (d < cut_bc)))
    i, j, vectors, d = i[keep], j[keep], vectors[keep], d[keep]
    order = np.argsort(i, kind="stable")
    i, j, vectors, d = i[order], j[order], vectors[order], d[order]
    # all ordered pairs (p, q), p != q, of neighbours that share the vertex
    starts = np.searchsorted(i, i, side="left")
    sizes = np.searchsorted(i, i, side="right") - starts
    p = np.repeat(np.arange(len(i)), sizes)
    q = np.repeat(starts, sizes) + (np.arange(len(p)) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    ok = (p != q) & (sym[j[p]] == a) & (sym[j[q]] == c) & (d[p] < cut_ba) & (d[q] < cut_bc)
    if a == c:
        ok &= p < q
    p, q = p[ok], q[ok]
    cosine = np.einsum("ij,ij->i", vectors[p], vectors[q]) / (d[p] * d[q])
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def angle_distribution(frames: Atoms | Iterable[Atoms], triplets: Sequence[str | Sequence[str]],
                       cutoffs: dict[str, float] | None = None, n_bins: int = 180) -> AngleResult:
    """Distributions of the angles A-B-C (e.g. "O-Si-O", vertex Si) over ``frames``.

    ``cutoffs`` maps a pair "B-A" (vertex first) to the bond length limit in Å; a pair missing from it gets the
    first minimum of its partial RDF in these frames.
    """
    frames = as_frames(frames)
    parsed = [(t.split("-") if isinstance(t, str) else list(t)) for t in triplets]
    for t, parts in zip(triplets, parsed):
        if len(parts) != 3:
            raise ValueError(f"triplet {t!r}: expected three element symbols such as 'O-Si-O'")
    cutoffs = dict(cutoffs or {})
    missing = sorted({pair_name(b, x) for a, b, c in parsed for x in (a, c)} - set(cutoffs))
    if missing:
        rdf = partial_rdf(frames, missing, r_max=min(4.0, max_r(frames[0])))
        for pair in missing:
            if not np.isfinite(rdf.first_minimum_angstrom[pair]):
                raise ValueError(f"no first minimum in g(r) of {pair} below 4 Å; give cutoffs={{'{pair}': ...}}")
            cutoffs[pair] = rdf.first_minimum_angstrom[pair]
    edges = np.linspace(0.0, 180.0, n_bins + 1)
    density, mean, mode, count = {}, {}, {}, {}
    for a, b, c in parsed:
        name = f"{a}-{b}-{c}"
        angles = np.concatenate([_angles_at_vertex(at, a, b, c, cutoffs[pair_name(b, a)], cutoffs[pair_name(b, c)])
                                 for at in frames])
        hist = np.histogram(angles, bins=edges)[0].astype(float)
        count[name] = int(len(angles))
        density[name] = hist / (hist.sum() * (edges[1] - edges[0])) if len(angles) else hist
        mean[name] = float(angles.mean()) if len(angles) else float("nan")
        mode[name] = float(0.5 * (edges[:-1] + edges[1:])[np.argmax(hist)]) if len(angles) else float("nan")
    return AngleResult(0.5 * (edges[:-1] + edges[1:]), density, mean, mode, count, cutoffs, len(frames),
                       provenance(None, triplets=list(density), cutoffs_angstrom=cutoffs, n_bins=n_bins))
