"""Binary alloys: random FCC solid solutions across composition (lattice parameter against Vegard's law, mixing
energy, FCC against BCC), averaged over seeded random configurations, and the ordered L1_2 compound A3B
(lattice parameter, formation energy, cubic elastic constants).

Random configurations keep the average cubic symmetry: positions relax freely, the cell only hydrostatically
(ASE's FrechetCellFilter with ``hydrostatic_strain``), so the lattice parameter is well defined and a BCC cell
cannot slide to FCC along the Bain path. The lattice parameter of a cell with N atoms is (4 V / N)^(1/3) for FCC.
Mixing energies are per atom and referenced to the pure elements in the *FCC* structure, relaxed the same way:
E_mix(x) = E(A_x B_1-x)/N - x E_A^fcc - (1 - x) E_B^fcc; for Cr and Fe (BCC in nature) that reference is a
hypothetical FCC crystal, the usual choice for an FCC solid solution.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, reference_states
from tqdm.auto import tqdm

from ..io import provenance
from ..models import check_elements
from ..results import Result
from ._common import settings_keywords
from .relax import RelaxationNotConverged

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

Lattice = Literal["fcc", "bcc"]
#: atoms per cubic conventional cell
ATOMS_PER_CUBIC_CELL = {"fcc": 4, "bcc": 2}


def relax_hydrostatic(atoms: Atoms, calc: "Calculator", *, fmax: float = 0.01, steps: int = 300) -> tuple[Atoms, float]:
    """(relaxed copy, energy in eV): positions relax freely, the cell scales isotropically (shape kept)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    work = atoms.copy()
    work.calc = calc
    optimizer = FIRE(FrechetCellFilter(work, hydrostatic_strain=True), logfile=None)
    if not optimizer.run(fmax=fmax, steps=steps):
        raise RelaxationNotConverged(f"hydrostatic relaxation of {work.get_chemical_formula()} did not reach "
                                     f"fmax = {fmax} eV/Å in {steps} steps; raise steps")
    energy = float(work.get_potential_energy())
    relaxed = work.copy()
    relaxed.calc = None
    return relaxed, energy


def _starting_lattice_parameter(symbol: str, lattice: Lattice) -> float:
    """A cubic lattice parameter from ASE's tabulated reference volume per atom (a start for the relaxation)."""
    if not reference_states[atomic_numbers[symbol]]:
        raise ValueError(f"ASE has no reference crystal for {symbol}, so no starting lattice parameter")
    probe = bulk(symbol)
    volume = probe.get_volume() / len(probe)
    return float((ATOMS_PER_CUBIC_CELL[lattice] * volume) ** (1 / 3))


@dataclasses.dataclass(frozen=True)
class ElementReference:
    symbol: str
    lattice: str
    a0_angstrom: float
    energy_ev_per_atom: float


def element_reference(symbol: str, calc: "Calculator", lattice: Lattice = "fcc", *, fmax: float = 0.01,
                      steps: int = 300) -> ElementReference:
    """Relaxed cubic ``lattice`` of a pure element: lattice parameter and energy per atom."""
    cell = bulk(symbol, lattice, a=_starting_lattice_parameter(symbol, lattice), cubic=True)
    check_elements(cell, calc, where=f"{lattice} {symbol}")
    relaxed, energy = relax_hydrostatic(cell, calc, fmax=fmax, steps=steps)
    a0 = float((ATOMS_PER_CUBIC_CELL[lattice] * relaxed.get_volume() / len(relaxed)) ** (1 / 3))
    return ElementReference(symbol, lattice, a0, energy / len(relaxed))


def random_solid_solution(host: str, solute: str, host_fraction: float, *, lattice: Lattice = "fcc",
                          a_angstrom: float, size: int = 2, seed: int | Sequence[int] = 0) -> Atoms:
    """A cubic ``size``^3 supercell of ``lattice`` with round(host_fraction * N) host atoms placed at random."""
    if not 0.0 <= host_fraction <= 1.0:
        raise ValueError(f"host_fraction must lie in [0, 1], got {host_fraction}")
    atoms = bulk(host, lattice, a=a_angstrom, cubic=True).repeat((size, size, size))
    n_solute = int(round((1.0 - host_fraction) * len(atoms)))
    chosen = np.random.default_rng(seed).choice(len(atoms), size=n_solute, replace=False)
    symbols = np.array(atoms.get_chemical_symbols(), dtype=object)
    symbols[chosen] = solute
    atoms.set_chemical_symbols(list(symbols))
    return atoms


