"""Adsorption energies of single atoms at the top, bridge, fcc and hcp sites of the (111) surface of an elemental
FCC crystal, referenced to half of the X2 molecule computed with the same calculator.

Takes the *relaxed* bulk crystal (relax it first with :func:`umlip_helpers.properties.relax.relax`): the slab is
built at its lattice parameter.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, fcc111, molecule
from ase.constraints import FixAtoms, FixedLine
from ase.data import atomic_numbers, covalent_radii
from tqdm.auto import tqdm

from ..io import provenance
from ..models import check_elements
from ..results import Result
from ._common import fcc_lattice_parameter, layers_by_height, settings_keywords
from .relax import relax

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

Site = Literal["ontop", "bridge", "fcc", "hcp"]


@dataclasses.dataclass(frozen=True)
class AdsorptionResult(Result):
    """Adsorption energies on FCC(111): E_ads = E(slab + X) - E(slab) - E(X2)/2, gas X2 computed with the same
    calculator (spin-unpolarised unless the calculator models spin). Negative means binding.

    The adsorbate relaxes only along the surface normal so that each site keeps its identity (a bridge or top
    atom would otherwise slide into a hollow); the upper slab layers relax freely.
    """

    adsorbates: tuple[str, ...]
    sites: tuple[str, ...]
    e_ads_ev: dict
    favourable_site: dict
    height_angstrom: dict
    half_molecule_energy_ev: dict
    molecule_bond_angstrom: dict
    provenance: dict

    summary_fields = ("e_ads_ev", "favourable_site")

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(4.5, 3.2))
        x = np.arange(len(self.sites))
        width = 0.8 / len(self.adsorbates)
        for k, adsorbate in enumerate(self.adsorbates):
            values = [self.e_ads_ev[adsorbate][site] for site in self.sites]
            ax.bar(x + (k - (len(self.adsorbates) - 1) / 2) * width, values, width, label=adsorbate)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, self.sites)
        ax.set_ylabel("E_ads (eV), vs X2/2")
        ax.legend()
        return ax


def _site_height(symbol: str, adsorbate: str, site: str, nearest: float) -> float:
    """Starting height that puts the adsorbate at a covalent bond length from its nearest surface atoms."""
    bond = covalent_radii[atomic_numbers[symbol]] + covalent_radii[atomic_numbers[adsorbate]]
    lateral = {"ontop": 0.0, "bridge": nearest / 2, "fcc": nearest / math.sqrt(3), "hcp": nearest / math.sqrt(3)}
    return math.sqrt(max(bond**2 - lateral[site] ** 2, (0.5 * bond) ** 2))


def half_molecule_energy(element: str, calc: "Calculator", *, box_angstrom: float = 12.0, fmax: float = 0.01,
                         steps: int = 200) -> tuple[float, float]:
    """(E(X2)/2 in eV, relaxed bond length in Å) of a homonuclear diatomic in a periodic box."""
    dimer = molecule(f"{element}2")
    dimer.set_cell([box_angstrom] * 3)
    dimer.center()
    dimer.pbc = True
    result = relax(dimer, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
    return result.energy_ev / 2, float(result.atoms.get_distance(0, 1))


@dataclasses.dataclass(frozen=True)
class AdsorptionSettings:
    """adsorbates: elements X (X2 is the gas reference); sites: any of ontop, bridge, fcc, hcp (ASE's fcc111 names);
    one adsorbate per ``size`` surface cell of an ``n_layers`` slab whose top ``n_relaxed_layers`` relax to ``fmax``
    (eV/Å) in at most ``steps``; ``vacuum_angstrom`` on each side."""

    adsorbates: Sequence[str] = ("H", "O")
    sites: Sequence[Site] = ("ontop", "bridge", "fcc", "hcp")
    size: tuple[int, int] = (2, 2)
    n_layers: int = 4
    n_relaxed_layers: int = 2
    vacuum_angstrom: float = 10.0
    fmax: float = 0.02
    steps: int = 300
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = [s for s in self.sites if s not in ("ontop", "bridge", "fcc", "hcp")]
        if unknown:
            raise ValueError(f"AdsorptionSettings.sites: unknown site(s) {unknown}; fcc111 sites are ontop, bridge, "
                             "fcc, hcp")
        if not 0 < self.n_relaxed_layers < self.n_layers:
            raise ValueError(f"AdsorptionSettings.n_relaxed_layers must be between 1 and n_layers - 1, got "
                             f"{self.n_relaxed_layers}")


def compute(atoms: Atoms, calc: "Calculator", settings: AdsorptionSettings = AdsorptionSettings()) -> AdsorptionResult:
    """Adsorption energies of single atoms at the top, bridge, fcc and hcp sites of the (111) surface of the
    elemental FCC crystal ``atoms`` (:class:`AdsorptionSettings`).

    The lowest ``n_layers - n_relaxed_layers`` layers stay at bulk positions. The favourable site is the one with
    the lowest E_ads. Reference: half of the X2 molecule relaxed with the same calculator.
    """
    adsorbates, sites, size, n_layers = settings.adsorbates, settings.sites, settings.size, settings.n_layers
    n_relaxed_layers, vacuum_angstrom, fmax, steps = (settings.n_relaxed_layers, settings.vacuum_angstrom,
                                                      settings.fmax, settings.steps)
    symbol, a0 = fcc_lattice_parameter(atoms)
    slab = fcc111(symbol, size=(*size, n_layers), a=a0, vacuum=vacuum_angstrom)
    slab.pbc = True
    check_elements(slab + Atoms(list(adsorbates)), calc, where="adsorption_energies")
    layers = layers_by_height(slab)
    fixed = np.concatenate(layers[: n_layers - n_relaxed_layers]).tolist()
    slab.set_constraint(FixAtoms(indices=fixed))
    clean = relax(slab, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
    nearest = a0 / math.sqrt(2)

    e_ads, heights, half, bonds = {}, {}, {}, {}
    jobs = [(a, s) for a in adsorbates for s in sites]
    with tqdm(total=len(jobs) + len(adsorbates), desc="adsorption", disable=not settings.progress) as bar:
        for adsorbate in adsorbates:
            half[adsorbate], bonds[adsorbate] = half_molecule_energy(adsorbate, calc, fmax=fmax, steps=steps)
            bar.update(1)
            e_ads[adsorbate], heights[adsorbate] = {}, {}
            for site in sites:
                system = clean.atoms.copy()
                add_adsorbate(system, adsorbate, _site_height(symbol, adsorbate, site, nearest), position=site)
                top_z = system.positions[layers[-1], 2].mean()
                system.set_constraint([FixAtoms(indices=fixed), FixedLine([len(system) - 1], direction=[0, 0, 1])])
                result = relax(system, calc, fmax=fmax, steps=steps, relax_cell=False, progress=False)
                e_ads[adsorbate][site] = result.energy_ev - clean.energy_ev - half[adsorbate]
                heights[adsorbate][site] = float(result.atoms.positions[-1, 2] - top_z)
                bar.update(1)
    return AdsorptionResult(
        adsorbates=tuple(adsorbates),
        sites=tuple(sites),
        e_ads_ev=e_ads,
        favourable_site={a: min(values, key=values.get) for a, values in e_ads.items()},
        height_angstrom=heights,
        half_molecule_energy_ev=half,
        molecule_bond_angstrom=bonds,
        provenance=provenance(calc, adsorbates=list(adsorbates), sites=list(sites), size=size, n_layers=n_layers,
                              n_relaxed_layers=n_relaxed_layers, vacuum_angstrom=vacuum_angstrom, fmax=fmax,
                              steps=steps, symbol=symbol, a0_angstrom=a0,
                              reference="E(X2)/2 relaxed in a periodic box with the same calculator"),
    )


@settings_keywords(AdsorptionSettings)
def adsorption_energies(bulk: Atoms, calc: "Calculator", **settings: Any) -> AdsorptionResult:
    """:func:`compute` with the fields of :class:`AdsorptionSettings` as keywords: ``adsorption_energies(bulk, calc,
    adsorbates=("O",))``."""
    return compute(bulk, calc, AdsorptionSettings(**settings))
