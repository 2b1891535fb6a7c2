"""Structure analysis of MD frames: partial RDFs with coordination numbers, bond-angle distributions, MSD and
diffusion coefficients; first-shell distances of a crystal (the reference values of
notebook 05); plus the explicit readers of the shipped tobermorite cell and of a CIF's fully occupied sites.

Pairs come from vesin's neighbour list (C++, O(N)), so no function here loops over atoms in Python.
The MD analyses average over the frames they are given (an ``Atoms`` or a list of them, e.g.
``ase.io.read(traj, ":")``).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms

from .errors import DataValidationError
from .io import provenance
from .results import Result

TOBERMORITE_FILE = Path(__file__).resolve().parent.parent / "data" / "tobermorite" / "tobermorite_352.xyz"
TOBERMORITE_LITERATURE = TOBERMORITE_FILE.parent.parent / "references" / "tobermorite_literature.csv"
#: tobermorite 14 Å (Bonaccorsi et al. 2005) as COD entry 9013974; the crystal reference of the first-shell distances
TOBERMORITE14_CIF = TOBERMORITE_LITERATURE.parent / "tobermorite14_cod9013974.cif"
#: literature rows whose ``quantity`` is this prefix plus an element pair ("first_peak_Ca-O") give a first-peak position
PEAK_QUANTITY_PREFIX = "first_peak_"
#: 1 Å²/ps in cm²/s
ANGSTROM2_PER_PS_IN_CM2_PER_S = 1e-4


def _frames(frames: Atoms | Iterable[Atoms]) -> list[Atoms]:
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


def _pair_name(a: str, b: str) -> str:
    return f"{a}-{b}"


def _parse_pair(pair: str | Sequence[str]) -> tuple[str, str]:
    parts = pair.split("-") if isinstance(pair, str) else list(pair)
    if len(parts) != 2:
        raise ValueError(f"pair {pair!r}: expected two element symbols such as 'Si-O'")
    return parts[0], parts[1]


def _first_peak_and_minimum(r: np.ndarray, g: np.ndarray, smoothing: float) -> tuple[float, float]:
    """Position of the first peak of g(r) and of the first minimum after it (NaN where there is none).

    On g smoothed by a Gaussian of ``smoothing`` Å: the first peak is the first local maximum reaching half the
    highest one; the first minimum is the middle of the lowest stretch before g rises again by a tenth of the peak
    height (the middle of the gap in a perfect crystal), or where g bottoms out if it never rises again.
    """
    from scipy.ndimage import gaussian_filter1d

    if not np.any(g > 0):
        return float("nan"), float("nan")
    smooth = gaussian_filter1d(g, max(smoothing / (r[1] - r[0]), 1e-3), mode="nearest")
    tol = 1e-6 * smooth.max()
    high = smooth >= 0.5 * smooth.max()
    rising = np.r_[True, smooth[1:] >= smooth[:-1] - tol]
    falling = np.r_[smooth[1:] < smooth[:-1] - tol, False]
    candidates = np.flatnonzero(high & rising & falling)
    peak = int(candidates[0]) if len(candidates) else int(np.argmax(smooth))
    tail = smooth[peak:]
    running_min = np.minimum.accumulate(tail)
    rises = np.flatnonzero(tail > running_min + 0.1 * smooth[peak])
    if len(rises) == 0:  # nothing beyond the first shell (a molecule): where g bottoms out
        return float(r[peak]), float(r[peak + int(np.flatnonzero(tail <= tail.min() + tol)[0])])
    stop = int(rises[0])
    basin = np.flatnonzero(tail[:stop] <= running_min[stop] + max(tol, 0.02 * smooth[peak]))
    return float(r[peak]), float(r[peak + int(round(basin.mean()))])


@dataclasses.dataclass(frozen=True)
class RDFResult(Result):
    """Partial radial distribution functions g_ab(r), averaged over frames.

    Normalised as ASE's ``get_rdf`` (and LAMMPS ``compute rdf``): g_ab = n_ab(r) / (N_a rho_b 4 pi r^2 dr), with
    rho_b = N_b / V. ``coordination`` is the mean number of b atoms within ``first_minimum_angstrom`` of an a atom.
    """

    r_angstrom: np.ndarray
    g: dict
    first_peak_angstrom: dict
    first_minimum_angstrom: dict
    coordination: dict
    n_frames: int
    provenance: dict

    def summary(self):
        return {f"{key}_{pair}": value for key in ("first_peak_angstrom", "first_minimum_angstrom", "coordination")
                for pair, value in getattr(self, key).items()}

    def plot(self, ax=None, pairs: Sequence[str] | None = None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 3.5))
        for pair in pairs or self.g:
            line, = ax.plot(self.r_angstrom, self.g[pair], label=pair)
            if np.isfinite(self.first_peak_angstrom[pair]):
                ax.axvline(self.first_peak_angstrom[pair], color=line.get_color(), lw=0.6, ls=":")
        ax.set_xlabel("r (Å)")
        ax.set_ylabel("g(r)")
        ax.legend(fontsize="small")
        return ax


def partial_rdf(frames: Atoms | Iterable[Atoms], pairs: Sequence[str | Sequence[str]] | None = None,
                r_max: float = 6.0, n_bins: int = 300, smoothing_angstrom: float = 0.05) -> RDFResult:
    """Partial g(r) for each element pair (default: every pair of elements present), with first peak, first
    minimum and coordination number, averaged over ``frames``. ``smoothing_angstrom`` only affects how the peak and
    minimum are located (g itself is not smoothed); widen it for a single static frame."""
    frames = _frames(frames)
    symbols = sorted(set(frames[0].get_chemical_symbols()))
    pair_list = ([_parse_pair(p) for p in pairs] if pairs is not None
                 else list(itertools.combinations_with_replacement(symbols, 2)))
    edges = np.linspace(0.0, r_max, n_bins + 1)
    r = 0.5 * (edges[1:] + edges[:-1])
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = {_pair_name(a, b): np.zeros(n_bins) for a, b in pair_list}
    counts = {name: np.zeros(n_bins) for name in g}
    for index, atoms in enumerate(frames):
        found = set(atoms.get_chemical_symbols())
        for a, b in pair_list:
            if a not in found or b not in found:
                raise ValueError(f"frame {index}: pair {a}-{b} asked for, but the frame holds only {sorted(found)}")
        i, j, d = neighbor_pairs(atoms, r_max, "ijd", full_list=True)
        sym = np.asarray(atoms.get_chemical_symbols())
        volume = atoms.get_volume()
        for a, b in pair_list:
            n_a, n_b = np.count_nonzero(sym == a), np.count_nonzero(sym == b)
            hist = np.histogram(d[(sym[i] == a) & (sym[j] == b)], bins=edges)[0]
            name = _pair_name(a, b)
            counts[name] += hist / n_a
            g[name] += hist / (n_a * (n_b / volume) * shell)
    n = len(frames)
    peaks, minima, coordination = {}, {}, {}
    for name in g:
        g[name] /= n
        counts[name] /= n
        peaks[name], minima[name] = _first_peak_and_minimum(r, g[name], smoothing_angstrom)
        coordination[name] = (float(counts[name][r < minima[name]].sum()) if np.isfinite(minima[name])
                              else float("nan"))
    return RDFResult(r, g, peaks, minima, coordination, n,
                     provenance(None, pairs=list(g), r_max=r_max, n_bins=n_bins, n_frames=n,
                                smoothing_angstrom=smoothing_angstrom))


def literature_peaks(path: str | Path = TOBERMORITE_LITERATURE) -> list[dict]:
    """The first-peak positions in a literature table (CSV with ``#`` comment lines and the columns quantity, value,
    unit, phase, method, doi, source): rows whose quantity is ``first_peak_A-B`` and unit ``angstrom``. Each comes
    back as a dict with ``pair``, ``value_angstrom``, ``phase``, ``method``, ``doi`` and ``source``; a malformed
    peak row (no DOI, another unit, a value that is not a positive number) raises DataValidationError naming its
    line."""
    import csv

    path = Path(path)
    numbered = [(k, line) for k, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise DataValidationError([(str(path), None, "header", "the file has no header row")])
    rows = list(csv.reader(line for _, line in numbered))
    header, required = rows[0], ("quantity", "value", "unit", "phase", "method", "doi", "source")
    missing = [name for name in required if name not in header]
    if missing:
        raise DataValidationError([(str(path), numbered[0][0], "header", f"missing columns {missing}")])
    peaks, problems = [], []
    for (line_number, _), fields in zip(numbered[1:], rows[1:]):
        row = dict(zip(header, fields))
        if not row.get("quantity", "").startswith(PEAK_QUANTITY_PREFIX):
            continue
        where = f"line {line_number}"
        pair = row["quantity"][len(PEAK_QUANTITY_PREFIX):]
        try:
            a, b = _parse_pair(pair)
            value = float(row["value"])
        except ValueError as exc:
            problems.append((str(path), None, where, str(exc)))
            continue
        if not value > 0:
            problems.append((str(path), None, where, f"value {row['value']!r} is not a positive distance"))
        if row["unit"] != "angstrom":
            problems.append((str(path), None, where, f"unit {row['unit']!r}; peak positions are in 'angstrom'"))
        if not row["doi"].strip():
            problems.append((str(path), None, where, "no DOI: every reference value needs its source"))
        peaks.append({"pair": _pair_name(a, b), "value_angstrom": value, "phase": row["phase"],
                      "method": row["method"], "doi": row["doi"].strip(), "source": row["source"]})
    if problems:
        raise DataValidationError(problems)
    return peaks


def compare_peaks(rdf: RDFResult, references: Sequence[dict]) -> list[dict]:
    """One row per reference peak whose pair ``rdf`` holds (in either order): the pair, the model's first peak, the
    reference value, model minus reference, and the reference's phase, method and DOI."""
    table = []
    for ref in references:
        a, b = _parse_pair(ref["pair"])
        name = next((n for n in (_pair_name(a, b), _pair_name(b, a)) if n in rdf.first_peak_angstrom), None)
        if name is None:
            continue
        model = float(rdf.first_peak_angstrom[name])
        table.append({"pair": name, "model_peak_angstrom": model, "reference_angstrom": ref["value_angstrom"],
                      "difference_angstrom": model - ref["value_angstrom"], "phase": ref["phase"],
                      "method": ref["method"], "doi": ref["doi"]})
    return table


