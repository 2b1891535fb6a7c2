"""Structure analysis against exact answers (perfect crystals, known motions) and against ASE's own RDF."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.geometry.rdf import get_rdf
from ase.io import read

from umlip_helpers.analysis import (TOBERMORITE_FILE, TOBERMORITE_LITERATURE, angle_distribution, compare_peaks,
                                    literature_peaks, mean_squared_displacement, partial_rdf, read_tobermorite)
from umlip_helpers.errors import DataValidationError

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
