"""What fine-tuning forgets: a fine-tuned model against its base on what it was not tuned on.

Three parts, each measured for both models (:func:`knowledge`) and compared (:func:`forgetting`):

* **other DFT data** (by default the shipped FCC Ni VASP frame; callers add more, e.g. the GPAW Ni frames): force,
  stress and aligned-energy MAEs against DFT, before and after;
* **the Delta gauge** (:func:`~umlip_helpers.properties.eos.delta_benchmark`) of a handful of elements against
  WIEN2k PBE, before and after. E(V) curves are compared at their minima, so the per-element energy shifts every
  fine-tune refits do not enter;
* **probes of other chemistry**: rattled crystals and a molecule that neither the YMnO3 nor the Ni data contain. There
  is no DFT for them here, so the base model stands for what the model knew, and any change is drift that nothing in
  the fine-tuning data asked for.

**The one number**, ``forgetting_force_rms_ev_per_angstrom``: the RMS over all atoms and components of the probes of
F_tuned - F_base. Why forces on the probes: they are defined for any chemistry without DFT, they are zero when
nothing moved (so a model against itself scores 0 and any drift scores > 0, whatever its direction), and they do not
see the per-element energy shifts (a fine-tune realigns its energy zero to the new DFT code, which says nothing about
forgetting). The DFT-anchored parts (Delta increase, Ni errors) are reported beside it, because drift can, by
chance, land closer to DFT. The energy change per probe is that of E(rattled) - E(ideal), for the same reason.

Replay (:mod:`.replay`) trains on base-labelled structures of a similar kind to these probes (bulk cells of common
elements, small molecules); the probes here are other compounds (NaCl, MgO, GaAs, MnO, benzene) and other rattles of
Cu and Si, so replay is measured partly in and partly out of the distribution it was given.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule

from ..data import DFTDataset, read_dataset
from ..errors import UnsupportedElements
from ..io import model_info, provenance
from ..metrics import evaluate
from ..models import check_elements
from ..paths import data_path
from ..properties.eos import delta_benchmark
from ..results import Result

__all__ = ["DELTA_ELEMENTS", "PROBES", "ForgettingResult", "ForgettingSettings", "Knowledge", "forgetting",
           "knowledge", "probe_structures", "shipped_other_data"]

#: Delta-test elements (WIEN2k PBE references in data/references/delta_wien2k_pbe.csv)
DELTA_ELEMENTS = ("Ni", "Cu", "Al", "Si", "Fe")
#: probes of other chemistry: name -> how ASE builds the ideal structure
PROBES: dict[str, tuple] = {
    "Cu": ("bulk", "Cu", "fcc", 3.61), "Si": ("bulk", "Si", "diamond", 5.43),
    "NaCl": ("bulk", "NaCl", "rocksalt", 5.64), "MgO": ("bulk", "MgO", "rocksalt", 4.21),
    "GaAs": ("bulk", "GaAs", "zincblende", 5.65), "MnO": ("bulk", "MnO", "rocksalt", 4.45),
    "C6H6": ("molecule", "C6H6"),
}


@dataclasses.dataclass(frozen=True)
class ForgettingSettings:
    delta_elements: tuple[str, ...] = DELTA_ELEMENTS
    probes: tuple[str, ...] = tuple(PROBES)
    #: standard deviation of the probes' rattle (Å) and its seed (not the replay set's)
    rattle_angstrom: float = 0.05
    seed: int = 1
    #: volumes per Delta EOS (0.94-1.06 V0)
    npoints: int = 7


def probe_structures(names: Sequence[str] = tuple(PROBES), rattle_angstrom: float = 0.05,
                     seed: int = 1) -> dict[str, tuple[Atoms, Atoms]]:
    """name -> (ideal, rattled) for each probe: cubic cells (4-8 atoms) or a molecule in a periodic box."""
    out = {}
    for i, name in enumerate(names):
        recipe = PROBES[name]
        if recipe[0] == "bulk":
            ideal = bulk(recipe[1], recipe[2], a=recipe[3], cubic=True)
        else:
            ideal = molecule(recipe[1])
            ideal.center(vacuum=5.0)
            ideal.pbc = True
        rattled = ideal.copy()
        rattled.rattle(stdev=rattle_angstrom, seed=seed * 1000 + i)
        out[name] = (ideal, rattled)
    return out


def shipped_other_data() -> dict[str, DFTDataset]:
    """The shipped DFT data that the YMnO3 fine-tune never sees: the FCC Ni VASP frame. (The tobermorite frame in
    data/tobermorite carries no energy or forces, so it cannot serve.)"""
    return {"ni_fcc_vasp": read_dataset(data_path("ni", "ni_fcc_vasp.xyz"), require=("energy", "forces"))}


@dataclasses.dataclass(frozen=True)
class Knowledge(Result):
    """What one model says on the forgetting checks: probe energies and forces, Delta per element, DFT errors."""

    model: str
    #: probe -> [E(ideal), E(rattled)] in eV, and probe -> forces on the rattled structure (eV/Å)
    probe_energies_ev: dict
    probe_forces_ev_per_angstrom: dict
    delta_mev_per_atom: dict
    #: dataset -> {force_mae_ev_per_angstrom, stress_mae_gpa, energy_mae_aligned_mev_per_atom (None for 1 frame)}
    dft_errors: dict
    #: part -> why it was left out (elements the model does not cover, a failed EOS fit)
    skipped: dict
    provenance: dict


def _probe(calc: Any, atoms: Atoms) -> tuple[float, np.ndarray]:
    atoms = atoms.copy()
    atoms.calc = calc
    return float(atoms.get_potential_energy()), np.array(atoms.get_forces())


def _dft_errors(calc: Any, dataset: DFTDataset) -> dict[str, float | None]:
    with warnings.catch_warnings():  # the force cosine of frames with zero forces (ideal crystals) is empty
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        result = evaluate(calc, dataset, progress=False)
    return {"force_mae_ev_per_angstrom": result.force_mae_ev_per_angstrom, "stress_mae_gpa": result.stress_mae_gpa,
            "energy_mae_aligned_mev_per_atom": result.energy_mae_aligned_mev_per_atom if len(dataset) > 1 else None}


def knowledge(calc: Any, datasets: Mapping[str, DFTDataset] | None = None,
              settings: ForgettingSettings = ForgettingSettings()) -> Knowledge:
    """Run ``calc`` on the probes, the Delta elements and the DFT ``datasets`` (default
    :func:`shipped_other_data`); what it does not cover is skipped with the reason."""
    datasets = shipped_other_data() if datasets is None else datasets
    energies, forces, skipped, dft = {}, {}, {}, {}
    for name, (ideal, rattled) in probe_structures(settings.probes, settings.rattle_angstrom, settings.seed).items():
        try:
            check_elements(ideal, calc, where=f"probe {name}")
        except UnsupportedElements as error:
            skipped[f"probe {name}"] = str(error)
            continue
        (e_ideal, _), (e_rattled, f_rattled) = _probe(calc, ideal), _probe(calc, rattled)
        energies[name], forces[name] = [e_ideal, e_rattled], f_rattled
    delta = delta_benchmark(calc, settings.delta_elements, npoints=settings.npoints, progress=False)
    skipped |= {f"delta {el}": why for el, why in {**delta.skipped, **delta.failed}.items()}
    for name, dataset in datasets.items():
        try:
            dft[name] = _dft_errors(calc, dataset)
        except UnsupportedElements as error:
            skipped[f"data {name}"] = str(error)
    return Knowledge(model=model_info(calc).name, probe_energies_ev=energies, probe_forces_ev_per_angstrom=forces,
                     delta_mev_per_atom=dict(delta.delta_mev_per_atom), dft_errors=dft, skipped=skipped,
                     provenance=provenance(calc, **dataclasses.asdict(settings),
                                           datasets={k: v.sha256() for k, v in datasets.items()}))


@dataclasses.dataclass(frozen=True)
class ForgettingResult(Result):
    model: str
    base_model: str
    #: the summary: RMS of F_tuned - F_base over every atom and component of the rattled probes (eV/Å)
    forgetting_force_rms_ev_per_angstrom: float
    #: probe -> RMS force change (eV/Å) and change of E(rattled) - E(ideal) per atom (meV/atom)
    probe_force_rms_change_ev_per_angstrom: dict
    probe_energy_change_mev_per_atom: dict
    #: probe -> change of E(ideal) per atom (meV/atom): the energy zero, as the models are loaded. For a probe with
    #: an element of the fine-tuning data it includes that element's refitted shift (the DFT code's reference), so
    #: read it for the probes of other elements only
    probe_energy_zero_change_mev_per_atom: dict
    #: element -> Δ against WIEN2k (meV/atom), and the mean of after - before over the elements both have
    delta_before_mev_per_atom: dict
    delta_after_mev_per_atom: dict
    mean_delta_increase_mev_per_atom: float | None
    #: dataset -> errors against DFT (see :class:`Knowledge`)
    dft_before: dict
    dft_after: dict
    skipped: dict
    provenance: dict

    summary_fields: ClassVar[tuple[str, ...]] = ("model", "base_model", "forgetting_force_rms_ev_per_angstrom",
                                                 "mean_delta_increase_mev_per_atom")

    def plot(self, ax=None):
        """Force change per probe (bars, eV/Å)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.2))
        names = list(self.probe_force_rms_change_ev_per_angstrom)
        ax.bar(names, [self.probe_force_rms_change_ev_per_angstrom[n] for n in names])
        ax.set_ylabel("RMS force change vs base (eV/Å)")
        ax.set_title(f"{self.model}: forgetting {self.forgetting_force_rms_ev_per_angstrom:.3g} eV/Å")
        return ax