@dataclasses.dataclass(frozen=True)
class FirstShellResult(Result):
    """Distances from each A atom to the B atoms within a cutoff (pair "A-B"), e.g. Si-O bonds in a crystal.

    ``coordination`` holds the number of B within the cutoff of each A (in the order of ``centre_indices``);
    ``next_distance_angstrom`` is the shortest A-B distance beyond the cutoff (NaN if none within 1.5 Å of it), so
    a cutoff that sits in a gap of the distance distribution shows as ``max_angstrom < cutoff < next_distance``.
    """

    pair: str
    cutoff_angstrom: float
    mean_angstrom: float
    min_angstrom: float
    max_angstrom: float
    n_distances: int
    mean_coordination: float
    next_distance_angstrom: float
    distances_angstrom: np.ndarray
    centre_indices: np.ndarray
    coordination: np.ndarray
    provenance: dict

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(self.distances_angstrom, bins=30, color="0.6")
        ax.axvline(self.mean_angstrom, color="k", lw=0.8, label=f"mean {self.mean_angstrom:.3f} Å")
        ax.set_xlabel(f"{self.pair} distance (Å)")
        ax.set_ylabel("count")
        ax.legend(fontsize="small")
        return ax


#: how far beyond the cutoff ``first_shell_distances`` looks for the next distance
_GAP_SEARCH_ANGSTROM = 1.5


