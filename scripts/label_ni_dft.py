"""Label a GPAW PBE data set of FCC Ni, resumably: data/ni/gpaw_pbe/frames/<name>.extxyz, one file per frame.

The structures are generated deterministically (seeded) for the properties the book reports (EOS, elastic
constants, stacking faults and the Σ3 twin, phonons at X and L, the vacancy, the (111) surface) and rattled cells
for training. Each frame is written atomically as soon as it is labelled; a re-run labels only missing frames.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/label_ni_dft.py   # all (resumes)
    .venv/bin/python scripts/label_ni_dft.py --list            # the plan, what is done, estimated cost
    .venv/bin/python scripts/label_ni_dft.py --only eos_dv+0pct   # one frame (repeat --only for more)

See data/ni/gpaw_pbe/PROVENANCE.md for the settings and their convergence test.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc111

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "data" / "ni" / "gpaw_pbe"
SEED = 20240533

#: experimental lattice parameter the EOS is centred on (room temperature; data/references/ni_literature.csv)
A_EXPERIMENT = 3.52
#: PBE lattice parameter with these settings: Birch-Murnaghan fit of the free energy of the seven shipped eos_*
#: frames (zero stress, as stress is the free energy's derivative; the fit of the energy extrapolated to zero smearing
#: gives 3.52848 Å). tests/test_ni_dft_data.py refits it. Every other structure is built at it.
A0_PBE = 3.53100
#: initial magnetic moment per Ni atom (μB), the SCF's starting guess
INITIAL_MAGMOM = 0.6


@dataclasses.dataclass(frozen=True)
class NiDFTSettings:
    """GPAW settings of every frame (chosen by the convergence test in PROVENANCE.md)."""

    ecut_ev: float = 500.0
    kpts_density_per_inv_angstrom: float = 5.0
    smearing_ev: float = 0.1
    xc: str = "PBE"
    setups: str = "paw (GPAW default: Ni.PBE, 16 valence electrons)"
    convergence: tuple = (("energy", 1e-6), ("density", 1e-5), ("forces", 5e-4))


SETTINGS = NiDFTSettings()


def parent(settings: NiDFTSettings = SETTINGS, txt: str | None = None):
    """The GPAW PBE factory (umlip_helpers.parents.GPAWParent): spin-polarised plane waves, Fermi-Dirac."""
    from umlip_helpers.parents import GPAWParent, gpaw_parent

    gpaw_parent()  # checks GPAW is installed and defaults OMP/OpenBLAS to one thread
    return GPAWParent(settings.kpts_density_per_inv_angstrom, settings.ecut_ev, True, settings.smearing_ev, txt,
                      dict(settings.convergence))


# ------------------------------------------------------------------------------------------------ structures


def _magnetic(atoms: Atoms) -> Atoms:
    atoms.set_initial_magnetic_moments([INITIAL_MAGMOM] * len(atoms))
    return atoms


def eos_frames() -> dict:
    """Primitive 1-atom cells at volumes V_exp (1 + x), x = -6 %..+6 % in steps of 2 %."""
    frames = {}
    for x in np.linspace(-0.06, 0.06, 7):
        a = A_EXPERIMENT * (1 + x) ** (1 / 3)
        frames[f"eos_dv{100 * x:+.0f}pct"] = (bulk("Ni", "fcc", a=a), {
            "kind": "eos", "how": f"ase.build.bulk('Ni', 'fcc', a={a:.6f}): volume {1 + x:.2f} x V(a={A_EXPERIMENT})"})
    return frames


def elastic_frames() -> dict:
    """Primitive cell at A0_PBE under Voigt strains xx, yz, xy of ±0.5 %, ±1 % (properties.elastic.strain_cell)."""
    from umlip_helpers.properties.elastic import strain_cell

    frames = {}
    for component, label in ((0, "xx"), (3, "yz"), (5, "xy")):
        for magnitude in (-0.01, -0.005, 0.005, 0.01):
            atoms = strain_cell(bulk("Ni", "fcc", a=A0_PBE), component, magnitude)
            frames[f"elastic_{label}{100 * magnitude:+.1f}pct"] = (atoms, {
                "kind": "elastic", "how": f"properties.elastic.strain_cell(bulk a=A0_PBE, Voigt {component}, "
                                          f"{magnitude}) (engineering shear for yz, xy)"})
    return frames


def _column(n_layers: int) -> Atoms:
    return fcc111("Ni", size=(1, 1, n_layers), a=A0_PBE, periodic=True)


def stacking_fault_frames(n_layers: int, n_points: int) -> dict:
    """⟨111⟩ column (1x1 in plane, one atom a layer), its third vector tilted by u·b_p, rigid (no relaxation):
    the geometry of properties.stacking_faults.generalized_stacking_fault(relax_normal=False), u = 0..1."""
    from umlip_helpers.properties.stacking_faults import _stacking_vector

    column = _column(n_layers)
    partial = _stacking_vector(column)
    frames = {}
    for u in np.linspace(0.0, 1.0, n_points):
        faulted = column.copy()
        cell = faulted.cell.array.copy()
        cell[2] += u * partial
        faulted.set_cell(cell, scale_atoms=False)
        frames[f"gsf{n_layers}_u{u:.3f}"] = (faulted, {
            "kind": "stacking_fault", "u": float(u), "n_layers": n_layers, "how": (
                f"fcc111(size=(1,1,{n_layers}), a=A0_PBE, periodic=True); cell[2] += u * b_p, b_p = "
                "stacking_faults._stacking_vector (a/sqrt6 along <112>); rigid, atoms not moved")})
    return frames


def twin_frame(n_layers: int = 12) -> dict:
    """Σ3 coherent twin column ABCABC|BACBAC (two twin planes 6 layers apart in the periodic cell), rigid, and the
    perfect column of the same cell as its reference."""
    from umlip_helpers.properties.stacking_faults import _stacking_vector

    if n_layers % 6:
        raise ValueError(f"a twin column needs a multiple of 6 layers, got {n_layers}")
    column = _column(n_layers)
    partial = _stacking_vector(column)
    half = n_layers // 2
    sites = [k % 3 for k in range(half)] + [(half - 2 - k) % 3 for k in range(half)]  # 012012 102102 ...
    positions = column.positions.copy()
    order = np.argsort(positions[:, 2])
    base = positions[order[0], :2]
    for layer, index in enumerate(order):
        positions[index, :2] = base + sites[layer] * partial[:2]
    twin = column.copy()
    twin.positions = positions
    twin.wrap()
    stacking = "".join("ABC"[s] for s in sites)
    return {f"twin{n_layers}_sigma3": (twin, {"kind": "twin", "n_layers": n_layers, "stacking": stacking, "how": (
        f"fcc111(size=(1,1,{n_layers}), a=A0_PBE, periodic=True) restacked {stacking}; reference: "
        f"column{n_layers}_perfect")}),
            f"column{n_layers}_perfect": (column, {"kind": "twin", "n_layers": n_layers, "how": (
                f"fcc111(size=(1,1,{n_layers}), a=A0_PBE, periodic=True): the twin's reference, same cell and "
                "k-mesh")})}


def phonon_frames() -> dict:
    """phonopy's displacement (0.01 Å, one by symmetry) of the 2x2x2 conventional supercell (32 atoms: X and L
    are commensurate), and the perfect supercell: the cells properties.phonons.phonons(cubic cell, supercell=2)
    evaluates."""
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = bulk("Ni", "fcc", a=A0_PBE, cubic=True)
    phonon = Phonopy(PhonopyAtoms(symbols=unit.get_chemical_symbols(), cell=unit.cell.array,
                                  scaled_positions=unit.get_scaled_positions()),
                     supercell_matrix=np.diag([2, 2, 2]), primitive_matrix="auto")
    phonon.generate_displacements(distance=0.01)

    def to_ase(cell) -> Atoms:
        return Atoms(cell.symbols, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)

    frames = {"sc222_perfect": (to_ase(phonon.supercell), {
        "kind": "phonon", "how": "phonopy 2x2x2 supercell of bulk(a=A0_PBE, cubic=True), undisplaced; also the "
                                 "vacancy's perfect reference"})}
    for k, cell in enumerate(phonon.supercells_with_displacements):
        frames[f"phonon_sc222_disp{k}"] = (to_ase(cell), {
            "kind": "phonon", "displacement": phonon.displacements[k], "how": (
                "phonopy Phonopy(cubic cell, supercell_matrix=diag(2,2,2), primitive_matrix='auto')."
                f"generate_displacements(distance=0.01), displacement {k}")})
    return frames


def vacancy_frame() -> dict:
    """One atom removed from the 32-atom 2x2x2 conventional supercell, unrelaxed (reference: sc222_perfect)."""
    perfect = bulk("Ni", "fcc", a=A0_PBE, cubic=True).repeat(2)
    del perfect[0]
    return {"vacancy_sc222_unrelaxed": (perfect, {
        "kind": "vacancy", "how": "bulk(a=A0_PBE, cubic=True).repeat(2), atom 0 removed, not relaxed"})}


def slab_frame() -> dict:
    """(111) slab as properties.surfaces.surface_energies builds it: 1x1, 6 layers, 10 Å vacuum each side."""
    slab = fcc111("Ni", size=(1, 1, 6), a=A0_PBE, vacuum=10.0, periodic=True)
    return {"slab111_6l_unrelaxed": (slab, {
        "kind": "surface", "how": "fcc111(size=(1,1,6), a=A0_PBE, vacuum=10, periodic=True), not relaxed"})}


def einstein_sigma_angstrom(temperature_k: float) -> float:
    """Per-component rms thermal displacement of a classical Einstein oscillator, sqrt(kT / k_onsite), with the
    on-site force constant of Ni from ASE's EMT at A0_PBE (a 32-atom cell, one atom moved 0.01 Å)."""
    from ase.calculators.emt import EMT

    cell = bulk("Ni", "fcc", a=A0_PBE, cubic=True).repeat(2)
    cell.calc = EMT()
    cell.positions[0, 0] += 0.01
    k_onsite = -cell.get_forces()[0, 0] / 0.01  # eV/Å^2
    return math.sqrt(units.kB * temperature_k / k_onsite)


