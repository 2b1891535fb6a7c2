"""The DFT data layer on real VASP output: reading, validation errors that name file/frame/field, splits."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from ase.io import write
from ase.units import GPa

from umlip_helpers.data import (DFTDataset, block_split, check_frames, fit_energy_shifts, random_split,
                                read_dataset, shift_for)
from umlip_helpers.errors import DataValidationError


def test_reads_real_ymno3_frames(ymno3_frames):
    assert len(ymno3_frames) == 5
    frame = ymno3_frames[0]
    assert frame.n_atoms == 120 and ymno3_frames.elements == ["Mn", "O", "Y"]
    assert frame.energy_ev == pytest.approx(-1061.62068657)
    assert frame.forces_ev_per_angstrom.shape == (120, 3)
    # stress stays in eV/Å^3: the file's first component, unchanged
    assert frame.stress_ev_per_angstrom3[0] == pytest.approx(0.000845382195955209)
    assert frame.source.endswith("ymno3_vasp_200.xyz") and frame.index == 0


def test_max_frames_keeps_file_order(ymno3_path):
    first = read_dataset(ymno3_path, max_frames=3)
    again = read_dataset(ymno3_path, max_frames=3)
    assert [f.index for f in first] == [0, 1, 2]
    assert first.sha256() == again.sha256()


def test_gzipped_extxyz_reads_the_same(tmp_path, ymno3_frames):
    plain = tmp_path / "frames.xyz"
    ymno3_frames.write_extxyz(plain)
    zipped = tmp_path / "frames.xyz.gz"
    with open(plain, "rb") as src, gzip.open(zipped, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert read_dataset(zipped, require=("energy", "forces", "stress")).sha256() == ymno3_frames.sha256()


def test_reads_vasp_outcar_and_vasprun(ase_vasp_testdata):
    outcar = read_dataset(ase_vasp_testdata / "OUTCAR_example_1")
    assert outcar.elements == ["Ni"] and outcar[0].forces_ev_per_angstrom.shape == (outcar[0].n_atoms, 3)
    vasprun = read_dataset(ase_vasp_testdata / "vasprun_pstress.xml", require=("energy", "forces", "stress"))
    assert vasprun[0].energy_ev == pytest.approx(-20.2472, abs=1e-3)
    # ASE converts VASP's kBar (positive = compressive) into eV/Å^3 with ASE's sign
    assert np.abs(vasprun[0].stress_ev_per_angstrom3).max() < 1.0


def test_truncated_vasprun_names_file_and_frame(tmp_path, ase_vasp_testdata):
    text = (ase_vasp_testdata / "vasprun_pstress.xml").read_text()
    broken = tmp_path / "vasprun.xml"
    broken.write_text(text[: len(text) // 2])
    with pytest.raises(DataValidationError) as info:
        read_dataset(broken)
    message = str(info.value)
    assert "vasprun.xml" in message and "frame 0" in message and "truncated" in message


def test_truncated_outcar_is_reported(tmp_path, ase_vasp_testdata):
    text = (ase_vasp_testdata / "OUTCAR_example_1").read_text()
    broken = tmp_path / "OUTCAR"
    broken.write_text(text[: len(text) // 2])
    with pytest.raises(DataValidationError, match="OUTCAR: frame 0: file: .*truncated"):
        read_dataset(broken)


def _write_frames(path, frames):
    write(path, frames, format="extxyz")
    return path


def test_extxyz_without_forces(tmp_path, ymno3_frames):
    atoms = ymno3_frames[0].atoms.copy()
    atoms.info["energy"] = -1.0
    path = _write_frames(tmp_path / "no_forces.xyz", [atoms])
    with pytest.raises(DataValidationError) as info:
        read_dataset(path)
    assert info.value.problems[0][1:3] == (0, "forces")
    assert "no_forces.xyz: frame 0: forces: missing" in str(info.value)
    assert len(read_dataset(path, require=("energy",))) == 1


def test_nan_positions(tmp_path, ymno3_frames):
    frames = ymno3_frames.to_atoms_list()[:2]
    frames[1].positions[7, 2] = np.nan
    path = _write_frames(tmp_path / "nan.xyz", frames)
    with pytest.raises(DataValidationError,
                       match=r"nan.xyz: frame 1: positions: non-finite coordinates for atom\(s\) \[7\]"):
        read_dataset(path)


def test_overlapping_atoms(tmp_path, ymno3_frames):
    frame = ymno3_frames.to_atoms_list()[0]
    frame.positions[3] = frame.positions[2] + [0.2, 0.0, 0.0]
    path = _write_frames(tmp_path / "overlap.xyz", [frame])
    with pytest.raises(DataValidationError, match="frame 0: positions: atoms 2 and 3 are 0.200 Å apart"):
        read_dataset(path)


def test_stress_in_kbar_is_caught_and_converted(tmp_path, ymno3_frames):
    frame = ymno3_frames.to_atoms_list()[0]
    stress_ev_a3 = ymno3_frames[0].stress_ev_per_angstrom3
    kbar = stress_ev_a3 / (0.1 * GPa)
    frame.calc.results["stress"] = kbar  # a file written with kBar in the stress field
    path = _write_frames(tmp_path / "kbar.xyz", [frame])
    with pytest.raises(DataValidationError, match="stress.*look like kBar or GPa"):
        read_dataset(path, require=("energy", "forces", "stress"))
    converted = read_dataset(path, require=("energy", "forces", "stress"), stress_unit="kbar")
    np.testing.assert_allclose(converted[0].stress_ev_per_angstrom3, stress_ev_a3, rtol=1e-6)


def test_every_problem_is_listed(tmp_path, ymno3_frames):
    frames = ymno3_frames.to_atoms_list()[:3]
    frames[0].positions[0] = np.nan
    frames[2].calc.results.pop("forces")
    path = _write_frames(tmp_path / "two_bad.xyz", frames)
    with pytest.raises(DataValidationError) as info:
        read_dataset(path)
    assert [(p[1], p[2]) for p in info.value.problems] == [(0, "positions"), (2, "forces")]


def test_missing_file_and_empty_dataset(tmp_path):
    with pytest.raises(DataValidationError, match="does not exist"):
        read_dataset(tmp_path / "nope.xyz")
    with pytest.raises(DataValidationError, match="is empty"):
        check_frames(DFTDataset([], name="empty"))


def test_splits(ymno3_frames):
    train, val, test = random_split(ymno3_frames, (0.6, 0.2, 0.2), seed=1)
    indices = sorted(f.index for part in (train, val, test) for f in part)
    assert indices == list(range(5)) and (len(train), len(val), len(test)) == (3, 1, 1)
    assert [f.index for f in random_split(ymno3_frames, (0.6, 0.2, 0.2), seed=1)[0]] == [f.index for f in train]
    early, late = block_split(ymno3_frames, (0.6, 0.4))
    assert [f.index for f in early] == [0, 1, 2] and [f.index for f in late] == [3, 4]


def test_energy_shifts_recover_a_known_per_element_offset(ymno3_frames, tmp_path, ase_vasp_testdata):
    # mix two compositions so each element's shift is determined
    outcar = read_dataset(ase_vasp_testdata / "OUTCAR_example_1")
    mixed = DFTDataset(list(ymno3_frames) + list(outcar))
    true = {"Y": 0.3, "Mn": -1.2, "O": 0.05, "Ni": 2.0}
    predicted = [f.energy_ev - shift_for(f.atoms, true) for f in mixed]
    counts, _ = mixed.composition_matrix()
    assert np.linalg.matrix_rank(counts) == 2  # YMnO3 frames alone fix only their sum
    shifts = fit_energy_shifts(mixed, predicted)
    for frame, e_model in zip(mixed, predicted):
        assert e_model + shift_for(frame.atoms, shifts) == pytest.approx(frame.energy_ev, abs=1e-6)
    assert shifts["Ni"] == pytest.approx(2.0, abs=1e-6)
