"""Vacancy migration by climbing-image NEB: EMT (real, cheap) for the physics checks, SevenNet-0 in a 31-atom cell.

The barrier is checked against a second calculation that uses no elastic band: the nearest-neighbour hop is
mirror-symmetric, so its saddle lies on the plane halfway between the two sites; the hopping atom held on that
plane (ASE FixedPlane) with every other atom relaxed gives E_saddle directly (``midpoint_saddle_barrier``).
"""

from __future__ import annotations

import json
import math

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from umlip_helpers.properties import migration, vacancy_formation_energy
from umlip_helpers.properties.relax import relax

#: NEB fmax 0.03 eV/Å leaves the climbing image within a few meV of the saddle (measured: 0.3-6 meV for EMT)
BARRIER_TOLERANCE_EV = 0.015


@pytest.fixture(scope="module")
def emt():
    return EMT()


def _check_hop(crystal, calc, supercell):
    result = migration.compute(crystal, calc, migration.MigrationSettings(supercell=supercell, n_images=3,
                                                                          progress=False))
    assert result.neb_converged and result.symmetric and result.single_maximum
    assert result.n_sites == 4 * supercell ** 3
    # the neighbours of a vacancy relax into it (SevenNet-0: 2 %), so the relaxed hop is a little shorter than a0/√2
    assert 0.95 < result.hop_distance_angstrom / (result.a0_angstrom / math.sqrt(2)) <= 1.0
    assert result.barrier_reverse_ev == pytest.approx(result.barrier_ev, abs=0.01)  # both ends are one state
    saddle = migration.midpoint_saddle_barrier(crystal, calc, supercell=supercell)
    assert result.barrier_ev == pytest.approx(saddle, abs=BARRIER_TOLERANCE_EV)
    assert result.activation_energy_ev == pytest.approx(result.vacancy_formation_ev + result.barrier_ev)
    json.dumps(result.to_dict())
    return result


@pytest.mark.parametrize("symbol,a,supercell", [("Ni", 3.52, 2), ("Cu", 3.61, 2), ("Ni", 3.52, 3)])
def test_emt_hop_is_symmetric_and_matches_the_constrained_saddle(symbol, a, supercell, emt):
    crystal = relax(bulk(symbol, "fcc", a=a, cubic=True), emt, progress=False).atoms
    result = _check_hop(crystal, emt, supercell)
    assert 0.3 < result.barrier_ev < 2.0  # a metal's vacancy hop: tenths of an eV to about one eV
    formation = vacancy_formation_energy(crystal, emt, sizes=(supercell,), progress=False).e_vac_ev
    assert result.vacancy_formation_ev == pytest.approx(formation, abs=1e-6)  # the vacancy workflow, same cell


@pytest.mark.slow
def test_sevennet_hop(sevennet0):
    crystal = relax(bulk("Ni", "fcc", a=3.52, cubic=True), sevennet0, fmax=0.005, progress=False).atoms
    result = _check_hop(crystal, sevennet0, supercell=2)
    assert 0.3 < result.barrier_ev < 2.0


def test_unconverged_band_is_reported(emt):
    crystal = relax(bulk("Ni", "fcc", a=3.52, cubic=True), emt, progress=False).atoms
    settings = migration.MigrationSettings(supercell=2, n_images=3, steps=2, fmax=1e-4, with_formation_energy=False,
                                           progress=False)
    with pytest.warns(RuntimeWarning, match="did NOT converge"):
        result = migration.compute(crystal, emt, settings)
    assert not result.neb_converged
    assert result.activation_energy_ev is None and result.vacancy_formation_ev is None
    rows = migration.comparison_rows(result, table={})  # no Q without E_f; no stored value is "no reference"
    assert [r["property"] for r in rows] == ["vacancy_migration_energy"] and rows[0]["percent_error"] is None


def test_path_checks_fail_on_bad_paths():
    import numpy as np

    assert migration._path_checks(np.array([0, 0.5, 1.0, 0.5, 0]), 0.02) == (True, True)
    assert migration._path_checks(np.array([0, 0.6, 0.4, 0.6, 0]), 0.02) == (True, False)  # two maxima
    assert migration._path_checks(np.array([0, 0.5, 1.0, 0.2, 0]), 0.02) == (False, True)


def test_bad_settings_and_input(emt):
    with pytest.raises(ValueError, match="supercell"):
        migration.MigrationSettings(supercell=1)
    with pytest.raises(ValueError, match="n_images"):
        migration.MigrationSettings(n_images=0)
    with pytest.raises(ValueError, match="fmax"):
        migration.MigrationSettings(fmax=0)
    with pytest.raises(ValueError, match="optimizer"):
        migration.MigrationSettings(optimizer="LBFGS")
    with pytest.raises(ValueError, match="not FCC"):
        migration.compute(bulk("Ni", "bcc", a=2.8), emt, migration.MigrationSettings(progress=False))
