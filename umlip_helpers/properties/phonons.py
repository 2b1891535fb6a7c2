"""Harmonic phonons with phonopy (finite displacements): band structure along the seekpath path, DOS,
thermal properties, imaginary-mode detection and frequencies at named q-points.

The path and its labels come from seekpath (Hinuma et al., Comput. Mater. Sci. 128, 140 (2017)), with the
q-points converted into the basis of phonopy's primitive cell; for FCC built by ``ase.build.bulk``,
X = (½, 0, ½) and L = (½, ½, ½) in that basis."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from ase import Atoms, units

from ..io import provenance
from ..models import check_elements
from ..results import Result
from ._common import settings_keywords

if TYPE_CHECKING:
    from ase.calculators.calculator import Calculator

#: frequencies below minus this (THz) count as imaginary; finite-displacement noise near Γ stays well inside it
IMAGINARY_TOLERANCE_THZ = 0.1
_KJ_PER_MOL_IN_EV = units.kJ / units.mol


@dataclasses.dataclass(frozen=True)
class PhononResult(Result):
    """Frequencies in THz (imaginary ones as negative numbers); thermal properties per atom."""

    supercell_matrix: np.ndarray
    displacement_angstrom: float
    n_displacements: int
    #: largest |Σ_j Φ_ij| of the force constants as computed, before symmetrisation (acoustic sum rule check)
    asr_violation_ev_per_angstrom2: float
    symmetrized: bool
    gamma_frequencies_thz: np.ndarray
    has_imaginary_modes: bool
    min_frequency_thz: float
    #: label -> frequencies at that q-point (e.g. "X", "L"; "GAMMA" for Γ)
    qpoint_frequencies_thz: dict
    #: label -> q-point in the primitive reciprocal basis
    qpoints_reduced: dict
    #: [start, end] label of each band segment (seekpath's path)
    band_segments: list
    band_path_connections: list
    band_distances: list
    band_frequencies_thz: list
    dos_frequencies_thz: np.ndarray
    dos_states_per_thz: np.ndarray
    mesh: tuple
    temperatures_k: np.ndarray
    free_energy_ev_per_atom: np.ndarray
    entropy_kb_per_atom: np.ndarray
    heat_capacity_kb_per_atom: np.ndarray
    provenance: dict

    summary_fields = ("has_imaginary_modes", "min_frequency_thz", "asr_violation_ev_per_angstrom2")

    def plot(self, ax=None):
        """Band structure with the DOS beside it (``ax``: one axes for the bands, or a pair)."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(1, 2, figsize=(8, 3.8), sharey=True, gridspec_kw={"width_ratios": [3, 1]},
                                 layout="constrained")
        band_ax, dos_ax = (ax[0], ax[1]) if isinstance(ax, (list, tuple, np.ndarray)) else (ax, None)
        ticks, tick_labels = [], []
        for (d, f), (start, end) in zip(zip(self.band_distances, self.band_frequencies_thz), self.band_segments):
            band_ax.plot(d, f, color="C0", lw=1)
            ticks += [d[0], d[-1]]
            tick_labels += [_pretty(start), _pretty(end)]
        merged: dict[float, str] = {}
        for tick, label in zip(ticks, tick_labels):
            key = round(float(tick), 8)
            merged[key] = f"{merged[key]}|{label}" if key in merged and merged[key] != label else label
        band_ax.set_xticks(list(merged), list(merged.values()))
        for tick in merged:
            band_ax.axvline(tick, color="0.7", lw=0.6)
        band_ax.axhline(0, color="0.4", lw=0.6)
        band_ax.set_xlim(min(merged), max(merged))
        band_ax.set_ylabel("frequency (THz)")
        if dos_ax is not None:
            dos_ax.plot(self.dos_states_per_thz, self.dos_frequencies_thz, color="C1")
            dos_ax.set_xlabel("DOS (states/THz)")
        return band_ax


def _pretty(label: str) -> str:
    return "Γ" if label.upper() == "GAMMA" else label.replace("_", "")


def _seekpath_segments(primitive) -> tuple[list[tuple[str, str]], dict[str, np.ndarray]]:
    """seekpath's band path and its labelled q-points, expressed in the basis of phonopy's primitive cell."""
    import seekpath

    path = seekpath.get_path(primitive.totuple(), with_time_reversal=True)
    # reduced q in seekpath's basis -> in phonopy's: q_ph = A_ph · A_sp⁻¹ · q_sp (lattice vectors as rows)
    transform = np.asarray(primitive.cell) @ np.linalg.inv(np.asarray(path["primitive_lattice"]))
    if not np.allclose(transform, np.round(transform), atol=1e-5):
        raise ValueError("seekpath standardised the primitive cell into a rotated setting; give the crystal in a "
                         "standard orientation (e.g. from ase.build.bulk or spglib.standardize_cell)")
    named = {label: transform @ np.asarray(q, dtype=float) for label, q in path["point_coords"].items()}
    return [tuple(pair) for pair in path["path"]], named


def _to_phonopy(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=atoms.cell.array,
                        scaled_positions=atoms.get_scaled_positions())


def _to_ase(cell) -> Atoms:
    return Atoms(symbols=cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)


@dataclasses.dataclass(frozen=True)
class PhononSettings:
    """``supercell`` repeats the crystal (an int for n×n×n, or three ints); ``displacement`` in Å;
    ``primitive_matrix`` as phonopy takes it ("auto", "P" for the cell as given, "F", ... or a 3×3 matrix); ``mesh``
    the q-point mesh of the DOS and thermal properties; ``band_points`` per path segment; temperatures in K."""

    supercell: int | Sequence[int] = 3
    displacement: float = 0.01
    primitive_matrix: str | Sequence[Sequence[float]] = "auto"
    symmetrize: bool = True
    mesh: int | Sequence[int] = 20
    band_points: int = 51
    t_min: float = 0.0
    t_max: float = 1000.0
    t_step: float = 10.0
    progress: bool = True


