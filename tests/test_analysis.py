"""Structure analysis against exact answers (perfect crystals, known motions) and against ASE's own RDF."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.geometry.rdf import get_rdf
from ase.io import read

from umlip_helpers.analysis import (TOBERMORITE14_CIF, TOBERMORITE_FILE, TOBERMORITE_LITERATURE, angle_distribution,
                                    compare_peaks, first_shell_distances, literature_peaks, mean_squared_displacement,
                                    neighbor_pairs, partial_rdf, read_crystal_structure, read_tobermorite)
from umlip_helpers.errors import DataValidationError
from umlip_helpers.io import sha256_file

A_CU = 3.61


def test_fcc_rdf_first_peak_and_coordination():
    result = partial_rdf(bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(3), r_max=5.0, n_bins=250)
    dr = 5.0 / 250
    assert abs(result.first_peak_angstrom["Cu-Cu"] - A_CU / np.sqrt(2)) <= dr
    assert A_CU / np.sqrt(2) < result.first_minimum_angstrom["Cu-Cu"] < A_CU
    assert result.coordination["Cu-Cu"] == pytest.approx(12.0)


def test_partial_rdfs_match_ase_on_rattled_frames():
    base = bulk("Cu", "fcc", a=3.75, cubic=True).repeat(3)
    base.symbols[::4] = "Au"
    frames = []
    for seed in range(3):
        frame = base.copy()
        frame.rattle(0.08, seed=seed)
        frames.append(frame)
    result = partial_rdf(frames, ["Cu-Au", "Au-Cu", "Cu-Cu", "Au-Au"], r_max=5.0, n_bins=100)
    for pair, g in result.g.items():
        expected, r = get_rdf(frames, 5.0, 100, elements=pair.split("-"))
        assert np.allclose(r, result.r_angstrom)
        assert np.allclose(g, expected, rtol=1e-10, atol=1e-10), pair
    # coordination numbers of a pair and its reverse are consistent with the composition
    assert result.coordination["Cu-Au"] * 81 == pytest.approx(result.coordination["Au-Cu"] * 27)


def test_fcc_nearest_neighbour_angles():
    result = angle_distribution(bulk("Cu", "fcc", a=A_CU, cubic=True).repeat(3), ["Cu-Cu-Cu"],
                                cutoffs={"Cu-Cu": 3.0}, n_bins=180)
    density = result.density["Cu-Cu-Cu"]
    # each atom has 12 neighbours, i.e. 66 angles: 24 at 60, 12 at 90, 24 at 120 and 6 at 180 degrees
    assert result.n_angles["Cu-Cu-Cu"] == 108 * 66
    width = result.angle_deg[1] - result.angle_deg[0]
    fractions = {angle: density[np.abs(result.angle_deg - angle) < 2].sum() * width for angle in (60, 90, 120, 180)}
    assert fractions == pytest.approx({60: 24 / 66, 90: 12 / 66, 120: 24 / 66, 180: 6 / 66})


def test_water_angle_matches_ase_and_cutoffs_come_from_the_rdf():
    water = molecule("H2O")
    water.center(vacuum=4.0)
    water.pbc = True
    result = angle_distribution(water, ["H-O-H"])
    assert result.n_angles["H-O-H"] == 1
    assert abs(result.mean_angle_deg["H-O-H"] - water.get_angle(1, 0, 2)) < 1e-6
    assert water.get_distance(0, 1) < result.cutoffs_angstrom["O-H"] < water.get_distance(1, 2)


def test_msd_of_a_random_walk_gives_its_diffusion_coefficient():
    rng = np.random.default_rng(0)
    n_atoms, n_frames, sigma, dt_fs = 500, 60, 0.1, 10.0
    atoms = Atoms("Ar" * n_atoms, positions=rng.uniform(0, 8.0, (n_atoms, 3)), cell=[8.0] * 3, pbc=True)
    steps = rng.normal(0.0, sigma, (n_frames - 1, n_atoms, 3))
    frames = []
    positions = atoms.positions.copy()
    for k in range(n_frames):
        frame = atoms.copy()
        frame.positions = positions
        frame.wrap()  # the analysis must unwrap the jumps across the cell
        frames.append(frame)
        if k < n_frames - 1:
            positions = positions + steps[k]
    result = mean_squared_displacement(frames, frame_interval_fs=dt_fs)
    # MSD(lag) = 3 sigma^2 lag, so D = 3 sigma^2 / (6 dt) = sigma^2 / (2 dt)
    expected_cm2_s = sigma**2 / (2 * dt_fs / 1000) * 1e-4
    assert result.diffusion_cm2_per_s["Ar"] == pytest.approx(expected_cm2_s, rel=0.1)
    assert result.msd_angstrom2["Ar"][1] == pytest.approx(3 * sigma**2, rel=0.05)


def test_read_tobermorite_reads_every_column_explicitly(tmp_path):
    atoms = read_tobermorite(keep_unknown_columns=True)
    assert atoms.get_chemical_formula() == "H96Ca32O176Si48"
    assert np.array_equal(atoms.arrays["source_id"], np.arange(1, 353))
    assert atoms.arrays["unknown_a"].shape == (352, 3)
    reference = read(TOBERMORITE_FILE)  # ASE keeps the positions and drops the other 7 columns
    assert np.array_equal(atoms.positions, reference.positions)
    assert np.allclose(atoms.cell.array, reference.cell.array)

    lines = TOBERMORITE_FILE.read_text().splitlines()
    lines[10] = " ".join(lines[10].split()[:-2])
    broken = tmp_path / "broken.xyz"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"row 11: expected a symbol and 11 numbers, got 10"):
        read_tobermorite(broken)


def test_literature_peaks_compare_with_a_computed_rdf():
    peaks = literature_peaks()
    assert peaks and all(p["doi"].startswith("10.") and p["value_angstrom"] > 0 for p in peaks)
    water = molecule("H2O")
    water.center(vacuum=4.0)
    water.pbc = True
    rdf = partial_rdf(water, ["H-O"], r_max=3.0, n_bins=600, smoothing_angstrom=0.01)
    # the table is written O-H; the RDF holds H-O: the comparison matches either order
    o_h = [p for p in peaks if p["pair"] == "O-H"]
    rows = compare_peaks(rdf, o_h)
    assert len(rows) == len(o_h) > 0 and all(row["pair"] == "H-O" for row in rows)
    bond = water.get_distance(0, 1)
    for row, ref in zip(rows, o_h):
        assert abs(row["model_peak_angstrom"] - bond) <= 3.0 / 600
        assert row["difference_angstrom"] == pytest.approx(row["model_peak_angstrom"] - ref["value_angstrom"])
        assert row["doi"] == ref["doi"]
    assert compare_peaks(rdf, [{"pair": "Ca-O", "value_angstrom": 2.4, "phase": "", "method": "", "doi": "x"}]) == []


def test_literature_peaks_name_the_bad_line(tmp_path):
    lines = TOBERMORITE_LITERATURE.read_text().splitlines()
    bad = tmp_path / "refs.csv"
    bad.write_text("\n".join(lines + ["first_peak_Si-O,1.6,nm,x,y,,z", "first_peak_SiO,1.6,angstrom,x,y,10.1/x,z"])
                   + "\n")
    with pytest.raises(DataValidationError) as error:
        literature_peaks(bad)
    problems = {(where, message.split()[0]) for _, _, where, message in error.value.problems}
    n = len(lines)
    assert problems == {(f"line {n + 1}", "unit"), (f"line {n + 1}", "no"), (f"line {n + 2}", "pair")}


def test_first_shell_distances_of_fcc_and_bad_input():
    a = 3.6
    crystal = bulk("Cu", "fcc", a=a, cubic=True).repeat(2)
    shell = first_shell_distances(crystal, "Cu-Cu", 3.0)
    assert shell.mean_angstrom == pytest.approx(a / np.sqrt(2)) and shell.max_angstrom == pytest.approx(a / np.sqrt(2))
    assert np.all(shell.coordination == 12) and shell.n_distances == 12 * len(crystal) // 2  # each pair once
    assert shell.next_distance_angstrom == pytest.approx(a)
    with pytest.raises(ValueError, match="no O in Cu32"):
        first_shell_distances(crystal, "Cu-O", 3.0)
    with pytest.raises(ValueError, match="no distance below the cutoff 2.0"):
        first_shell_distances(crystal, "Cu-Cu", 2.0)


# the CIF as copied from COD entry 9013974 (data/README.md); a changed file must be re-checked against COD
COD_9013974_SHA256 = "11c89c7adebcc258650ad9eadc91c00e90f32d7eb17f283ed17016ede207653a"


def test_crystal_first_shell_rows_are_recomputed_from_the_shipped_cif(tmp_path):
    assert sha256_file(TOBERMORITE14_CIF) == COD_9013974_SHA256
    crystal = read_crystal_structure(TOBERMORITE14_CIF)
    assert crystal.get_chemical_formula() == "Ca8O36Si12"
    assert crystal.info["dropped_sites"] == {"Ca2": 0.5}
    assert len(read_crystal_structure(TOBERMORITE14_CIF, min_occupancy=0.5)) == len(crystal) + 4
    rows = {p["pair"]: p for p in literature_peaks()}
    coordination = {}
    for pair in ("Si-O", "Ca-O"):
        row = rows[pair]
        assert row["doi"] == "10.1111/j.1551-2916.2005.00116.x"
        method = re.fullmatch(r"mean first-shell distance computed from the published coordinates \(COD 9013974\) "
                              r"by umlip_helpers\.analysis\.first_shell_distances, cutoff ([0-9.]+) Å", row["method"])
        assert method, row["method"]
        shell = first_shell_distances(crystal, pair, float(method.group(1)))
        assert round(shell.mean_angstrom, 3) == row["value_angstrom"]
        centre = pair.split("-")[0]
        assert (f"{shell.n_distances} {pair} distances from {shell.min_angstrom:.3f} to {shell.max_angstrom:.3f} A"
                in row["source"])
        # the cutoff sits in a gap of the distances, so any cutoff in that gap gives the same value
        assert shell.max_angstrom + 0.05 < shell.cutoff_angstrom < shell.next_distance_angstrom - 0.4
        labels = crystal.arrays["site_label"][shell.centre_indices]
        coordination[centre] = {label: set(shell.coordination[labels == label].tolist()) for label in set(labels)}
    assert coordination["Si"] == {"Sil": {4}, "Si2": {4}, "Si3": {4}}  # labels as the entry spells them
    assert coordination["Ca"] == {"Cal": {7}, "Ca3": {6}}
    assert "7 O per Ca1 and 6 per Ca3" in rows["Ca-O"]["source"]

    mixed = tmp_path / "mixed.cif"
    mixed.write_text(TOBERMORITE14_CIF.read_text().replace(
        "Ca2 0.87900 0.99400 0.00190 0.50000 0.07000", "Ca2 0.87900 0.99400 0.00190 0.50000 0.07000\n"
                                                       "Na2 0.87900 0.99400 0.00190 0.50000 0.07000"))
    with pytest.raises(DataValidationError, match=r"site Ca2: shared by \['Ca', 'Na'\]"):
        read_crystal_structure(mixed)


def test_h_h_row_is_the_g2_water_and_applies_to_the_simulated_cell():
    import ase.data.g2_1

    row = next(p for p in literature_peaks() if p["pair"] == "H-H")
    assert row["doi"] == "10.1063/1.473182"
    assert "MP2(full)/6-31G(d) optimized geometries" in ase.data.g2_1.__doc__ and "MP2(full)/6-31G(d)" in row["method"]
    water = molecule("H2O")
    assert round(first_shell_distances(water, "H-H", 2.0).mean_angstrom, 3) == row["value_angstrom"]
    # the reference applies only if the cell holds H2O molecules: O with two H, whose H-H is the first H-H shell
    cell = read_tobermorite()
    o_h = first_shell_distances(cell, "O-H", 1.2)
    assert o_h.next_distance_angstrom > 1.5 and np.bincount(o_h.coordination).tolist() == [120, 16, 40]
    i, j, _ = neighbor_pairs(cell, 1.2, "ijd", full_list=True)
    symbols = np.asarray(cell.get_chemical_symbols())
    hydroxyl = (symbols[i] == "H") & (symbols[j] == "O")
    oxygen_of = dict(zip(i[hydroxyl].tolist(), j[hydroxyl].tolist()))
    h_h = first_shell_distances(cell, "H-H", 1.8)
    assert h_h.n_distances == 40 and h_h.next_distance_angstrom > 1.9
    i, j, d = neighbor_pairs(cell, 1.8, "ijd")
    intramolecular = (symbols[i] == "H") & (symbols[j] == "H")
    assert all(oxygen_of[a] == oxygen_of[b] for a, b in zip(i[intramolecular], j[intramolecular]))
