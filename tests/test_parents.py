"""Parent calculators: EMT, GPAW (a real PBE code, when the GPAW extra is installed), failure handling."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from conftest import require_installed
from umlip_helpers.io import model_info
from umlip_helpers.parents import ParentFailed, emt_parent, make_parent, parent_single_point


def test_emt_parent_single_point_matches_emt_directly():
    from ase.calculators.emt import EMT

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    energy, forces = parent_single_point(emt_parent(), atoms)
    reference = atoms.copy()
    reference.calc = EMT()
    assert energy == pytest.approx(reference.get_potential_energy(), abs=1e-10)
    np.testing.assert_allclose(forces, reference.get_forces(), atol=1e-10)
    assert np.abs(forces).max() > 1e-3  # rattled: the forces are real, not zero
    assert atoms.calc is None  # the caller's atoms are left alone


def test_failing_parent_raises_a_clear_error():
    def broken_dft(atoms):
        raise RuntimeError("SCF did not converge in 120 iterations")

    with pytest.raises(ParentFailed, match="broken_dft failed on Cu4.*SCF did not converge"):
        parent_single_point(broken_dft, bulk("Cu", "fcc", a=3.6, cubic=True))


def test_make_parent_rejects_unknown_names():
    with pytest.raises(ValueError, match="emt or gpaw"):
        make_parent("vasp")


@pytest.mark.gpaw
@pytest.mark.slow
def test_gpaw_single_point_on_one_atom_ni():
    import importlib.util

    require_installed("GPAW", importlib.util.find_spec("gpaw") is not None, "scripts/install_gpaw.sh .venv")
    from umlip_helpers.parents import gpaw_parent

    parent = gpaw_parent(kpts_density=2.0, ecut_ev=300.0)
    atoms = bulk("Ni", "fcc", a=3.52)
    energy, forces = parent_single_point(parent, atoms)
    strained = bulk("Ni", "fcc", a=3.40)
    energy_strained, _ = parent_single_point(parent, strained)
    assert np.isfinite(energy)
    assert np.abs(forces).max() < 0.01  # one atom per cell: forces vanish by symmetry
    assert energy_strained > energy + 0.01  # compressing Ni by 3.4% costs energy in PBE
    assert model_info(parent).family == "gpaw"
