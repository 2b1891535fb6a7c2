"""Defect, surface, adsorption and alloy workflows: EMT (real, cheap) for the physics checks, SevenNet-0 smoke tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from umlip_helpers import properties as defects  # vacancy, stacking_faults, surfaces, adsorption, references
from umlip_helpers.properties import alloys
from umlip_helpers.properties.relax import relax


@pytest.fixture(scope="module")
def emt():
    return EMT()


@pytest.fixture(scope="module")
def ni_emt(emt):
    return relax(bulk("Ni", "fcc", a=3.52, cubic=True), emt, progress=False).atoms


def test_vacancy_positive_and_converging(ni_emt, emt):
    result = defects.vacancy_formation_energy(ni_emt, emt, sizes=(2, 3), progress=False)
    assert result.n_atoms == (32, 108)
    small, large = result.e_vac_by_size_ev
    assert 0.5 < large < 3.0
    assert abs(large - small) < 0.05  # converged with cell size to within 50 meV
    assert all(r <= u + 1e-9 for r, u in zip(result.e_vac_by_size_ev, result.e_vac_unrelaxed_by_size_ev))
    assert result.to_dict()["e_vac_ev"] == pytest.approx(large)


def test_vacancy_warns_on_strained_bulk(emt):
    squeezed = bulk("Ni", "fcc", a=3.40, cubic=True)
    with pytest.warns(RuntimeWarning, match="relax it first"):
        defects.vacancy_formation_energy(squeezed, emt, sizes=(2,), relax_positions=False, progress=False)


def test_stacking_fault_matches_hcp_fcc_difference(ni_emt, emt):
    """The ISF of a periodic column must equal 2 (E_hcp - E_fcc) per (111) area (first-order axial interaction
    model); EMT's Ni has hcp slightly below fcc, so its ISF is small and negative, far below the unstable SFE."""
    result = defects.generalized_stacking_fault(ni_emt, emt, n_layers=9, n_points=5, progress=False)
    a0 = result.a0_angstrom
    hcp = relax(bulk("Ni", "hcp", a=a0 / math.sqrt(2), c=a0 / math.sqrt(2) * math.sqrt(8 / 3)), emt,
                progress=False)
    fcc_energy = ni_emt.copy()
    fcc_energy.calc = emt
    delta = hcp.energy_per_atom_ev - fcc_energy.get_potential_energy() / len(fcc_energy)
    area = math.sqrt(3) / 2 * (a0 / math.sqrt(2)) ** 2
    annni = 2 * delta / area * defects.EV_PER_A2_TO_J_PER_M2 * 1e3
    assert result.isf_mj_m2 == pytest.approx(annni, abs=1.0)
    assert result.usf_mj_m2 > result.isf_mj_m2 + 100
    assert result.gamma_mj_m2[0] == 0.0
    assert np.all(result.gamma_mj_m2 <= result.gamma_unrelaxed_mj_m2 + 1e-6)  # relaxing lowers γ
    assert result.partial_burgers_angstrom == pytest.approx(a0 / math.sqrt(6), rel=1e-9)


def test_stacking_fault_positive_for_emt_silver(emt):
    ag = relax(bulk("Ag", "fcc", a=4.09, cubic=True), emt, progress=False).atoms
    result = defects.generalized_stacking_fault(ag, emt, n_layers=9, n_points=5, progress=False)
    assert 0 < result.isf_mj_m2 < result.usf_mj_m2


def test_stacking_fault_rejects_bad_input(emt):
    with pytest.raises(ValueError, match="not FCC"):
        defects.generalized_stacking_fault(bulk("Ni", "bcc", a=2.8), emt, progress=False)
    with pytest.raises(ValueError, match="multiple of 3"):
        defects.generalized_stacking_fault(bulk("Ni", "fcc", a=3.52), emt, n_layers=8, progress=False)


def test_surface_energies_positive_and_ordered(ni_emt, emt):
    result = defects.surface_energies(ni_emt, emt, progress=False)
    gamma = result.gamma_j_m2
    assert 0 < gamma["111"] < gamma["100"] < gamma["110"] < 4  # close-packed facet lowest
    for facet in result.facets:
        assert gamma[facet] <= result.gamma_unrelaxed_j_m2[facet] + 1e-9
        assert result.gamma_mev_per_a2[facet] == pytest.approx(gamma[facet] * 62.4150907, rel=1e-6)
    assert result.n_layers["110"] > result.n_layers["111"]


def test_adsorption_sites_ranked(ni_emt, emt):
    result = defects.adsorption_energies(ni_emt, emt, progress=False)
    for adsorbate in ("H", "O"):
        energies = result.e_ads_ev[adsorbate]
        assert set(energies) == {"ontop", "bridge", "fcc", "hcp"}
        assert result.favourable_site[adsorbate] == min(energies, key=energies.get)
        assert energies["fcc"] < energies["ontop"]  # three-fold hollows beat the top site
        assert all(0.5 < h < 2.5 for h in result.height_angstrom[adsorbate].values())
    assert result.molecule_bond_angstrom["H"] == pytest.approx(0.75, abs=0.1)


