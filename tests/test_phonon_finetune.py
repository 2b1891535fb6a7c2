"""Phonon fine-tuning from rattled supercells (properties.phonon_finetune), with EMT as the parent and the real
SevenNet-0 as the base model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk

from umlip_helpers.errors import UnsupportedElements
from umlip_helpers.io import model_info
from umlip_helpers.models import load_calculator
from umlip_helpers.parents import ParentFailed, emt_parent
from umlip_helpers.properties.phonon_finetune import phonon_finetune, rattled_supercells

#: EMT's own FCC Ni lattice parameter is near 3.487 Å; the tests need a structure, not the exact minimum
NI_EMT_A = 3.487


@pytest.fixture
def ni():
    return bulk("Ni", "fcc", a=NI_EMT_A)


def test_rattled_supercells_size_amplitude_and_seed(ni):
    cells = rattled_supercells(ni, 6, supercell=2, amplitude_angstrom=0.04, seed=3)
    perfect = ni.repeat(2)
    assert len(cells) == 6 and all(len(c) == 8 for c in cells)
    assert np.allclose(cells[0].cell, perfect.cell)
    displacements = np.concatenate([c.positions - perfect.positions for c in cells])
    assert displacements.std() == pytest.approx(0.04, rel=0.25)  # 144 Gaussian samples
    again = rattled_supercells(ni, 6, supercell=2, amplitude_angstrom=0.04, seed=3)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(cells, again))
    other = rattled_supercells(ni, 6, supercell=2, amplitude_angstrom=0.04, seed=4)
    assert not np.allclose(cells[0].positions, other[0].positions)
    assert not np.allclose(cells[0].positions, cells[1].positions)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_rattled": 0}, "n_rattled must be a positive integer"),
    ({"n_rattled": 2.5}, "n_rattled must be a positive integer"),
    ({"amplitude_angstrom": 0.0}, "amplitude_angstrom must be > 0"),
    ({"amplitude_angstrom": -0.02}, "amplitude_angstrom must be > 0"),
    ({"amplitude_angstrom": float("nan")}, "amplitude_angstrom must be > 0"),
    ({"amplitude_angstrom": 0.5}, "nearest-neighbour distance"),
])
def test_rattled_supercells_rejects_bad_input(ni, kwargs, match):
    with pytest.raises(ValueError, match=match):
        rattled_supercells(ni, **{"n_rattled": 4, **kwargs})


def test_phonon_finetune_rejects_bad_input_before_any_work(ni):
    from ase.calculators.emt import EMT

    base = EMT()  # the checks run before the base model is ever called, so any calculator will do here
    with pytest.raises(ValueError, match="n_rattled"):
        phonon_finetune(ni, base, emt_parent(), n_rattled=0)
    with pytest.raises(ValueError, match="harmonic regime"):
        phonon_finetune(ni, base, emt_parent(), amplitude_angstrom=1.0)
    iron = bulk("Fe", "bcc", a=2.83, cubic=True)
    with pytest.raises(UnsupportedElements, match="parent of Fe2.*'emt'.*Fe"):
        phonon_finetune(iron, base, load_calculator("emt"), n_rattled=2)
    # emt_parent() names its family in its model_info, so it is checked before any work too
    with pytest.raises(UnsupportedElements, match="parent of Fe2.*'emt'.*Fe"):
        phonon_finetune(iron, base, emt_parent(), n_rattled=2)
    # a bare ASE calculator of no known family fails on its first label, naming parent and cell
    with pytest.raises(ParentFailed, match="parent EMT failed on Fe16.*Fe"):
        phonon_finetune(iron, base, EMT(), n_rattled=2)


@pytest.mark.slow
def test_emt_parent_end_to_end_moves_phonons_to_the_parent(sevennet0, ni, tmp_path):
    out = tmp_path / "ni_phonon_lora"
    probe = rattled_supercells(ni, 1, supercell=2, seed=99)[0]
    probe.calc = sevennet0
    base_forces = probe.get_forces().copy()
    result = phonon_finetune(ni, sevennet0, emt_parent(), n_rattled=8, supercell=2, phonon_supercell=2, mesh=6,
                             band_points=11, epochs=10, out=out, progress=False)
    # measured, not assumed: the LoRA model's phonons must be closer to EMT's than SevenNet-0's are
    assert result.frequency_mae_thz_finetuned < 0.5 * result.frequency_mae_thz_base  # measured: 0.08x
    assert result.mae_ratio_finetuned_over_base == pytest.approx(
        result.frequency_mae_thz_finetuned / result.frequency_mae_thz_base)
    assert abs(result.mean_frequency_ratio_finetuned - 1) < abs(result.mean_frequency_ratio_base - 1)
    assert result.forces_mae_ev_per_angstrom_finetuned < result.forces_mae_ev_per_angstrom_base
    assert not result.finetuned_phonons.has_imaginary_modes

    # the fine-tuned model loads by itself, differs from the base, and the base calculator was left untouched
    reloaded = load_calculator(out, device="cpu")
    assert model_info(reloaded).base_model["name"] == "sevennet-0"
    sevennet0.reset()  # no cached results: the check below recomputes
    for calc, same in ((reloaded, False), (sevennet0, True)):
        fresh = probe.copy()
        fresh.calc = calc
        assert np.allclose(fresh.get_forces(), base_forces, atol=1e-5) == same

    record = json.loads(json.dumps(result.to_dict()))
    assert record["parent_phonons"]["qpoint_frequencies_thz"]["X"] == pytest.approx(
        list(result.parent_phonons.qpoint_frequencies_thz["X"]))
    assert set(result.summary()) >= {"frequency_mae_thz_base", "mean_frequency_ratio_finetuned"}
    band_ax = result.plot()
    assert len(band_ax.lines) >= 3 * len(result.parent_phonons.band_segments)