#: (cell name, how many per temperature): the 4-atom conventional FCC cell, and 2-atom ideal HCP (c/a = sqrt(8/3),
#: a = A0_PBE / sqrt2: FCC's nearest-neighbour distance) so that training sees another stacking of the same planes
RATTLED_CELLS = {"conv4": 3, "hcp2": 1}
RATTLE_TEMPERATURES_K = (300, 900, 1500)
#: rms of each component of the random symmetric cell strain of a rattled frame
RATTLE_STRAIN_RMS = 0.01


def _rattle_cell(name: str) -> Atoms:
    if name == "conv4":
        return bulk("Ni", "fcc", a=A0_PBE, cubic=True)
    if name == "hcp2":
        return bulk("Ni", "hcp", a=A0_PBE / math.sqrt(2), c=A0_PBE / math.sqrt(2) * math.sqrt(8 / 3))
    raise ValueError(f"unknown rattle cell {name!r}")


def rattled_frames() -> dict:
    """Cells with Gaussian displacements of the Einstein rms at 300, 900, 1500 K and a random symmetric strain of
    rms RATTLE_STRAIN_RMS, from one seeded generator (numpy default_rng(SEED)) in a fixed order."""
    rng = np.random.default_rng(SEED)
    frames = {}
    for temperature in RATTLE_TEMPERATURES_K:
        sigma = einstein_sigma_angstrom(temperature)
        for cell_name, count in RATTLED_CELLS.items():
            for k in range(count):
                atoms = _rattle_cell(cell_name)
                strain = rng.normal(0.0, RATTLE_STRAIN_RMS, (3, 3))
                strain = (strain + strain.T) / 2
                atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain).T, scale_atoms=True)
                atoms.positions += rng.normal(0.0, sigma, atoms.positions.shape)
                frames[f"rattled_{cell_name}_{temperature}K_{k}"] = (atoms, {
                    "kind": "rattled", "temperature_k": temperature, "sigma_angstrom": round(sigma, 5), "how": (
                        f"{cell_name} at A0_PBE, symmetric strain rms {RATTLE_STRAIN_RMS}, Gaussian displacements "
                        f"sigma {sigma:.4f} Å (Einstein, EMT on-site constant), rng seed {SEED}")})
    return frames


