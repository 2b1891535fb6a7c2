"""Equation of state (Birch–Murnaghan through ``ase.eos``) and the Delta gauge of Lejaeghere et al.

The Delta gauge compares two equations of state of the same crystal:
Δ = sqrt( ∫ (E1(V) − E2(V))² dV / ΔV ) over [0.94 V̄, 1.06 V̄], V̄ the mean of the two V0, both curves
shifted so that their minima are at zero energy; in meV/atom
(K. Lejaeghere et al., Science 351, aad3000 (2016), doi:10.1126/science.aad3000).

Magnetism: the WIEN2k references of the Delta test are spin-polarised for the magnetic elements
(ferromagnetic Fe, Co, Ni; antiferromagnetic Cr, Mn, O in the Delta test's cells). A uMLIP has no spin:
it predicts the energy of whatever magnetic state its training data held. Models trained on Materials Project
data (MPtrj) learned from spin-polarised PBE(+U) runs started ferromagnetic, so for Fe, Co and Ni they
implicitly describe the ferromagnetic state, the same one as the reference; for Cr, Mn and O the training
data's magnetic order need not match the Delta test's antiferromagnetic order, so part of Δ there is
a difference in magnetic state, not only model error.

One piece: the equation of state and the Delta gauge built on it, with the benchmark over elements that compares
both.
"""

from __future__ import annotations

import csv
import dataclasses
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from ase import Atoms, units

from ..errors import UmlipError, UnsupportedElements
from ..io import provenance
from ..paths import data_path
from ..models import check_elements, supported_elements
from ..results import Result
from ._common import settings_keywords, structure_from_argument

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: data/references in the repository (the package is installed editable from it)
REFERENCE_DIR = data_path("references")
DELTA_REFERENCE_CSV = REFERENCE_DIR / "delta_wien2k_pbe.csv"


class EOSFitError(UmlipError, RuntimeError):
    """The energy–volume points do not give a physical Birch–Murnaghan fit (no minimum, B0 ≤ 0, ...)."""


def birch_murnaghan_energy(volume, e0: float, v0: float, b0: float, b1: float):
    """Birch–Murnaghan E(V); volumes in Å³, B0 in eV/Å³, energies in eV."""
    eta = (v0 / np.asarray(volume, dtype=float)) ** (2.0 / 3.0) - 1.0
    return e0 + 9.0 * v0 * b0 / 16.0 * (eta**3 * b1 + eta**2 * (6.0 - 4.0 * (eta + 1.0)))