def first_shell_distances(atoms: Atoms, pair: str | Sequence[str], cutoff_angstrom: float) -> FirstShellResult:
    """Every A-B distance below ``cutoff_angstrom`` for ``pair`` "A-B" (A the centre): mean, min, max, the number of
    B around each A, and the next distance beyond the cutoff. Periodic images count where ``atoms.pbc`` says so.
    An A-A pair counts each distance once."""
    a, b = _parse_pair(pair)
    sym = np.asarray(atoms.get_chemical_symbols())
    for element in (a, b):
        if element not in sym:
            raise ValueError(f"pair {a}-{b}: no {element} in {atoms.get_chemical_formula()}")
    i, j, d = neighbor_pairs(atoms, cutoff_angstrom + _GAP_SEARCH_ANGSTROM, "ijd", full_list=True)
    pairs = (sym[i] == a) & (sym[j] == b)
    inside = pairs & (d < cutoff_angstrom)
    beyond = d[pairs & (d >= cutoff_angstrom)]
    centres = np.flatnonzero(sym == a)
    coordination = np.bincount(i[inside], minlength=len(atoms))[centres]
    distances = d[inside & (i < j)] if a == b else d[inside]
    if len(distances) == 0:
        raise ValueError(f"pair {a}-{b}: no distance below the cutoff {cutoff_angstrom} Å")
    return FirstShellResult(
        _pair_name(a, b), float(cutoff_angstrom), float(distances.mean()), float(distances.min()),
        float(distances.max()), int(len(distances)), float(coordination.mean()),
        float(beyond.min()) if len(beyond) else float("nan"), np.sort(distances), centres, coordination,
        provenance(None, pair=_pair_name(a, b), cutoff_angstrom=cutoff_angstrom, formula=atoms.get_chemical_formula()))