def hcp_frame() -> dict:
    """Ideal HCP at FCC's nearest-neighbour distance, unrattled: E_hcp - E_fcc, the ANNNI estimate of the ISF."""
    return {"hcp2_ideal": (_rattle_cell("hcp2"), {
        "kind": "hcp", "how": "bulk('Ni', 'hcp', a=A0_PBE/sqrt2, c=a*sqrt(8/3)), not relaxed"})}


def plan() -> dict:
    """Every frame: name -> (magnetic Atoms, info), cheapest kinds first so a partial run ships whole kinds."""
    frames = {**eos_frames(), **elastic_frames(), **hcp_frame(), **stacking_fault_frames(9, 7),
              **slab_frame(), **rattled_frames(), **twin_frame(12), **phonon_frames(), **vacancy_frame()}
    return {name: (_magnetic(atoms), info) for name, (atoms, info) in frames.items()}


# ---------------------------------------------------------------------------------------------------- split


SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def split(names: list[str], kinds: dict[str, str]) -> dict[str, list[str]]:
    """Rattled frames: a seeded split by name (SPLIT_FRACTIONS, at least one frame each for validation and test);
    every property frame is 'property_test' (never trained on)."""
    rattled = [name for name in names if kinds[name] == "rattled"]
    order = [rattled[i] for i in np.random.default_rng(SEED + 1).permutation(len(rattled))]
    n_val = max(1, round(SPLIT_FRACTIONS["validation"] * len(order)))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * len(order)))
    result = {"train": order[n_val + n_test:], "validation": order[:n_val], "test": order[n_val:n_val + n_test],
              "property_test": [name for name in names if kinds[name] != "rattled"]}
    return {key: sorted(value) for key, value in result.items()}