@dataclasses.dataclass(frozen=True)
class EOSResult(Result):
    """Birch–Murnaghan fit of E(V), per atom. ``lattice_abc_angstrom`` are the conventional (spglib-standardised)
    cell lengths scaled to V0 with the input's shape kept; ``a0_angstrom`` is the first of them."""

    formula: str
    spacegroup: str
    a0_angstrom: float
    lattice_abc_angstrom: tuple
    v0_angstrom3_per_atom: float
    e0_ev_per_atom: float
    b0_gpa: float
    b1: float
    fit_rms_mev_per_atom: float
    v0_inside_range: bool
    volumes_angstrom3_per_atom: np.ndarray
    energies_ev_per_atom: np.ndarray
    provenance: dict

    summary_fields = ("formula", "a0_angstrom", "v0_angstrom3_per_atom", "b0_gpa", "b1", "fit_rms_mev_per_atom")

    @property
    def label(self) -> str:
        return str(self.provenance.get("model", {}).get("name", "model"))

    def energy(self, volume_per_atom) -> np.ndarray:
        """The fitted E(V) in eV/atom."""
        return birch_murnaghan_energy(volume_per_atom, self.e0_ev_per_atom, self.v0_angstrom3_per_atom,
                                      self.b0_gpa * units.GPa, self.b1)

    def plot(self, ax=None, relative: bool = True, **style):
        """E(V) points and fit; ``relative`` shifts energies so the fitted minimum is at 0 meV/atom."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.4), layout="constrained")
        shift = self.e0_ev_per_atom if relative else 0.0
        v = self.volumes_angstrom3_per_atom
        grid = np.linspace(v.min(), v.max(), 200)
        line, = ax.plot(grid, (self.energy(grid) - shift) * 1000, label=style.pop("label", self.label), **style)
        ax.plot(v, (self.energies_ev_per_atom - shift) * 1000, "o", color=line.get_color(), ms=4)
        ax.set_xlabel("volume (Å³/atom)")
        ax.set_ylabel("E − E0 (meV/atom)" if relative else "E (meV/atom)")
        ax.legend(fontsize="small")
        return ax


def fit_birch_murnaghan(volumes_per_atom: Sequence[float], energies_per_atom: Sequence[float],
                        where: str = "EOS") -> tuple[float, float, float, float]:
    """(E0 eV/atom, V0 Å³/atom, B0 eV/Å³, B1) from ``ase.eos.EquationOfState``."""
    from ase.eos import EquationOfState
    from scipy.optimize import OptimizeWarning

    volumes = np.asarray(volumes_per_atom, dtype=float)
    energies = np.asarray(energies_per_atom, dtype=float)
    if len(volumes) < 5:
        raise EOSFitError(f"{where}: a Birch–Murnaghan fit needs at least 5 volumes, got {len(volumes)}")
    if not np.all(np.isfinite(energies)):
        raise EOSFitError(f"{where}: non-finite energies {energies.tolist()}")
    fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
    try:
        # curve_fit's trial parameters may leave V0 < 0, and a fit without a minimum has no covariance: both are
        # judged below, so their numerical warnings are noise here
        with np.errstate(invalid="ignore", over="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            fit.fit(warn=False)
    except (RuntimeError, ValueError) as exc:
        raise EOSFitError(f"{where}: Birch–Murnaghan fit failed: {exc}") from exc
    e0, b0, b1, v0 = (float(x) for x in fit.eos_parameters)
    if not (b0 > 0 and v0 > 0 and np.isfinite(b1)):
        raise EOSFitError(f"{where}: unphysical fit (V0={v0:.4g} Å³/atom, B0={b0 / units.GPa:.4g} GPa); "
                          "the energies have no minimum near the sampled volumes")
    return e0, v0, b0, b1


def _conventional_lengths(atoms: Atoms) -> tuple[str, np.ndarray]:
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=1e-3)
    if dataset is None:
        return "P1 (1)", atoms.cell.lengths()
    std_volume = abs(np.linalg.det(dataset.std_lattice))
    # spglib may idealise the cell; rescale its lengths to the input's volume per atom
    scale = (atoms.get_volume() / len(atoms) / (std_volume / len(dataset.std_types))) ** (1 / 3)
    return f"{dataset.international} ({dataset.number})", np.linalg.norm(dataset.std_lattice, axis=1) * scale


@dataclasses.dataclass(frozen=True)
class EOSSettings:
    """npoints volumes from (1 − volume_range)·Vc to (1 + volume_range)·Vc per atom; Vc is the input's volume per
    atom unless ``center_volume_per_atom`` is given (the Delta test samples 0.94–1.06 of the reference V0).
    relax_ions: relax the positions at each volume to ``fmax`` (eV/Å), for crystals whose internal coordinates are
    not fixed by symmetry."""

    volume_range: float = 0.06
    npoints: int = 7
    center_volume_per_atom: float | None = None
    relax_ions: bool = False
    fmax: float = 0.01
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.volume_range < 1:
            raise ValueError(f"EOSSettings.volume_range must lie between 0 and 1, got {self.volume_range}")


def compute(atoms: Atoms, calc: "Calculator", settings: EOSSettings = EOSSettings()) -> EOSResult:
    """E(V) of the crystal ``atoms`` on the volumes of ``settings`` (:class:`EOSSettings`), scaling the cell
    isotropically (shape kept), then a Birch–Murnaghan fit."""
    from tqdm.auto import tqdm

    from .relax import relax

    volume_range, npoints = settings.volume_range, settings.npoints
    relax_ions, fmax = settings.relax_ions, settings.fmax
    check_elements(atoms, calc, where=f"eos of {atoms.get_chemical_formula()}")
    if not atoms.pbc.all():
        raise ValueError("eos needs a periodic crystal (pbc=True on all three axes)")
    natoms = len(atoms)
    v_input = atoms.get_volume() / natoms
    v_center = float(settings.center_volume_per_atom or v_input)
    volumes = np.linspace(1 - volume_range, 1 + volume_range, npoints) * v_center
    energies = []
    for v in tqdm(volumes, desc=f"EOS {atoms.get_chemical_formula()}", disable=not settings.progress, leave=False):
        strained = atoms.copy()
        strained.set_cell(atoms.cell * (v / v_input) ** (1 / 3), scale_atoms=True)
        if relax_ions:
            strained = relax(strained, calc, fmax=fmax, relax_cell=False, progress=False).atoms
        strained.calc = calc
        energies.append(strained.get_potential_energy() / natoms)
    energies = np.asarray(energies)
    where = f"eos of {atoms.get_chemical_formula()}"
    e0, v0, b0, b1 = fit_birch_murnaghan(volumes, energies, where=where)
    residual = energies - birch_murnaghan_energy(volumes, e0, v0, b0, b1)
    inside = bool(volumes.min() <= v0 <= volumes.max())
    if not inside:
        warnings.warn(f"{where}: V0 = {v0:.3f} Å³/atom lies outside the sampled volumes "
                      f"{volumes.min():.3f}–{volumes.max():.3f}; the fit is an extrapolation", RuntimeWarning,
                      stacklevel=2)
    spacegroup, lengths = _conventional_lengths(atoms)
    lengths = lengths * (v0 / v_input) ** (1 / 3)
    return EOSResult(
        formula=atoms.get_chemical_formula(),
        spacegroup=spacegroup,
        a0_angstrom=float(lengths[0]),
        lattice_abc_angstrom=tuple(float(x) for x in lengths),
        v0_angstrom3_per_atom=v0,
        e0_ev_per_atom=e0,
        b0_gpa=b0 / units.GPa,
        b1=b1,
        fit_rms_mev_per_atom=float(np.sqrt(np.mean(residual**2)) * 1000),
        v0_inside_range=inside,
        volumes_angstrom3_per_atom=volumes,
        energies_ev_per_atom=energies,
        provenance=provenance(calc, volume_range=volume_range, npoints=npoints, center_volume_per_atom=v_center,
                              relax_ions=relax_ions, fmax=fmax if relax_ions else None, eos="birchmurnaghan"),
    )


@settings_keywords(EOSSettings)
def eos(atoms: Atoms, calc: "Calculator", **settings: Any) -> EOSResult:
    """:func:`compute` with the fields of :class:`EOSSettings` as keywords: ``eos(atoms, calc, npoints=9)``."""
    return compute(atoms, calc, EOSSettings(**settings))


# ----------------------------------------------------------------------------------------------- Delta gauge

def _eos_triplet(value: Any) -> tuple[float, float, float]:
    """(V0 Å³/atom, B0 GPa, B1) from an EOSResult, a mapping or a 3-sequence."""
    if isinstance(value, EOSResult):
        return value.v0_angstrom3_per_atom, value.b0_gpa, value.b1
    if isinstance(value, Mapping):
        keys = [("v0_angstrom3_per_atom", "b0_gpa", "b1"), ("V0", "B0", "B1"), ("v0", "b0", "b1")]
        for names in keys:
            if all(k in value for k in names):
                return tuple(float(value[k]) for k in names)
        raise KeyError(f"an EOS mapping needs keys v0_angstrom3_per_atom, b0_gpa, b1; got {sorted(value)}")
    v0, b0, b1 = value
    return float(v0), float(b0), float(b1)


def delta_gauge(result: Any, reference: Any) -> float:
    """Δ in meV/atom between two equations of state, each an EOSResult, a mapping with V0 (Å³/atom),
    B0 (GPa), B1, or a (V0, B0, B1) tuple. Symmetric in its arguments."""
    v1, b1_gpa, bp1 = _eos_triplet(result)
    v2, b2_gpa, bp2 = _eos_triplet(reference)
    vbar = 0.5 * (v1 + v2)
    lo, hi = 0.94 * vbar, 1.06 * vbar
    nodes, weights = np.polynomial.legendre.leggauss(64)  # E1-E2 is smooth on the interval: exact to round-off
    volumes = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
    difference = (birch_murnaghan_energy(volumes, 0.0, v1, b1_gpa * units.GPa, bp1)
                  - birch_murnaghan_energy(volumes, 0.0, v2, b2_gpa * units.GPa, bp2))
    integral = 0.5 * (hi - lo) * np.sum(weights * difference**2)
    return float(np.sqrt(integral / (hi - lo)) * 1000.0)


def load_delta_reference(path: str | Path = DELTA_REFERENCE_CSV) -> dict[str, tuple[float, float, float]]:
    """element -> (V0 Å³/atom, B0 GPa, B1) from a Delta-test reference CSV (comment lines start with #)."""
    path = Path(path)
    rows = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    table = {}
    for number, row in enumerate(csv.DictReader(rows), start=1):
        try:
            table[row["element"].strip()] = (float(row["V0"]), float(row["B0"]), float(row["B1"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: data row {number}: needs numeric element,V0,B0,B1 ({exc}): {row}") from exc
    return table


@dataclasses.dataclass(frozen=True)
class DeltaBenchmarkResult(Result):
    """Δ per element against the reference, with the model's own EOS per element."""

    mean_delta_mev_per_atom: float
    median_delta_mev_per_atom: float
    n_elements: int
    delta_mev_per_atom: dict
    v0_angstrom3_per_atom: dict
    b0_gpa: dict
    b1: dict
    #: element -> why it was not computed: not covered by the model
    skipped: dict
    #: element -> why its Birch–Murnaghan fit failed (E(V) without a minimum near V0, e.g. for noble gases); these
    #: elements are not in the mean and median, so read the statistics together with this list
    failed: dict
    #: elements whose fitted V0 fell outside the sampled 0.94–1.06 V0(reference): their EOS is an extrapolation
    v0_outside_range: list
    reference: str
    provenance: dict

    summary_fields = ("mean_delta_mev_per_atom", "median_delta_mev_per_atom", "n_elements", "n_failed")

    @property
    def n_failed(self) -> int:
        return len(self.failed)

    def plot(self, ax=None, vmax: float | None = None, cmap: str = "viridis"):
        """Periodic-table heat map of Δ (meV/atom); elements the model lacks are grey, failed fits red."""
        import matplotlib.pyplot as plt
        from matplotlib.colors import Normalize
        from matplotlib.patches import Rectangle

        if ax is None:
            _, ax = plt.subplots(figsize=(11, 4.8), layout="constrained")
        values = self.delta_mev_per_atom
        norm = Normalize(0.0, vmax or (max(values.values()) if values else 1.0))
        colormap = plt.get_cmap(cmap)
        from ase.data import chemical_symbols

        shown = set(values) | set(self.skipped) | set(self.failed)
        for symbol in chemical_symbols[1:87]:  # outline of the table up to Rn
            if symbol not in shown and periodic_table_position(symbol)[0] <= 7:
                row, col = periodic_table_position(symbol)
                ax.add_patch(Rectangle((col - 0.48, row - 0.48), 0.96, 0.96, facecolor="none", edgecolor="0.9"))
                ax.text(col, row, symbol, ha="center", va="center", fontsize=6, color="0.75")
        for symbol in shown:
            row, col = periodic_table_position(symbol)
            value = values.get(symbol)
            face = colormap(norm(value)) if value is not None else ("#f4a6a6" if symbol in self.failed else "0.85")
            ax.add_patch(Rectangle((col - 0.48, row - 0.48), 0.96, 0.96, facecolor=face, edgecolor="white"))
            dark = value is not None and norm(value) < 0.6
            text = f"{symbol}\n{value:.1f}" if value is not None else symbol
            ax.text(col, row, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        rows = [periodic_table_position(s)[0] for s in shown]
        ax.set_xlim(0.4, 18.6)
        ax.set_ylim(max(rows + [7]) + 0.6, 0.4)
        ax.set_aspect("equal")
        ax.axis("off")
        plt.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=colormap), ax=ax, shrink=0.7, label="Δ (meV/atom)")
        failed = f"; fit failed (red): {', '.join(self.failed)}" if self.failed else ""
        ax.set_title(f"Δ vs {self.reference}: mean {self.mean_delta_mev_per_atom:.2f}, "
                     f"median {self.median_delta_mev_per_atom:.2f} meV/atom ({self.n_elements} elements{failed})")
        return ax


def periodic_table_position(symbol: str) -> tuple[int, int]:
    """(row, group) in the 18-column table; lanthanides La–Yb and actinides Ac–No on rows 8 and 9."""
    from ase.data import atomic_numbers

    z = atomic_numbers[symbol]
    starts = [(1, 1), (3, 2), (11, 3), (19, 4), (37, 5), (55, 6), (87, 7)]
    period, start = max((p, s) for s, p in starts if z >= s)
    offset = z - start
    if period == 1:
        return 1, 1 if z == 1 else 18
    if period in (2, 3):
        return period, offset + 1 if offset < 2 else offset + 11
    if period in (4, 5):
        return period, offset + 1
    if offset < 2:
        return period, offset + 1
    if offset < 16:  # La..Yb (Ac..No) on the f-block rows
        return (8 if period == 6 else 9), offset + 1
    return period, offset - 13  # Lu (Lr) in group 3, then Hf (Rf) in group 4 ...


def delta_benchmark(
    calc: "Calculator",
    elements: Sequence[str] | None = None,
    *,
    reference_csv: str | Path = DELTA_REFERENCE_CSV,
    npoints: int = 7,
    progress: bool = True,
) -> DeltaBenchmarkResult:
    """Δ against the Delta test's reference (WIEN2k PBE by default) for its elemental crystals
    (``ase.collections.dcdft``), each scaled to the reference V0 and sampled at 0.94–1.06 V0 with its shape
    and internal coordinates fixed, as in the Delta-test protocol. Elements the model does not cover are
    skipped with a note; elements whose fit fails are listed in ``failed`` and left out of the statistics.
    See the module docstring about magnetic elements.
    """
    from ase.collections import dcdft
    from tqdm.auto import tqdm

    reference = load_delta_reference(reference_csv)
    wanted = list(elements) if elements is not None else list(reference)
    unknown = [e for e in wanted if e not in reference]
    if unknown:
        raise ValueError(f"{reference_csv}: no reference row for {', '.join(unknown)}")
    covered = supported_elements(calc)
    deltas, v0s, b0s, b1s, skipped, failed, outside = {}, {}, {}, {}, {}, {}, []
    for symbol in tqdm(wanted, desc="Delta benchmark", disable=not progress):
        if covered is not None and symbol not in covered:
            skipped[symbol] = "element not covered by the model"
            continue
        crystal = dcdft[symbol]
        v_ref = reference[symbol][0]
        crystal.set_cell(crystal.cell * (v_ref * len(crystal) / crystal.get_volume()) ** (1 / 3), scale_atoms=True)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*outside the sampled volumes", category=RuntimeWarning)
                result = eos(crystal, calc, npoints=npoints, center_volume_per_atom=v_ref, progress=False)
        except UnsupportedElements as exc:
            skipped[symbol] = str(exc)
            continue
        except EOSFitError as exc:
            failed[symbol] = str(exc)
            continue
        if not result.v0_inside_range:
            outside.append(symbol)
        deltas[symbol] = delta_gauge(result, reference[symbol])
        v0s[symbol], b0s[symbol], b1s[symbol] = result.v0_angstrom3_per_atom, result.b0_gpa, result.b1
    values = np.array(list(deltas.values()))
    return DeltaBenchmarkResult(
        mean_delta_mev_per_atom=float(values.mean()) if len(values) else float("nan"),
        median_delta_mev_per_atom=float(np.median(values)) if len(values) else float("nan"),
        n_elements=len(values),
        delta_mev_per_atom=deltas,
        v0_angstrom3_per_atom=v0s,
        b0_gpa=b0s,
        b1=b1s,
        skipped=skipped,
        failed=failed,
        v0_outside_range=outside,
        reference=Path(reference_csv).name,
        provenance=provenance(calc, elements=wanted, npoints=npoints, reference_csv=str(reference_csv),
                              volume_range=0.06),
    )


# ----------------------------------------------------------------------------------------------- command line

def cli_eos(args) -> dict[str, Any]:
    """``umlip eos --model M --structure Ni|FILE``: the EOS result as a dict."""
    from ..models import load_calculator

    atoms = structure_from_argument(args.structure)
    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    result = eos(atoms, calc)
    return {"type": "EOSResult", **result.to_dict()}