def read_crystal_structure(path: str | Path = TOBERMORITE14_CIF, min_occupancy: float = 1.0) -> Atoms:
    """A CIF's conventional cell (``ase.io.read(..., format="cif")``), keeping only the atoms on sites whose
    occupancy is at least ``min_occupancy``.

    ASE places an atom at every symmetry copy of a partly occupied site, so distances to and between such copies
    describe no real cell: with the default only fully occupied sites stay. In the tobermorite 14 Å entry that
    drops the interlayer Ca2 (occupancy 0.5). Each atom gets ``arrays["site_label"]`` and
    ``arrays["site_occupancy"]``; ``info["dropped_sites"]`` maps each dropped label to its occupancy. A site
    shared by two elements raises DataValidationError naming it.
    """
    from ase.io import read

    path = Path(path)
    atoms = read(path, format="cif", store_tags=True)
    labels = list(atoms.info["_atom_site_label"])
    occupancy = atoms.info.get("occupancy") or {}
    site_occupancy, problems = [], []
    for site, label in enumerate(labels):
        species = occupancy.get(str(site), {})
        if len(species) > 1:
            problems.append((str(path), None, f"site {label}", f"shared by {sorted(species)}; not supported"))
        site_occupancy.append(float(next(iter(species.values()), 1.0)))
    if problems:
        raise DataValidationError(problems)
    kinds = atoms.arrays["spacegroup_kinds"]
    atoms.arrays["site_label"] = np.asarray(labels)[kinds]
    atoms.arrays["site_occupancy"] = np.asarray(site_occupancy)[kinds]
    kept = atoms[atoms.arrays["site_occupancy"] >= min_occupancy]
    if len(kept) == 0:
        raise DataValidationError([(str(path), None, "_atom_site_occupancy",
                                    f"no site has occupancy >= {min_occupancy}")])
    kept.info = {"source": path.name, "spacegroup": atoms.info.get("spacegroup"),
                 "dropped_sites": {label: occ for label, occ in zip(labels, site_occupancy) if occ < min_occupancy}}
    return kept


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
    frames = _frames(frames)
    parsed = [(t.split("-") if isinstance(t, str) else list(t)) for t in triplets]
    for t, parts in zip(triplets, parsed):
        if len(parts) != 3:
            raise ValueError(f"triplet {t!r}: expected three element symbols such as 'O-Si-O'")
    cutoffs = dict(cutoffs or {})
    missing = sorted({_pair_name(b, x) for a, b, c in parsed for x in (a, c)} - set(cutoffs))
    if missing:
        rdf = partial_rdf(frames, missing, r_max=min(4.0, _max_r(frames[0])))
        for pair in missing:
            if not np.isfinite(rdf.first_minimum_angstrom[pair]):
                raise ValueError(f"no first minimum in g(r) of {pair} below 4 Å; give cutoffs={{'{pair}': ...}}")
            cutoffs[pair] = rdf.first_minimum_angstrom[pair]
    edges = np.linspace(0.0, 180.0, n_bins + 1)
    density, mean, mode, count = {}, {}, {}, {}
    for a, b, c in parsed:
        name = f"{a}-{b}-{c}"
        angles = np.concatenate([_angles_at_vertex(at, a, b, c, cutoffs[_pair_name(b, a)], cutoffs[_pair_name(b, c)])
                                 for at in frames])
        hist = np.histogram(angles, bins=edges)[0].astype(float)
        count[name] = int(len(angles))
        density[name] = hist / (hist.sum() * (edges[1] - edges[0])) if len(angles) else hist
        mean[name] = float(angles.mean()) if len(angles) else float("nan")
        mode[name] = float(0.5 * (edges[:-1] + edges[1:])[np.argmax(hist)]) if len(angles) else float("nan")
    return AngleResult(0.5 * (edges[:-1] + edges[1:]), density, mean, mode, count, cutoffs, len(frames),
                       provenance(None, triplets=list(density), cutoffs_angstrom=cutoffs, n_bins=n_bins))