def _as_knowledge(model: Any, datasets, settings) -> Knowledge:
    return model if isinstance(model, Knowledge) else knowledge(model, datasets, settings)


def forgetting(tuned: Any, base: Any, datasets: Mapping[str, DFTDataset] | None = None,
               settings: ForgettingSettings = ForgettingSettings()) -> ForgettingResult:
    """How far ``tuned`` moved from ``base`` on what it was not tuned on. Either may be a calculator or its
    :class:`Knowledge` (computed once for a base shared by several fine-tunes, with the same datasets and
    settings)."""
    before, after = _as_knowledge(base, datasets, settings), _as_knowledge(tuned, datasets, settings)
    common = [name for name in after.probe_forces_ev_per_angstrom if name in before.probe_forces_ev_per_angstrom]
    changes = {name: np.asarray(after.probe_forces_ev_per_angstrom[name])
               - np.asarray(before.probe_forces_ev_per_angstrom[name]) for name in common}
    energy_change, zero_change = {}, {}
    for name in common:
        (bi, br), (ai, ar) = before.probe_energies_ev[name], after.probe_energies_ev[name]
        energy_change[name] = ((ar - ai) - (br - bi)) / len(changes[name]) * 1000.0
        zero_change[name] = (ai - bi) / len(changes[name]) * 1000.0
    all_changes = np.concatenate([c.ravel() for c in changes.values()]) if changes else np.array([np.nan])
    both = [el for el in after.delta_mev_per_atom if el in before.delta_mev_per_atom]
    increase = [after.delta_mev_per_atom[el] - before.delta_mev_per_atom[el] for el in both]
    return ForgettingResult(
        model=after.model, base_model=before.model,
        forgetting_force_rms_ev_per_angstrom=float(np.sqrt(np.mean(all_changes ** 2))),
        probe_force_rms_change_ev_per_angstrom={k: float(np.sqrt(np.mean(c ** 2))) for k, c in changes.items()},
        probe_energy_change_mev_per_atom=energy_change, probe_energy_zero_change_mev_per_atom=zero_change,
        delta_before_mev_per_atom=before.delta_mev_per_atom, delta_after_mev_per_atom=after.delta_mev_per_atom,
        mean_delta_increase_mev_per_atom=float(np.mean(increase)) if increase else None,
        dft_before=before.dft_errors, dft_after=after.dft_errors, skipped={**before.skipped, **after.skipped},
        provenance={"base": before.provenance, "tuned": after.provenance})
