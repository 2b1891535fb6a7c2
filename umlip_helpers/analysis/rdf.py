"""Partial radial distribution functions with first peaks, first minima and coordination numbers; their comparison
with literature peak positions; the first-shell distances of a crystal (the reference values of notebook 05)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from ase import Atoms

from ..errors import DataValidationError
from ..io import provenance
from ..results import Result
from .neighbours import as_frames, neighbor_pairs, pair_name, parse_pair
from .structures import TOBERMORITE_LITERATURE

PEAK_QUANTITY_PREFIX = "first_peak_"


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
    frames = as_frames(frames)
    symbols = sorted(set(frames[0].get_chemical_symbols()))
    pair_list = ([parse_pair(p) for p in pairs] if pairs is not None
                 else list(itertools.combinations_with_replacement(symbols, 2)))
    edges = np.linspace(0.0, r_max, n_bins + 1)
    r = 0.5 * (edges[1:] + edges[:-1])
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    g = {pair_name(a, b): np.zeros(n_bins) for a, b in pair_list}
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
            name = pair_name(a, b)
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
            a, b = parse_pair(pair)
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
        peaks.append({"pair": pair_name(a, b), "value_angstrom": value, "phase": row["phase"],
                      "method": row["method"], "doi": row["doi"].strip(), "source": row["source"]})
    if problems:
        raise DataValidationError(problems)
    return peaks


def compare_peaks(rdf: RDFResult, references: Sequence[dict]) -> list[dict]:
    """One row per reference peak whose pair ``rdf`` holds (in either order): the pair, the model's first peak, the
    reference value, model minus reference, and the reference's phase, method and DOI."""
    table = []
    for ref in references:
        a, b = parse_pair(ref["pair"])
        name = next((n for n in (pair_name(a, b), pair_name(b, a)) if n in rdf.first_peak_angstrom), None)
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
    a, b = parse_pair(pair)
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
        pair_name(a, b), float(cutoff_angstrom), float(distances.mean()), float(distances.min()),
        float(distances.max()), int(len(distances)), float(coordination.mean()),
        float(beyond.min()) if len(beyond) else float("nan"), np.sort(distances), centres, coordination,
        provenance(None, pair=pair_name(a, b), cutoff_angstrom=cutoff_angstrom, formula=atoms.get_chemical_formula()))
