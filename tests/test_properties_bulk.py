"""Bulk property workflows (relax, EOS and the Delta gauge, elastic constants, phonons) with real calculators:
EMT for Cu and Ni, and one small SevenNet-0 smoke test per property."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from ase.utils.deltacodesdft import delta as ase_delta

from umlip_helpers.models import load_calculator
from umlip_helpers.properties.elastic import elastic_constants
from umlip_helpers.properties.eos import (EOSFitError, delta_benchmark, delta_gauge, eos, fit_birch_murnaghan,
                                         load_delta_reference)
from umlip_helpers.properties.phonons import phonons
from umlip_helpers.properties.relax import RelaxationNotConverged, relax


@pytest.fixture(scope="module")
def cu_relaxed():
    """Primitive FCC Cu relaxed with EMT (cell included)."""
    return relax(bulk("Cu", "fcc", a=3.62), EMT(), fmax=1e-4, optimizer="BFGS", progress=False)


@pytest.fixture(scope="module")
def cu_eos():
    return eos(bulk("Cu", "fcc", a=3.60), EMT(), progress=False)


# ---------------------------------------------------------------------------------------------------- relax

def test_relax_cell_and_positions_converges(cu_relaxed):
    rattled = bulk("Cu", "fcc", a=3.70, cubic=True)
    rattled.rattle(0.05, seed=1)
    result = relax(rattled, EMT(), fmax=1e-3, optimizer="BFGS", progress=False)
    assert result.converged and 0 < result.steps < 100
    assert result.max_force_ev_per_angstrom < 1e-3
    assert result.max_stress_gpa < 0.05
    assert result.energy_ev < result.energy_initial_ev
    assert result.energies_ev[0] == result.energy_initial_ev and len(result.energies_ev) == result.steps + 1
    # the relaxed conventional cell is the relaxed primitive cell's lattice, cubic again
    a_primitive = cu_relaxed.atoms.cell.lengths()[0] * np.sqrt(2)
    np.testing.assert_allclose(result.atoms.cell.lengths(), a_primitive, atol=2e-3)
    assert result.atoms.calc is None and rattled.cell.lengths()[0] == pytest.approx(3.70)  # input untouched
    assert json.dumps(result.to_dict())


def test_relax_not_converged_raises_or_is_marked():
    start = bulk("Cu", "fcc", a=3.9, cubic=True)
    start.rattle(0.1, seed=2)
    with pytest.raises(RelaxationNotConverged, match="did not converge in 3 steps"):
        relax(start, EMT(), fmax=1e-4, steps=3, progress=False)
    with pytest.warns(RuntimeWarning, match="NOT CONVERGED"):
        marked = relax(start, EMT(), fmax=1e-4, steps=3, allow_unconverged=True, progress=False)
    assert not marked.converged and marked.steps == 3 and marked.max_force_ev_per_angstrom > 1e-4


def test_relax_positions_only_and_fixed_volume():
    start = bulk("Cu", "fcc", a=3.70, cubic=True)
    start.rattle(0.05, seed=3)
    positions = relax(start, EMT(), fmax=1e-3, relax_cell=False, optimizer="FIRE", progress=False)
    assert positions.converged and positions.cell_mode == "positions"
    np.testing.assert_allclose(positions.atoms.cell.array, start.cell.array)
    start.set_cell(start.cell.array @ np.diag([1.03, 0.98, 1.0]), scale_atoms=True)
    fixed = relax(start, EMT(), fmax=1e-3, fixed_volume=True, optimizer="BFGS", progress=False)
    assert fixed.converged and fixed.volume_angstrom3 == pytest.approx(start.get_volume(), rel=1e-6)
    lengths = fixed.atoms.cell.lengths()
    assert np.ptp(lengths) < 2e-3  # the shear of the cell relaxed away at constant volume
    masked = relax(start, EMT(), fmax=1e-3, cell_mask=(0, 0, 1, 0, 0, 0), optimizer="BFGS", progress=False)
    np.testing.assert_allclose(masked.atoms.cell.lengths()[:2], start.cell.lengths()[:2], rtol=1e-9)
    assert abs(masked.atoms.cell.lengths()[2] - start.cell.lengths()[2]) > 0.01
    check = masked.atoms.copy()
    check.calc = EMT()
    stress = check.get_stress(voigt=True) / units.GPa
    assert abs(stress[2]) < 0.1 and abs(stress[0]) > 1.0  # zz relaxed, xx held by the mask


# ---------------------------------------------------------------------------------------------------- EOS

def test_eos_emt_cu_agrees_with_relaxation(cu_eos, cu_relaxed):
    a_relaxed = cu_relaxed.atoms.cell.lengths()[0] * np.sqrt(2)
    assert cu_eos.spacegroup.startswith("Fm-3m")
    assert cu_eos.a0_angstrom == pytest.approx(a_relaxed, abs=2e-3)
    assert cu_eos.v0_angstrom3_per_atom == pytest.approx(cu_relaxed.volume_angstrom3, rel=2e-3)
    assert 100 < cu_eos.b0_gpa < 180 and 3 < cu_eos.b1 < 6
    assert cu_eos.v0_inside_range and cu_eos.fit_rms_mev_per_atom < 0.1
    assert cu_eos.energy(cu_eos.volumes_angstrom3_per_atom).min() >= cu_eos.e0_ev_per_atom - 1e-12
    ax = cu_eos.plot()
    assert len(ax.lines) == 2 and len(ax.lines[1].get_xdata()) == 7
    plt.close("all")


def test_delta_gauge_self_zero_and_matches_ase(cu_eos):
    ni = eos(bulk("Ni", "fcc", a=3.52), EMT(), progress=False)
    assert delta_gauge(cu_eos, cu_eos) == 0.0
    ours = delta_gauge(cu_eos, ni)
    reference = 1000 * ase_delta(cu_eos.v0_angstrom3_per_atom, cu_eos.b0_gpa * units.GPa, cu_eos.b1,
                                 ni.v0_angstrom3_per_atom, ni.b0_gpa * units.GPa, ni.b1)
    assert ours > 10 and ours == pytest.approx(reference, rel=1e-3)
    assert delta_gauge(ni, cu_eos) == pytest.approx(ours, rel=1e-12)
    wien2k = load_delta_reference()["Cu"]
    assert delta_gauge(cu_eos, wien2k) == pytest.approx(
        1000 * ase_delta(cu_eos.v0_angstrom3_per_atom, cu_eos.b0_gpa * units.GPa, cu_eos.b1,
                         wien2k[0], wien2k[1] * units.GPa, wien2k[2]), rel=1e-3)


def test_eos_fit_without_minimum_raises(cu_eos):
    volumes = cu_eos.volumes_angstrom3_per_atom
    with pytest.raises(EOSFitError, match="Cu test"):
        fit_birch_murnaghan(volumes, -0.05 * volumes, where="Cu test")  # E(V) falling throughout: no minimum
    e0, v0, b0, b1 = fit_birch_murnaghan(volumes, cu_eos.energies_ev_per_atom)
    assert v0 == pytest.approx(cu_eos.v0_angstrom3_per_atom) and b0 / units.GPa == pytest.approx(cu_eos.b0_gpa)


def test_delta_benchmark_skips_uncovered_elements():
    calc = load_calculator("emt", device="cpu")
    result = delta_benchmark(calc, ["Cu", "Ni", "Fe"], progress=False)
    assert set(result.delta_mev_per_atom) == {"Cu", "Ni"} and "Fe" in result.skipped and not result.failed
    assert result.n_elements == 2
    assert all(0 < d < 200 for d in result.delta_mev_per_atom.values())
    assert result.mean_delta_mev_per_atom == pytest.approx(np.mean(list(result.delta_mev_per_atom.values())))
    # the EMT a0 of Cu lies below the PBE one (EMT is fitted to experiment; PBE overestimates a0)
    assert result.v0_angstrom3_per_atom["Cu"] < load_delta_reference()["Cu"][0]
    ax = result.plot()
    filled = [patch for patch in ax.patches if patch.get_facecolor()[3] > 0]
    assert len(filled) == 3  # Cu and Ni coloured, Fe grey; the rest of the table is outlined only
    plt.close("all")


def test_cli_eos_writes_json(tmp_path, capsys):
    from umlip_helpers.cli import main

    out = tmp_path / "eos.json"
    assert main(["eos", "--model", "emt", "--structure", "Cu", "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["type"] == "EOSResult" and data["provenance"]["model"]["name"] == "emt"
    assert 3.55 < data["a0_angstrom"] < 3.62 and data["b0_gpa"] > 100
    # a structure file gives the same EOS as the element symbol; bad input is a clean error naming the file
    write(tmp_path / "cu.cif", bulk("Cu", "fcc", a=3.61))
    assert main(["eos", "--model", "emt", "--structure", str(tmp_path / "cu.cif"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["a0_angstrom"] == pytest.approx(data["a0_angstrom"], abs=2e-3)
    write(tmp_path / "cu2.xyz", Atoms("Cu2", positions=[(0, 0, 0), (0, 0, 2.3)]))
    assert main(["eos", "--model", "emt", "--structure", str(tmp_path / "cu2.xyz")]) == 2
    assert "cu2.xyz: frame 0: pbc" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- elastic

def test_elastic_cubic_symmetry_and_stability(cu_relaxed, cu_eos):
    result = elastic_constants(cu_relaxed.atoms, EMT(), progress=False)
    c = result.cij_gpa
    assert result.crystal_system == "cubic"
    assert c[0, 0] == pytest.approx(c[1, 1], rel=1e-3) and c[0, 0] == pytest.approx(c[2, 2], rel=1e-3)
    assert c[0, 1] == pytest.approx(c[0, 2], rel=1e-3) and c[0, 1] == pytest.approx(c[1, 2], rel=1e-3)
    assert c[3, 3] == pytest.approx(c[4, 4], rel=1e-3) and c[3, 3] == pytest.approx(c[5, 5], rel=1e-3)
    off_block = np.abs(np.concatenate([c[:3, 3:].ravel(), c[3:, :3].ravel(),
                                       c[3:, 3:][~np.eye(3, dtype=bool)]]))
    assert off_block.max() < 0.5
    assert result.born_stable and result.c11_gpa > result.c12_gpa > 0 and result.c44_gpa > 0
    # bulk modulus from Cij agrees with the EOS fit; Voigt >= Hill >= Reuss for the shear modulus
    assert (result.c11_gpa + 2 * result.c12_gpa) / 3 == pytest.approx(cu_eos.b0_gpa, rel=0.03)
    assert result.bulk_voigt_gpa == pytest.approx(result.bulk_reuss_gpa, rel=1e-3)  # equal for cubic crystals
    assert result.shear_voigt_gpa >= result.shear_hill_gpa >= result.shear_reuss_gpa
    assert result.fit_max_residual_gpa < 0.5
    assert len(result.plot().texts) == 36
    plt.close("all")


def test_elastic_internal_relaxation_softens_hcp():
    """In hcp the atoms are not inversion centres: letting them relax under strain can only lower Cij."""
    hcp = relax(bulk("Cu", "hcp", a=2.55, c=4.16), EMT(), fmax=1e-4, optimizer="BFGS", progress=False).atoms
    clamped = elastic_constants(hcp, EMT(), progress=False)
    relaxed = elastic_constants(hcp, EMT(), relax_ions=True, fmax=1e-4, progress=False)
    assert clamped.crystal_system == relaxed.crystal_system == "hexagonal"
    softening = np.linalg.eigvalsh(0.5 * ((clamped.cij_gpa - relaxed.cij_gpa) + (clamped.cij_gpa - relaxed.cij_gpa).T))
    assert softening.min() > -0.5 and softening.max() > 1.0
    assert relaxed.born_stable


# ---------------------------------------------------------------------------------------------------- phonons

def test_phonons_fcc_cu(cu_relaxed):
    result = phonons(cu_relaxed.atoms, EMT(), supercell=3, mesh=12, progress=False)
    assert result.asr_violation_ev_per_angstrom2 < 1e-6
    assert np.abs(result.gamma_frequencies_thz).max() < 1e-3
    assert not result.has_imaginary_modes and result.min_frequency_thz > -0.01
    np.testing.assert_allclose(result.qpoints_reduced["X"], [0.5, 0, 0.5], atol=1e-12)
    np.testing.assert_allclose(result.qpoints_reduced["L"], [0.5, 0.5, 0.5], atol=1e-12)
    ta, ta2, la = result.qpoint_frequencies_thz["X"]
    assert ta == pytest.approx(ta2, rel=1e-6) and 3 < ta < la < 12
    assert result.heat_capacity_kb_per_atom[-1] == pytest.approx(3.0, abs=0.03)  # Dulong-Petit at 1000 K
    assert np.all(np.diff(result.entropy_kb_per_atom) >= 0)
    assert json.dumps(result.to_dict())
    band_ax = result.plot()
    assert [t.get_text() for t in band_ax.get_xticklabels()] == ["Γ", "X", "U|K", "Γ", "L", "W", "X"]
    plt.close("all")


def test_phonons_detect_imaginary_modes():
    """BCC Cu is dynamically unstable (it shears towards FCC): its phonons must show imaginary modes."""
    bcc = relax(bulk("Cu", "bcc", a=2.87), EMT(), fmax=1e-4, optimizer="BFGS", progress=False).atoms
    result = phonons(bcc, EMT(), supercell=3, mesh=8, progress=False)
    assert result.has_imaginary_modes and result.min_frequency_thz < -1.0


# ---------------------------------------------------------------------------------------------------- SevenNet-0

@pytest.fixture(scope="module")
def sevennet():
    return load_calculator("sevennet-0", device="cpu", threads=1)


@pytest.fixture(scope="module")
def ni_sevennet(sevennet):
    return relax(bulk("Ni", "fcc", a=3.52), sevennet, fmax=1e-3, progress=False)


@pytest.mark.slow
def test_sevennet_relax_and_eos_ni(sevennet, ni_sevennet):
    v_pbe, b_pbe, _ = load_delta_reference()["Ni"]
    assert ni_sevennet.converged
    result = eos(ni_sevennet.atoms, sevennet, progress=False)
    assert result.v0_angstrom3_per_atom == pytest.approx(ni_sevennet.volume_angstrom3, rel=3e-3)
    assert result.v0_angstrom3_per_atom == pytest.approx(v_pbe, rel=0.03)  # PBE-trained: near the PBE volume
    assert result.b0_gpa == pytest.approx(b_pbe, rel=0.25)
    assert delta_gauge(result, (v_pbe, b_pbe, 4.0)) < 30


@pytest.mark.slow
def test_sevennet_elastic_ni(sevennet, ni_sevennet):
    result = elastic_constants(ni_sevennet.atoms, sevennet, strains=(-0.01, 0.01), progress=False)
    assert result.crystal_system == "cubic" and result.born_stable
    assert result.c11_gpa > result.c12_gpa > 0 and result.c44_gpa > 0


@pytest.mark.slow
def test_sevennet_phonons_ni(sevennet, ni_sevennet):
    result = phonons(ni_sevennet.atoms, sevennet, supercell=2, mesh=8, progress=False)
    assert np.abs(result.gamma_frequencies_thz).max() < 0.05
    ta, _, la = result.qpoint_frequencies_thz["X"]
    assert 3 < ta < la < 12