@dataclasses.dataclass(frozen=True)
class SolidSolutionResult(Result):
    """Random ``host``-``solute`` solid solutions against the host fraction x; means and standard deviations over
    the random configurations (end members have one configuration and zero spread)."""

    host: str
    solute: str
    host_fraction: np.ndarray
    a0_angstrom: np.ndarray
    a0_std_angstrom: np.ndarray
    vegard_a0_angstrom: np.ndarray
    vegard_deviation_angstrom: np.ndarray
    mixing_energy_ev_per_atom: np.ndarray
    mixing_energy_std_ev_per_atom: np.ndarray
    #: E(BCC) - E(FCC) per atom at the same composition (NaN when BCC was not computed)
    bcc_minus_fcc_ev_per_atom: np.ndarray
    bcc_minus_fcc_std_ev_per_atom: np.ndarray
    #: per configuration (rows: compositions, columns: configurations; NaN where an end member has only one)
    a0_configs_angstrom: np.ndarray
    mixing_energy_configs_ev_per_atom: np.ndarray
    end_member_a0_angstrom: dict
    n_configs: int
    n_atoms_fcc: int
    provenance: dict

    summary_fields = ("host", "solute", "n_configs", "n_atoms_fcc")

    def plot(self, ax=None, quantity: Literal["a0", "mixing", "bcc_fcc"] = "a0", label: str | None = None):
        """Mean and spread against the host fraction: lattice parameter with Vegard's line ("a0"), mixing energy
        ("mixing") or E_BCC - E_FCC ("bcc_fcc")."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        x = self.host_fraction
        label = label or f"{self.host}-{self.solute}"
        if quantity == "a0":
            bars = ax.errorbar(x, self.a0_angstrom, yerr=self.a0_std_angstrom, fmt="o", capsize=3, label=label)
            ax.plot(x, self.vegard_a0_angstrom, "--", color=bars.lines[0].get_color(), lw=1,
                    label=f"Vegard ({label})")
            ax.set_ylabel("a0 (Å)")
        elif quantity == "mixing":
            ax.errorbar(x, 1e3 * self.mixing_energy_ev_per_atom, yerr=1e3 * self.mixing_energy_std_ev_per_atom,
                        fmt="o-", capsize=3, label=label)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_ylabel("E_mix (meV/atom)")
        elif quantity == "bcc_fcc":
            ax.errorbar(x, 1e3 * self.bcc_minus_fcc_ev_per_atom, yerr=1e3 * self.bcc_minus_fcc_std_ev_per_atom,
                        fmt="o-", capsize=3, label=label)
            ax.axhline(0, color="black", lw=0.8)
            ax.set_ylabel("E_BCC - E_FCC (meV/atom)")
        else:
            raise ValueError(f"quantity must be 'a0', 'mixing' or 'bcc_fcc', not {quantity!r}")
        ax.set_xlabel(f"{self.host} fraction")
        ax.legend()
        return ax


def _element_of(atoms: Atoms, where: str) -> str:
    """The one element of ``atoms``; raises naming ``where`` otherwise."""
    symbols = sorted(set(atoms.get_chemical_symbols()))
    if len(symbols) != 1:
        raise ValueError(f"{where}: a crystal of one element is expected, got the elements {symbols}")
    return symbols[0]


@dataclasses.dataclass(frozen=True)
class SolidSolutionSettings:
    """solute: the element mixed into the host; host_fractions: the compositions (host fraction x in [0, 1]), each
    averaged over ``n_configs`` random configurations in a ``size``^3 cubic supercell, seeded by (seed, composition
    index, configuration); compare_bcc: also relax random BCC cells with the same seeds; relaxations to ``fmax``
    (eV/Å) in at most ``steps``."""

    solute: str = "Cu"
    host_fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
    n_configs: int = 3
    size: int = 2
    compare_bcc: bool = False
    seed: int = 0
    fmax: float = 0.01
    steps: int = 300
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n_configs < 1:
            raise ValueError(f"SolidSolutionSettings.n_configs must be at least 1, got {self.n_configs}")
        if min(self.host_fractions) < 0 or max(self.host_fractions) > 1:
            raise ValueError(f"SolidSolutionSettings.host_fractions must lie in [0, 1], got "
                             f"{list(self.host_fractions)}")


def compute(atoms: Atoms, calc: "Calculator",
            settings: SolidSolutionSettings = SolidSolutionSettings()) -> SolidSolutionResult:
    """Lattice parameter and mixing energy of random FCC host-``settings.solute`` solutions (4 size^3 atoms), each
    composition averaged over ``n_configs`` configurations (:class:`SolidSolutionSettings`).

    ``atoms`` is a crystal of the host element (``bulk("Ni")``): only its element is read, because every cell here,
    the pure FCC (and BCC) references included, is built from ASE's reference volume and relaxed with ``calc``.
    ``compare_bcc`` also relaxes random BCC cells (2 size^3 atoms) with the same seeds and reports
    E_BCC - E_FCC per atom at each composition (from the mean energies of each lattice).
    """
    host, solute = _element_of(atoms, "solid solution host"), settings.solute
    n_configs, size, compare_bcc, seed = settings.n_configs, settings.size, settings.compare_bcc, settings.seed
    fmax, steps = settings.fmax, settings.steps
    fractions = np.asarray(sorted(float(x) for x in settings.host_fractions))
    check_elements(Atoms([host, solute]), calc, where=f"{host}-{solute} solid solution")
    lattices: tuple[Lattice, ...] = ("fcc", "bcc") if compare_bcc else ("fcc",)
    refs = {(el, lat): element_reference(el, calc, lat, fmax=fmax, steps=steps)
            for lat in lattices for el in (host, solute)}
    a_host, a_solute = refs[(host, "fcc")].a0_angstrom, refs[(solute, "fcc")].a0_angstrom
    e_host, e_solute = refs[(host, "fcc")].energy_ev_per_atom, refs[(solute, "fcc")].energy_ev_per_atom
    vegard = fractions * a_host + (1 - fractions) * a_solute

    shape = (len(fractions), n_configs)
    a0 = {lat: np.full(shape, np.nan) for lat in lattices}
    energy = {lat: np.full(shape, np.nan) for lat in lattices}
    jobs = [(i, k, lat) for i, x in enumerate(fractions) for k in range(n_configs if 0 < x < 1 else 1)
            for lat in lattices]
    for i, k, lat in tqdm(jobs, desc=f"{host}-{solute} configurations", disable=not settings.progress):
        x = fractions[i]
        guess = x * refs[(host, lat)].a0_angstrom + (1 - x) * refs[(solute, lat)].a0_angstrom
        cell = random_solid_solution(host, solute, x, lattice=lat, a_angstrom=guess, size=size, seed=(seed, i, k))
        relaxed, e = relax_hydrostatic(cell, calc, fmax=fmax, steps=steps)
        n_host = relaxed.get_chemical_symbols().count(host)
        x_actual = n_host / len(relaxed)
        a0[lat][i, k] = (ATOMS_PER_CUBIC_CELL[lat] * relaxed.get_volume() / len(relaxed)) ** (1 / 3)
        energy[lat][i, k] = e / len(relaxed) - x_actual * e_host - (1 - x_actual) * e_solute

    mixing = energy["fcc"]
    if compare_bcc:
        bcc_fcc = np.nanmean(energy["bcc"], axis=1) - np.nanmean(mixing, axis=1)
        bcc_fcc_std = np.hypot(_std(energy["bcc"]), _std(mixing))
    else:
        bcc_fcc = bcc_fcc_std = np.full(len(fractions), np.nan)
    mean_a0 = np.nanmean(a0["fcc"], axis=1)
    return SolidSolutionResult(
        host=host,
        solute=solute,
        host_fraction=fractions,
        a0_angstrom=mean_a0,
        a0_std_angstrom=_std(a0["fcc"]),
        vegard_a0_angstrom=vegard,
        vegard_deviation_angstrom=mean_a0 - vegard,
        mixing_energy_ev_per_atom=np.nanmean(mixing, axis=1),
        mixing_energy_std_ev_per_atom=_std(mixing),
        bcc_minus_fcc_ev_per_atom=bcc_fcc,
        bcc_minus_fcc_std_ev_per_atom=bcc_fcc_std,
        a0_configs_angstrom=a0["fcc"],
        mixing_energy_configs_ev_per_atom=mixing,
        end_member_a0_angstrom={f"{el}_{lat}": refs[(el, lat)].a0_angstrom for el, lat in refs},
        n_configs=n_configs,
        n_atoms_fcc=4 * size**3,
        provenance=provenance(calc, host=host, solute=solute, host_fractions=fractions, n_configs=n_configs,
                              size=size, compare_bcc=compare_bcc, seed=seed, fmax=fmax, steps=steps,
                              cell_relaxation="hydrostatic (FrechetCellFilter), positions free",
                              mixing_reference="pure elements in the FCC structure, same calculator"),
    )


@settings_keywords(SolidSolutionSettings)
def solid_solution_scan(calc: "Calculator", host: str = "Ni", solute: str = SolidSolutionSettings.solute,
                        **settings: Any) -> SolidSolutionResult:
    """:func:`compute` for the host element ``host``, with the fields of :class:`SolidSolutionSettings` as keywords:
    ``solid_solution_scan(calc, "Ni", "Cr", n_configs=2)``."""
    return compute(Atoms([host]), calc, SolidSolutionSettings(solute=solute, **settings))


def _std(values: np.ndarray) -> np.ndarray:
    """Sample standard deviation per row over the finite entries (0 where a row has one entry)."""
    counts = np.sum(np.isfinite(values), axis=1)
    spread = np.nanstd(values, axis=1, ddof=0) * np.sqrt(counts / np.maximum(counts - 1, 1))
    return np.where(counts > 1, spread, 0.0)


# -------------------------------------------------------------------------------------------------------- L1_2
@dataclasses.dataclass(frozen=True)
class L12Result(Result):
    """Ordered L1_2 compound A3B: relaxed lattice parameter, formation energy against the FCC elements, and the
    cubic elastic constants from :func:`umlip_helpers.properties.elastic` (None where not computed)."""

    formula: str
    a0_angstrom: float
    formation_energy_ev_per_atom: float
    c11_gpa: float | None
    c12_gpa: float | None
    c44_gpa: float | None
    b0_gpa: float | None
    provenance: dict

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        names = ["C11", "C12", "C44", "B0"]
        values = [self.c11_gpa, self.c12_gpa, self.c44_gpa, self.b0_gpa]
        ax.bar(names, [np.nan if v is None else v for v in values])
        ax.set_ylabel("GPa")
        ax.set_title(f"L1_2 {self.formula}: a0 {self.a0_angstrom:.3f} Å, "
                     f"ΔH_f {1e3 * self.formation_energy_ev_per_atom:.0f} meV/atom")
        return ax


def l12_structure(majority: str, minority: str, a_angstrom: float) -> Atoms:
    """The 4-atom cubic L1_2 cell: ``minority`` at the corner, ``majority`` at the face centres."""
    return Atoms([minority] + [majority] * 3, scaled_positions=[(0, 0, 0), (0, 0.5, 0.5), (0.5, 0, 0.5),
                                                                 (0.5, 0.5, 0)],
                 cell=[a_angstrom] * 3, pbc=True)


@dataclasses.dataclass(frozen=True)
class L12Settings:
    """minority: the B of A3B (on the cube corners); elastic: also C11, C12, C44 (ions relaxed at each strain);
    relaxations to ``fmax`` (eV/Å) in at most ``steps``."""

    minority: str = "Al"
    elastic: bool = True
    fmax: float = 0.005
    steps: int = 300


def compute_l12(atoms: Atoms, calc: "Calculator", settings: L12Settings = L12Settings()) -> L12Result:
    """Lattice parameter, formation energy (against the FCC elements) and, with ``settings.elastic``, C11, C12, C44
    of the L1_2 compound A3B (e.g. Ni3Al), A the element of ``atoms`` and B ``settings.minority``
    (:class:`L12Settings`).

    ``atoms`` is a crystal of the majority element (``bulk("Ni")``): only its element is read; the compound and the
    FCC references are built from ASE's reference volumes and relaxed with ``calc``."""
    majority, minority = _element_of(atoms, "L1_2 majority"), settings.minority
    elastic, fmax, steps = settings.elastic, settings.fmax, settings.steps
    refs = {el: element_reference(el, calc, "fcc", fmax=fmax, steps=steps) for el in (majority, minority)}
    guess = 0.75 * refs[majority].a0_angstrom + 0.25 * refs[minority].a0_angstrom
    cell = l12_structure(majority, minority, guess)
    check_elements(cell, calc, where=f"L1_2 {majority}3{minority}")
    relaxed, energy = relax_hydrostatic(cell, calc, fmax=fmax, steps=steps)
    formation = energy / 4 - 0.75 * refs[majority].energy_ev_per_atom - 0.25 * refs[minority].energy_ev_per_atom
    constants = {"c11_gpa": None, "c12_gpa": None, "c44_gpa": None, "b0_gpa": None}
    if elastic:
        constants = _cubic_elastic_constants(relaxed, calc)
    return L12Result(
        formula=f"{majority}3{minority}",
        a0_angstrom=float(relaxed.cell.lengths()[0]),
        formation_energy_ev_per_atom=float(formation),
        **constants,
        provenance=provenance(calc, majority=majority, minority=minority, elastic=elastic, fmax=fmax, steps=steps,
                              formation_reference="FCC elements relaxed with the same calculator"),
    )


@settings_keywords(L12Settings)
def l12_compound(calc: "Calculator", majority: str = "Ni", minority: str = L12Settings.minority,
                 **settings: Any) -> L12Result:
    """:func:`compute_l12` for the majority element ``majority``, with the fields of :class:`L12Settings` as
    keywords: ``l12_compound(calc, "Ni", "Al", elastic=False)``."""
    return compute_l12(Atoms([majority]), calc, L12Settings(minority=minority, **settings))


def _cubic_elastic_constants(relaxed: Atoms, calc: "Calculator") -> dict[str, float]:
    from .elastic import elastic_constants

    result = elastic_constants(relaxed, calc, relax_ions=True, progress=False)
    return {"c11_gpa": float(result.c11_gpa), "c12_gpa": float(result.c12_gpa), "c44_gpa": float(result.c44_gpa),
            "b0_gpa": float((result.c11_gpa + 2 * result.c12_gpa) / 3)}