# ----------------------------------------------------------------------------------------------------- cost


#: seconds per (irreducible k-point x atom x Å^3) before any frame is labelled: the sheared primitive cell of the
#: convergence test (181 s, 621 k-points, 10.9 Å^3, 2 shared cores under load)
DEFAULT_SECONDS_PER_UNIT = 0.027


def cost_units(atoms: Atoms, settings: NiDFTSettings = SETTINGS) -> tuple[int, float]:
    """(irreducible k-points, n_k x n_atoms x volume): plane waves scale with the volume, bands with the atoms."""
    import spglib
    from ase.calculators.calculator import kpts2sizeandoffsets

    mesh, _ = kpts2sizeandoffsets(density=settings.kpts_density_per_inv_angstrom, gamma=True, atoms=atoms)
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    mapping, _ = spglib.get_ir_reciprocal_mesh(mesh, cell, is_shift=[0, 0, 0], is_time_reversal=True)
    n_k = len(np.unique(mapping))
    return n_k, n_k * len(atoms) * atoms.get_volume()


def measured_rates(frames_dir: Path) -> dict[str, float]:
    """Median seconds per cost unit of each kind (and 'all') over the frames labelled so far."""
    from umlip_helpers.labelling import read_frame

    rates: dict[str, list[float]] = {}
    for path in sorted(frames_dir.glob("*.extxyz")):
        atoms = read_frame(path)
        rate = float(atoms.info["label_seconds"]) / cost_units(atoms)[1]
        rates.setdefault(atoms.info["kind"], []).append(rate)
        rates.setdefault("all", []).append(rate)
    return {kind: float(np.median(values)) for kind, values in rates.items()}


def print_plan(frames: dict, frames_dir: Path) -> None:
    rates = measured_rates(frames_dir)
    total = left = 0.0
    print(f"{'frame':34s} {'kind':15s} {'atoms':>5s} {'k_ibz':>6s} {'est_s':>8s}  status")
    for name, (atoms, info) in frames.items():
        n_k, units_ = cost_units(atoms)
        path = frames_dir / f"{name}.extxyz"
        if path.exists():
            from umlip_helpers.labelling import read_frame

            seconds, status = float(read_frame(path).info["label_seconds"]), "done (measured)"
        else:
            seconds = units_ * rates.get(info["kind"], rates.get("all", DEFAULT_SECONDS_PER_UNIT))
            status = "todo (estimated" + (" from this kind)" if info["kind"] in rates else ")")
            left += seconds
        total += seconds
        print(f"{name:34s} {info['kind']:15s} {len(atoms):5d} {n_k:6d} {seconds:8.0f}  {status}")
    print(f"{len(frames)} frames; total {total / 3600:.2f} h, left {left / 3600:.2f} h (one core at the measured "
          "speed)")