def test_solid_solution_end_members_and_vegard(emt):
    result = alloys.solid_solution_scan(emt, "Ni", "Cu", host_fractions=(0.0, 0.5, 1.0), n_configs=2, size=2,
                                        compare_bcc=True, progress=False)
    assert np.abs(result.mixing_energy_ev_per_atom[[0, -1]]).max() < 1e-6
    assert np.abs(result.vegard_deviation_angstrom[[0, -1]]).max() < 1e-6
    assert result.a0_angstrom[0] > result.a0_angstrom[1] > result.a0_angstrom[2]  # Cu is larger than Ni
    middle = result.vegard_deviation_angstrom[1]
    assert middle == pytest.approx(result.a0_angstrom[1] - 0.5 * (result.a0_angstrom[0] + result.a0_angstrom[2]))
    assert 0 < abs(middle) < 0.05
    assert result.mixing_energy_std_ev_per_atom[1] > 0  # two different random configurations
    assert np.all(result.bcc_minus_fcc_ev_per_atom > 0)  # EMT Ni and Cu prefer FCC at every composition


def test_random_solution_is_seeded():
    first = alloys.random_solid_solution("Ni", "Al", 0.75, a_angstrom=3.6, size=2, seed=(0, 1, 2))
    again = alloys.random_solid_solution("Ni", "Al", 0.75, a_angstrom=3.6, size=2, seed=(0, 1, 2))
    other = alloys.random_solid_solution("Ni", "Al", 0.75, a_angstrom=3.6, size=2, seed=(0, 1, 3))
    assert first.get_chemical_symbols() == again.get_chemical_symbols() != other.get_chemical_symbols()
    assert first.get_chemical_symbols().count("Al") == 8


def test_l12_ni3al_emt(emt):
    result = alloys.l12_compound(emt, "Ni", "Al")
    assert result.formula == "Ni3Al"
    ni, al = (alloys.element_reference(el, emt).a0_angstrom for el in ("Ni", "Al"))
    assert ni < result.a0_angstrom < al
    assert result.c11_gpa > result.c12_gpa > 0 and result.c44_gpa > 0  # Born stable
    assert math.isfinite(result.formation_energy_ev_per_atom)


# ------------------------------------------------------------------------------------- SevenNet-0 smoke tests
@pytest.fixture(scope="module")
def sevennet():
    from umlip_helpers.models import load_calculator

    return load_calculator("sevennet-0", device="cpu", threads=1)


@pytest.fixture(scope="module")
def ni_sevennet(sevennet):
    return relax(bulk("Ni", "fcc", a=3.505, cubic=True), sevennet, fmax=0.005, progress=False).atoms


@pytest.mark.slow
def test_sevennet_vacancy(ni_sevennet, sevennet):
    result = defects.vacancy_formation_energy(ni_sevennet, sevennet, sizes=(2,), fmax=0.03, progress=False)
    assert 0.8 < result.e_vac_ev < 2.5


@pytest.mark.slow
def test_sevennet_stacking_fault(ni_sevennet, sevennet):
    result = defects.generalized_stacking_fault(ni_sevennet, sevennet, n_layers=6, n_points=3, fmax=0.03,
                                                progress=False)
    assert result.usf_mj_m2 > result.isf_mj_m2 > 0


@pytest.mark.slow
def test_sevennet_surfaces(ni_sevennet, sevennet):
    result = defects.surface_energies(ni_sevennet, sevennet, thickness_angstrom=6.0, fmax=0.03, progress=False)
    assert 1.0 < result.gamma_j_m2["111"] < result.gamma_j_m2["110"] < 3.5


@pytest.mark.slow
def test_sevennet_adsorption(ni_sevennet, sevennet):
    result = defects.adsorption_energies(ni_sevennet, sevennet, adsorbates=("H",), sites=("ontop", "fcc"),
                                         size=(1, 1), n_layers=3, n_relaxed_layers=1, fmax=0.05, progress=False)
    assert result.favourable_site["H"] == "fcc"
    assert result.e_ads_ev["H"]["fcc"] < 0


@pytest.mark.slow
def test_sevennet_alloys(sevennet):
    scan = alloys.solid_solution_scan(sevennet, "Ni", "Cr", host_fractions=(0.5, 1.0), n_configs=1, size=1,
                                      fmax=0.03, progress=False)
    assert abs(scan.mixing_energy_ev_per_atom[-1]) < 1e-6
    assert 3.4 < scan.a0_angstrom[0] < 3.7
    ni3al = alloys.l12_compound(sevennet, elastic=False)
    assert 3.5 < ni3al.a0_angstrom < 3.62
    assert ni3al.formation_energy_ev_per_atom < -0.2  # strongly bound intermetallic


def test_reference_comparison():
    table = defects.literature_values()
    c11 = table["C11"][0]["value"]
    assert defects.compare_to_reference("C11", c11 * 1.1, table)["percent_error"] == pytest.approx(10.0)
    missing = defects.compare_to_reference("usf_energy", 250.0, table)
    assert missing["reference"] is None and missing["percent_error"] is None
    assert all("doi" in row["source"].lower() for row in table["Ni3Al_formation_enthalpy"])