def compute(atoms: Atoms, calc: "Calculator", settings: PhononSettings = PhononSettings()) -> PhononResult:
    """Phonons of a relaxed crystal (:class:`PhononSettings`). Forces of the undisplaced supercell are subtracted, so
    small residual forces of an imperfectly relaxed input do not leak into the force constants."""
    from phonopy import Phonopy
    from tqdm.auto import tqdm

    supercell, displacement, mesh = settings.supercell, settings.displacement, settings.mesh
    primitive_matrix, symmetrize, band_points = settings.primitive_matrix, settings.symmetrize, settings.band_points
    check_elements(atoms, calc, where=f"phonons of {atoms.get_chemical_formula()}")
    repeat = np.array([supercell] * 3 if np.isscalar(supercell) else list(supercell), dtype=int)
    mesh3 = tuple(int(m) for m in ([mesh] * 3 if np.isscalar(mesh) else mesh))
    phonon = Phonopy(_to_phonopy(atoms), supercell_matrix=np.diag(repeat), primitive_matrix=primitive_matrix)
    phonon.generate_displacements(distance=displacement)

    perfect = _to_ase(phonon.supercell)
    perfect.calc = calc
    residual_forces = perfect.get_forces()
    forces = []
    for cell in tqdm(phonon.supercells_with_displacements, desc="phonon displacements", disable=not settings.progress,
                     leave=False):
        displaced = _to_ase(cell)
        displaced.calc = calc
        forces.append(displaced.get_forces() - residual_forces)
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    asr = float(np.abs(phonon.force_constants.sum(axis=1)).max())
    if symmetrize:
        phonon.symmetrize_force_constants(show_drift=False)

    segments, named_q = _seekpath_segments(phonon.primitive)
    connections = [a[1] == b[0] for a, b in zip(segments[:-1], segments[1:])] + [False]
    phonon.run_band_structure(
        [np.linspace(named_q[a], named_q[b], band_points) for a, b in segments], path_connections=connections)
    bands = phonon.band_structure
    named_q.setdefault("GAMMA", np.zeros(3))
    names = list(named_q)
    at_q = phonon.run_qpoints([named_q[n] for n in names]).frequencies
    gamma = at_q[names.index("GAMMA")]

    phonon.run_mesh(list(mesh3), is_gamma_center=True)
    mesh_frequencies = phonon.mesh.frequencies
    phonon.run_total_dos()
    phonon.run_thermal_properties(t_min=settings.t_min, t_max=settings.t_max, t_step=settings.t_step,
                                  exclude_gamma_acoustic=True)
    thermal = phonon.thermal_properties
    atoms_per_primitive = len(phonon.primitive)
    lowest = float(min(mesh_frequencies.min(), min(f.min() for f in bands.frequencies), at_q.min()))
    return PhononResult(
        supercell_matrix=np.diag(repeat),
        displacement_angstrom=float(displacement),
        n_displacements=len(forces),
        asr_violation_ev_per_angstrom2=asr,
        symmetrized=symmetrize,
        gamma_frequencies_thz=gamma,
        has_imaginary_modes=bool(lowest < -IMAGINARY_TOLERANCE_THZ),
        min_frequency_thz=lowest,
        qpoint_frequencies_thz={n: f for n, f in zip(names, at_q)},
        qpoints_reduced=named_q,
        band_segments=[list(pair) for pair in segments],
        band_path_connections=connections,
        band_distances=list(bands.distances),
        band_frequencies_thz=list(bands.frequencies),
        dos_frequencies_thz=np.asarray(phonon.total_dos.frequency_points),
        dos_states_per_thz=np.asarray(phonon.total_dos.dos),
        mesh=mesh3,
        temperatures_k=np.asarray(thermal.temperatures),
        free_energy_ev_per_atom=np.asarray(thermal.free_energy) * _KJ_PER_MOL_IN_EV / atoms_per_primitive,
        entropy_kb_per_atom=np.asarray(thermal.entropy) * units.J / units.mol / units.kB / atoms_per_primitive,
        heat_capacity_kb_per_atom=np.asarray(thermal.heat_capacity) * units.J / units.mol / units.kB
        / atoms_per_primitive,
        provenance=provenance(calc, supercell=repeat, displacement=displacement, primitive_matrix=primitive_matrix,
                              symmetrize=symmetrize, mesh=mesh3, band_points=band_points),
    )


@settings_keywords(PhononSettings)
def phonons(atoms: Atoms, calc: "Calculator", **settings: Any) -> PhononResult:
    """:func:`compute` with the fields of :class:`PhononSettings` as keywords: ``phonons(atoms, calc, supercell=2)``."""
    return compute(atoms, calc, PhononSettings(**settings))


def cli_phonons(args) -> dict[str, Any]:
    """``umlip phonons --model M --structure Ni|FILE [--plot bands.png]``: relax the cell, then phonopy."""
    from ..models import load_calculator
    from ._common import structure_from_argument
    from .relax import relax

    calc = load_calculator(args.model, device=args.device, threads=args.threads)
    relaxed = relax(structure_from_argument(args.structure), calc, fmax=0.005).atoms
    result = phonons(relaxed, calc, supercell=args.supercell, mesh=args.mesh)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        result.plot().figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    return {"type": "PhononResult", **result.to_dict()}