# ----------------------------------------------------------------------------------------------- provenance


def write_provenance(frames: dict) -> Path:
    from importlib.metadata import version

    from umlip_helpers.io import atomic_write_json

    kinds = {name: info["kind"] for name, (_, info) in frames.items()}
    record = {
        "description": "FCC Ni, GPAW PBE single points; written by scripts/label_ni_dft.py",
        "command": "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 19 .venv/bin/python scripts/label_ni_dft.py",
        "convergence_test": "convergence/conv.py -> convergence/results.jsonl (summary in PROVENANCE.md)",
        "versions": {name: version(name) for name in ("gpaw", "gpaw-data", "ase", "phonopy", "numpy", "spglib")},
        "settings": {**dataclasses.asdict(SETTINGS), "convergence": dict(SETTINGS.convergence),
                     "mode": "plane waves", "spinpol": True, "occupations": "Fermi-Dirac",
                     "kpts": "{'density': kpts_density_per_inv_angstrom, 'gamma': True} (ASE's rule)",
                     "initial_magmom_bohr": INITIAL_MAGMOM, "factory": "umlip_helpers.parents.GPAWParent"},
        "a_experiment_angstrom": A_EXPERIMENT, "a0_pbe_angstrom": A0_PBE, "seed": SEED,
        "rattle": {"temperatures_k": RATTLE_TEMPERATURES_K, "cells_per_temperature": RATTLED_CELLS,
                   "strain_rms": RATTLE_STRAIN_RMS,
                   "sigma_angstrom": {t: einstein_sigma_angstrom(t) for t in RATTLE_TEMPERATURES_K}},
        "fields": {"energy": "eV, extrapolated to zero smearing (ASE get_potential_energy)",
                   "free_energy": "eV, Mermin free energy: forces and stress are its derivatives",
                   "forces": "eV/Å", "stress": "Voigt xx yy zz yz xz xy, eV/Å^3, ASE sign (negative = compressed)",
                   "magmoms": "μB per atom (GPAW's partitioning)", "magmom": "μB, total of the cell"},
        "split": split(list(frames), kinds),
        "frames": {name: {"kind": info["kind"], "n_atoms": len(atoms),
                          **{k: v for k, v in info.items() if k != "kind"}}
                   for name, (atoms, info) in frames.items()},
    }
    return atomic_write_json(OUT / "provenance.json", record)


def point_group_note(atoms: Atoms) -> dict:
    """What the frame's info records when GPAWParent labels it without the point group (see point_group_keeps_grid)."""
    from umlip_helpers.parents import point_group_keeps_grid

    if point_group_keeps_grid(atoms, SETTINGS.ecut_ev):
        return {}
    return {"gpaw_symmetry": "point group off, time reversal kept: the point group would force a 50x larger grid"}


def main(argv: list[str] | None = None) -> int:
    from umlip_helpers.labelling import label_frames

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the plan, what is done and the estimated cost")
    parser.add_argument("--only", action="append", metavar="NAME", help="label only this frame (repeatable)")
    parser.add_argument("--out", type=Path, default=OUT / "frames", help="where the frame files go")
    args = parser.parse_args(argv)
    frames = plan()
    if args.list:
        print_plan(frames, args.out)
        return 0
    unknown = sorted(set(args.only or ()) - set(frames))
    if unknown:
        parser.error(f"unknown frame(s) {unknown}; see --list")
    write_provenance(frames)
    chosen = {name: frames[name][0] for name in (args.only or frames)}
    info = {name: frames[name][1] | point_group_note(frames[name][0]) for name in chosen}
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    label_frames(chosen, parent(), args.out, info=info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
