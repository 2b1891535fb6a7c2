"""Reference values of FCC Ni derived from the GPAW PBE frames labelled here (data/ni/gpaw_pbe), written to
data/references/ni_gpaw_pbe.csv (the columns of the literature tables: quantity, value, unit, method, source).

    .venv/bin/python scripts/ni_dft_references.py            # derive from the frames present and write the CSV
    .venv/bin/python scripts/ni_dft_references.py --check    # exit 1 if the committed CSV differs from a rederivation

Only frames that exist are used; a value whose frames are not labelled yet is listed in the CSV's header comment as
missing, with the frames it needs. Each row's method states the definition, the cell and whether the structure is
rigid (unrelaxed). Definitions (E = ``energy``, GPAW's energy extrapolated to zero smearing; F = ``free_energy``):

- a0, B0: Birch-Murnaghan fit (properties.eos.fit_birch_murnaghan) of F of the seven eos_* primitive cells (F, as
  the stress is its derivative; PROVENANCE.md);
- C11, C12, C44: slopes of stress against strain (properties.elastic's definition, clamped ions) through the
  +-0.5 %, +-1 % elastic_* frames; the strain is read back from each frame's cell against the primitive cell at a0;
- E_hcp - E_fcc: ideal HCP at FCC's nearest-neighbour distance against E of the eos_* fit at V(a0_PBE);
- gamma(u) rigid: (E(u) - E(0)) / A of the 9-layer (111) column, A its in-plane area; u = 1 is the rigid ISF;
- sigma3 twin (rigid): (E_twin - E_perfect) / (2 A), two twin planes in the 12-layer column;
- (111) surface (unrelaxed): (E_slab - N e_bulk) / (2 A), e_bulk per atom of the 9-layer column (same k-mesh in plane);
- vacancy (unrelaxed): E(31) - 31/32 E(32) in the 2x2x2 conventional supercell;
- phonons at X and L: phonopy force constants of the 2x2x2 conventional supercell from the displaced frame's forces
  less the perfect frame's; X and L are commensurate with it, so no interpolation.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "data" / "ni" / "gpaw_pbe"
OUT_CSV = ROOT / "data" / "references" / "ni_gpaw_pbe.csv"
#: the "source" column of every row: the committed data directory and this script (tests rerun the derivation)
SOURCE = "this work: data/ni/gpaw_pbe (scripts/ni_dft_references.py)"
FIELDS = ("quantity", "value", "unit", "method", "source")
#: decimals each unit is written with (what the settings support: 1 meV/atom, 0.5 GPa, PROVENANCE.md)
DECIMALS = {"angstrom": 4, "GPa": 1, "meV/atom": 1, "mJ/m^2": 1, "J/m^2": 3, "eV": 3, "THz": 2}
EV_PER_A2_TO_MJ_PER_M2 = 1.602176634e-19 / 1e-20 * 1e3


def load_frames(frames_dir: Path = DATA_DIR / "frames") -> dict[str, Atoms]:
    """Every labelled frame, checked by umlip_helpers.labelling.read_frame, by name."""
    from umlip_helpers.labelling import read_frame

    return {path.stem: read_frame(path) for path in sorted(Path(frames_dir).glob("*.extxyz"))}


def _energy(atoms: Atoms) -> float:
    return float(atoms.calc.results["energy"])


def _area(atoms: Atoms) -> float:
    return float(np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))


class _Rows:
    """Collects the rows and, for each value that cannot be derived yet, the frames it lacks."""

    def __init__(self, frames: dict[str, Atoms], method_prefix: str):
        self.frames, self.prefix = frames, method_prefix
        self.rows: list[dict] = []
        self.missing: list[str] = []

    def need(self, what: str, names: list[str]) -> bool:
        absent = [n for n in names if n not in self.frames]
        if absent:
            self.missing.append(f"{what}: needs {', '.join(absent)}")
        return not absent

    def add(self, quantity: str, value: float, unit: str, definition: str) -> None:
        self.rows.append({"quantity": quantity, "value": round(float(value), DECIMALS[unit]), "unit": unit,
                          "method": self.prefix + definition, "source": SOURCE})


def _eos(r: _Rows, a0_pbe: float) -> None:
    from umlip_helpers.properties.eos import fit_birch_murnaghan

    names = [n for n in r.frames if r.frames[n].info.get("kind") == "eos"]
    if len(names) < 7:
        r.missing.append(f"a0, B0: needs the 7 eos_* frames, found {len(names)}")
        return
    volumes = [r.frames[n].get_volume() / len(r.frames[n]) for n in names]
    free = [r.frames[n].calc.results["free_energy"] / len(r.frames[n]) for n in names]
    _, v0, b0, b1 = fit_birch_murnaghan(volumes, free, where="GPAW PBE eos_* frames")
    a0 = (4 * v0) ** (1 / 3)
    span = f"V = {min(volumes):.2f}-{max(volumes):.2f} Å^3/atom"
    r.add("a0", a0, "angstrom", f"Birch-Murnaghan fit of the Mermin free energy of 7 primitive cells ({span}), "
          "static lattice (no zero-point or thermal expansion)")
    r.add("B0", b0 / units.GPa, "GPa", f"Birch-Murnaghan fit of the Mermin free energy of 7 primitive cells ({span}; "
          f"B' = {b1:.2f}), static lattice")
    if abs(a0 - a0_pbe) > 5e-4:
        raise RuntimeError(f"the eos frames give a0 = {a0:.5f} Å but the frames were built at {a0_pbe} Å")


def _strain(atoms: Atoms, reference: Atoms) -> np.ndarray:
    """Symmetric strain tensor ε with atoms.cell = reference.cell (1 + ε)^T."""
    deformation = np.linalg.solve(reference.cell.array, atoms.cell.array).T
    return 0.5 * (deformation + deformation.T) - np.eye(3)


def _elastic(r: _Rows, a0_pbe: float) -> None:
    reference = bulk("Ni", "fcc", a=a0_pbe)
    slopes: dict[str, list[float]] = {}
    for label, (i, j) in (("xx", (0, 0)), ("yz", (1, 2)), ("xy", (0, 1))):
        names = [n for n in r.frames if n.startswith(f"elastic_{label}")]
        if len(names) < 2:
            r.missing.append(f"C from elastic_{label}*: needs two or more of its 4 frames, found {len(names)}")
            continue
        strain = np.array([_strain(r.frames[n], reference)[i, j] * (1 if i == j else 2) for n in names])
        stress = np.array([r.frames[n].calc.results["stress"] / units.GPa for n in names])  # Voigt, GPa
        slopes[label] = list(np.polyfit(strain, stress, 1)[0])
    if "xx" in slopes:
        s = slopes["xx"]
        r.add("C11", s[0], "GPa", "slope of σ_xx against ε_xx through 4 strains (±0.5 %, ±1 %) of the primitive cell at "
              "a0, clamped ions (properties.elastic's definition)")
        r.add("C12", (s[1] + s[2]) / 2, "GPa", f"mean slope of σ_yy and σ_zz ({s[1]:.1f}, {s[2]:.1f}) against ε_xx, "
              "same 4 strains, clamped ions")
    shear = {label: slopes[label][3 if label == "yz" else 5] for label in ("yz", "xy") if label in slopes}
    if shear:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in shear.items())
        r.add("C44", np.mean(list(shear.values())), "GPa", f"mean slope of shear stress against engineering shear "
              f"strain ({parts} GPa), 4 strains each of the primitive cell at a0, clamped ions")


def _fcc_energy_per_atom(r: _Rows, a0_pbe: float) -> float | None:
    from umlip_helpers.properties.eos import birch_murnaghan_energy, fit_birch_murnaghan

    names = [n for n in r.frames if r.frames[n].info.get("kind") == "eos"]
    if len(names) < 7:
        return None
    volumes = [r.frames[n].get_volume() / len(r.frames[n]) for n in names]
    energies = [_energy(r.frames[n]) / len(r.frames[n]) for n in names]
    e0, v0, b0, b1 = fit_birch_murnaghan(volumes, energies, where="GPAW PBE eos_* frames (energy)")
    return float(birch_murnaghan_energy(a0_pbe ** 3 / 4, e0, v0, b0, b1))


def _hcp(r: _Rows, a0_pbe: float) -> None:
    if not r.need("E_hcp - E_fcc", ["hcp2_ideal"] + [f"eos_dv{x:+d}pct" for x in range(-6, 7, 2)]):
        return
    hcp = r.frames["hcp2_ideal"]
    e_fcc = _fcc_energy_per_atom(r, a0_pbe)
    check = ""
    if "gsf9_u0.000" in r.frames:  # the same FCC energy from another cell and k-mesh: the k-sampling spread
        column = r.frames["gsf9_u0.000"]
        check = (f" (against the 9-layer (111) column's E per atom instead: "
                 f"{1e3 * (_energy(hcp) / len(hcp) - _energy(column) / len(column)):.1f} meV/atom)")
    r.add("hcp_fcc_energy_difference", 1e3 * (_energy(hcp) / len(hcp) - e_fcc), "meV/atom",
          "ideal HCP (c/a = sqrt(8/3)) at FCC's nearest-neighbour distance at a0, 2-atom cell, against FCC at a0 "
          f"(Birch-Murnaghan fit of E of the 7 primitive cells){check}; unrelaxed c/a")


def _stacking_faults(r: _Rows) -> None:
    names = sorted(n for n in r.frames if n.startswith("gsf9_u"))
    if "gsf9_u0.000" not in r.frames:
        r.missing.append("rigid gamma(u): needs gsf9_u0.000")
        return
    zero = r.frames["gsf9_u0.000"]
    area = _area(zero)
    for name in names:
        u = float(name.removeprefix("gsf9_u"))
        if u == 0.0:
            continue
        gamma = (_energy(r.frames[name]) - _energy(zero)) / area * EV_PER_A2_TO_MJ_PER_M2
        where = ("the intrinsic stacking fault, rigid (no relaxation normal to the fault)" if u == 1.0 else
                 "the unstable stacking fault estimate, rigid" if u == 0.5 else "rigid")
        r.add(f"gsf_rigid_u{u:.3f}", gamma, "mJ/m^2", f"γ(u = {u:.3f}) = (E(u) - E(0)) / A of the 9-layer (111) "
              f"column (1x1 in plane, third cell vector tilted by u a/sqrt6 along <112>): {where}")
    planned = [f"gsf9_u{u:.3f}" for u in np.linspace(0, 1, 7)]
    absent = [n for n in planned if n not in r.frames]
    if absent:
        r.missing.append(f"rigid gamma(u) (u = 1 is the ISF): not yet labelled {', '.join(absent)}")


def _twin(r: _Rows) -> None:
    if not r.need("rigid Σ3 twin", ["twin12_sigma3", "column12_perfect"]):
        return
    twin, perfect = r.frames["twin12_sigma3"], r.frames["column12_perfect"]
    value = (_energy(twin) - _energy(perfect)) / (2 * _area(perfect)) * EV_PER_A2_TO_MJ_PER_M2
    r.add("sigma3_twin_energy_rigid", value, "mJ/m^2", "(E_twin - E_perfect) / 2A, 12-layer (111) column restacked "
          "ABCABCBACBAC (two coherent twin planes 6 layers apart) against the perfect column, rigid (bulk spacing)")


def _surface(r: _Rows) -> None:
    if not r.need("unrelaxed (111) surface energy", ["slab111_6l_unrelaxed", "gsf9_u0.000"]):
        return
    slab, column = r.frames["slab111_6l_unrelaxed"], r.frames["gsf9_u0.000"]
    e_bulk = _energy(column) / len(column)
    value = (_energy(slab) - len(slab) * e_bulk) / (2 * _area(slab)) * EV_PER_A2_TO_MJ_PER_M2 / 1e3
    r.add("surface_energy_111_unrelaxed", value, "J/m^2", "(E_slab - N e_bulk) / 2A, 6-layer (111) slab, 1x1, 10 Å "
          "vacuum each side, unrelaxed; e_bulk from the 9-layer column (same in-plane cell and k-mesh)")


def _vacancy(r: _Rows) -> None:
    if not r.need("unrelaxed vacancy formation energy", ["vacancy_sc222_unrelaxed", "sc222_perfect"]):
        return
    vac, perfect = r.frames["vacancy_sc222_unrelaxed"], r.frames["sc222_perfect"]
    value = _energy(vac) - len(vac) / len(perfect) * _energy(perfect)
    r.add("vacancy_formation_energy_unrelaxed", value, "eV", f"E({len(vac)}) - {len(vac)}/{len(perfect)} "
          f"E({len(perfect)}), 2x2x2 conventional supercell at a0, unrelaxed (positions and cell fixed)")


def _phonons(r: _Rows, a0_pbe: float) -> None:
    displaced = sorted(n for n in r.frames if n.startswith("phonon_sc222_disp"))
    if not r.need("phonons at X and L", ["sc222_perfect", "phonon_sc222_disp0"]):
        return
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    unit = bulk("Ni", "fcc", a=a0_pbe, cubic=True)
    phonon = Phonopy(PhonopyAtoms(symbols=unit.get_chemical_symbols(), cell=unit.cell.array,
                                  scaled_positions=unit.get_scaled_positions()),
                     supercell_matrix=np.diag([2, 2, 2]), primitive_matrix="auto")
    perfect = r.frames["sc222_perfect"]
    if not np.allclose(phonon.supercell.cell, perfect.cell.array, atol=1e-8):
        raise RuntimeError("sc222_perfect is not phonopy's 2x2x2 supercell of the cubic cell at a0")
    first_atoms, forces = [], []
    for name in displaced:
        frame = r.frames[name]
        shift = frame.positions - perfect.positions
        moved = int(np.argmax(np.linalg.norm(shift, axis=1)))
        first_atoms.append({"number": moved, "displacement": shift[moved]})
        forces.append(frame.calc.results["forces"] - perfect.calc.results["forces"])
    phonon.dataset = {"natom": len(perfect), "first_atoms": first_atoms}
    phonon.forces = np.array(forces)
    phonon.produce_force_constants()
    for label, k_cartesian in (("X", [0.0, 0.0, 1.0]), ("L", [0.5, 0.5, 0.5])):
        q = phonon.primitive.cell @ (np.asarray(k_cartesian) / a0_pbe)  # reduced coordinates of the primitive cell
        frequencies = np.sort(phonon.get_frequencies(q))
        for branch, value in (("TA", frequencies[0]), ("LA", frequencies[-1])):
            r.add(f"phonon_{label}_{branch}", value, "THz", f"harmonic frequency at {label}, phonopy force constants "
                  f"of the 2x2x2 conventional supercell (32 atoms, {len(displaced)} symmetry-distinct displacement of "
                  f"{np.linalg.norm(first_atoms[0]['displacement']):.2f} Å, forces less the perfect cell's) at a0; "
                  f"{label} commensurate, static lattice")


def derive(frames: dict[str, Atoms], provenance: dict) -> tuple[list[dict], list[str]]:
    """(rows, missing): every reference value the frames give, and what is not derivable yet with the frames it
    needs."""
    a0_pbe = float(provenance["a0_pbe_angstrom"])
    settings = provenance["settings"]
    prefix = (f"DFT-PBE, GPAW {provenance['versions']['gpaw']} ({settings['ecut_ev']:g} eV plane waves, k density "
              f"{settings['kpts_density_per_inv_angstrom']:g}/Å^-1, Fermi-Dirac {settings['smearing_ev']:g} eV, "
              "spin-polarised), this work: ")
    r = _Rows(frames, prefix)
    _eos(r, a0_pbe)
    _elastic(r, a0_pbe)
    _hcp(r, a0_pbe)
    _stacking_faults(r)
    _twin(r)
    _surface(r)
    _vacancy(r)
    _phonons(r, a0_pbe)
    return r.rows, r.missing


def render(rows: list[dict], missing: list[str]) -> str:
    """The CSV text: a header comment (what it is, what is missing), then the rows."""
    out = io.StringIO()
    out.write("# FCC Ni reference values computed here from the GPAW PBE frames in data/ni/gpaw_pbe, written by\n"
              "# scripts/ni_dft_references.py (do not edit by hand: rerun it; tests/test_literature_tables.py checks\n"
              "# this file equals a rederivation). Same columns as ni_literature.csv. Rigid/unrelaxed quantities have\n"
              "# their own names (..._rigid, ..._unrelaxed): compare them only with a model's rigid/unrelaxed value.\n")
    for line in missing:
        out.write(f"# missing (frames not labelled yet): {line}\n")
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "value": f"{row['value']:.{DECIMALS[row['unit']]}f}"})
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the written CSV instead of writing it")
    parser.add_argument("--out", type=Path, default=OUT_CSV)
    args = parser.parse_args(argv)
    provenance = json.loads((DATA_DIR / "provenance.json").read_text())
    rows, missing = derive(load_frames(), provenance)
    text = render(rows, missing)
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs from the frames present: rerun without --check'}")
        return 0 if same else 1
    from umlip_helpers.io import atomic_write_text

    atomic_write_text(args.out, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