def _max_r(atoms: Atoms) -> float:
    """Half the smallest distance between opposite cell faces (the largest r free of self-images)."""
    cell = atoms.cell.array
    heights = [abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
               for k in range(3)]
    return 0.5 * min(heights)


@dataclasses.dataclass(frozen=True)
class DiffusionResult(Result):
    """Mean squared displacement per element and the Einstein diffusion coefficient D = slope / 6."""

    time_ps: np.ndarray
    msd_angstrom2: dict
    diffusion_cm2_per_s: dict
    fit_start_ps: float
    n_frames: int
    provenance: dict

    def summary(self):
        return {f"diffusion_cm2_per_s_{el}": value for el, value in self.diffusion_cm2_per_s.items()}

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        for element, msd in self.msd_angstrom2.items():
            ax.plot(self.time_ps, msd, label=f"{element}: D = {self.diffusion_cm2_per_s[element]:.2e} cm²/s")
        ax.axvline(self.fit_start_ps, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("lag time (ps)")
        ax.set_ylabel("MSD (Å²)")
        ax.legend(fontsize="small")
        return ax


def mean_squared_displacement(frames: Sequence[Atoms], frame_interval_fs: float, elements: Sequence[str] | None = None,
                              fit_from: float = 0.3) -> DiffusionResult:
    """MSD(t) per element, averaged over atoms and over every time origin, and D from a straight-line fit of
    MSD against t over lags beyond ``fit_from`` (a fraction of the longest lag).

    Positions are unwrapped through the minimum-image change in fractional coordinates between consecutive frames,
    so frames must be close enough in time that no atom moves half a cell between them.
    """
    frames = _frames(frames)
    if len(frames) < 3:
        raise ValueError(f"MSD needs at least 3 frames, got {len(frames)}")
    frac = np.array([at.cell.scaled_positions(at.positions) for at in frames])
    step = np.diff(frac, axis=0)
    step -= np.round(step)
    unwrapped_frac = np.concatenate([frac[:1], frac[:1] + np.cumsum(step, axis=0)])
    positions = np.einsum("fnk,fkl->fnl", unwrapped_frac, np.array([at.cell.array for at in frames]))
    sym = np.asarray(frames[0].get_chemical_symbols())
    elements = list(elements) if elements else sorted(set(sym))
    lags = np.arange(1, len(frames))
    time_ps = np.r_[0.0, lags * frame_interval_fs / 1000.0]
    msd, diffusion = {}, {}
    for element in elements:
        pos = positions[:, sym == element]
        if pos.shape[1] == 0:
            raise ValueError(f"element {element} is not in the frames")
        msd[element] = np.r_[0.0, [np.mean(np.sum((pos[lag:] - pos[:-lag]) ** 2, axis=-1)) for lag in lags]]
        fit = time_ps >= fit_from * time_ps[-1]
        slope = np.polyfit(time_ps[fit], msd[element][fit], 1)[0] if fit.sum() >= 2 else float("nan")
        diffusion[element] = float(slope / 6.0 * ANGSTROM2_PER_PS_IN_CM2_PER_S)
    return DiffusionResult(time_ps, msd, diffusion, float(fit_from * time_ps[-1]), len(frames),
                           provenance(None, frame_interval_fs=frame_interval_fs, elements=elements, fit_from=fit_from))


def read_tobermorite(path: str | Path = TOBERMORITE_FILE, keep_unknown_columns: bool = False) -> Atoms:
    """Read the shipped tobermorite cell explicitly, column by column (see data/README.md).

    Each row is ``symbol x y z c4 u1 u2 u3 w1 w2 w3 id``: Cartesian positions in Å, a column that is zero for
    every atom, six numbers of unknown meaning (they are not velocities or forces consistent with this
    structure; see data/README.md) and the 1-based atom index of the source. The header declares only
    ``species pos``, so ``ase.io.read`` silently drops the rest; this reader checks every row instead.
    The source index goes to ``atoms.arrays["source_id"]``; ``keep_unknown_columns`` also keeps the six numbers
    as ``unknown_a`` and ``unknown_b`` (N x 3 each).
    """
    from ase.io.extxyz import key_val_str_to_dict

    path = Path(path)
    lines = path.read_text().splitlines()
    name = str(path)
    problems: list[tuple[str, int | None, str, str]] = []
    try:
        n_atoms = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise DataValidationError([(name, 0, "atom count", f"first line {lines[:1]!r} is not an atom count")])
    header = key_val_str_to_dict(lines[1])
    if "Lattice" not in header or not re.search(r'Lattice="([^"]*)"', lines[1]):
        raise DataValidationError([(name, 0, "Lattice", "the comment line has no Lattice=")])
    rows = [line.split() for line in lines[2:2 + n_atoms]]
    if len(rows) != n_atoms:
        problems.append((name, 0, "atoms", f"header says {n_atoms} atoms, file has {len(rows)} rows"))
    for k, row in enumerate(rows):
        if len(row) != 12:
            problems.append((name, 0, f"row {k + 3}", f"expected a symbol and 11 numbers, got {len(row)} fields"))
    if problems:
        raise DataValidationError(problems)
    symbols = [row[0] for row in rows]
    numbers = np.array([[float(x) for x in row[1:]] for row in rows])
    if np.any(numbers[:, 3] != 0.0):
        problems.append((name, 0, "column 5", "expected zero for every atom"))
    if not np.array_equal(numbers[:, 10], np.arange(1, n_atoms + 1)):
        problems.append((name, 0, "column 12", "expected the atom index 1..N"))
    if not np.all(np.isfinite(numbers)):
        problems.append((name, 0, "numbers", "non-finite values"))
    if problems:
        raise DataValidationError(problems)
    pbc = header.get("pbc", np.array([True, True, True]))
    lattice = re.search(r'Lattice="([^"]*)"', lines[1]).group(1).split()
    # extxyz: the three lattice vectors one after the other (ase's parsed header holds the transpose)
    atoms = Atoms(symbols, positions=numbers[:, 0:3], cell=np.array(lattice, dtype=float).reshape(3, 3), pbc=pbc)
    atoms.arrays["source_id"] = numbers[:, 10].astype(int)
    if keep_unknown_columns:
        atoms.arrays["unknown_a"] = numbers[:, 4:7].copy()
        atoms.arrays["unknown_b"] = numbers[:, 7:10].copy()
    atoms.info["source"] = path.name
    return atoms
