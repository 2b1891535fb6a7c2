"""Replay and forgetting on a tiny random SevenNet (the real architecture) and real YMnO3 VASP frames: replay frames
carry the raw base model's labels on the scale the model trains on, a large replay weight keeps the model closer to
its base on them, and forgetting() of a model against itself is zero and of a fine-tune is not."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sevenn")
pytest.importorskip("peft")

from umlip_helpers.finetune import finetune  # noqa: E402
from umlip_helpers.finetune.forgetting import ForgettingSettings, forgetting, knowledge  # noqa: E402
from umlip_helpers.finetune.replay import base_labels, replay_samples, replay_structures  # noqa: E402
from umlip_helpers.finetune.trainer import Hyperparameters, LossWeights, batch_loss  # noqa: E402
from umlip_helpers.models import ShiftedCalculator, adapter_for, get_family, load_calculator, unshifted  # noqa: E402

ELEMENTS = ["Y", "Mn", "O", "H", "Cu", "Si", "Ni"]
SETTINGS = ForgettingSettings(delta_elements=("Ni", "Cu"), probes=("Cu", "Si", "MnO"), npoints=5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return get_family("sevennet").build(tmp_path_factory.mktemp("tiny") / "tiny7.pth", ELEMENTS, seed=2)


def ase_labels(calc, atoms):
    calc.reset()
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def test_replay_structures_are_seeded_diverse_and_only_of_covered_elements():
    first, again = replay_structures(["Y", "Mn", "O"], 12, seed=3), replay_structures(["Y", "Mn", "O"], 12, seed=3)
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(first, again))
    other = replay_structures(["Y", "Mn", "O"], 12, seed=4)
    assert not np.allclose(first[0].positions, other[0].positions)
    formulas = {a.get_chemical_formula() for a in first}
    assert len(formulas) >= 10 and all(a.pbc.all() and a.cell.volume > 0 for a in first)
    covered = replay_structures(["Y", "Mn", "O"], 12, seed=3, covered={"Y", "Mn", "O", "H"})
    assert {s for a in covered for s in a.get_chemical_symbols()} <= {"Y", "Mn", "O", "H"}
    assert {"Y", "Mn", "O"} <= {s for a in covered for s in a.get_chemical_symbols()}


def test_replay_frames_carry_the_raw_base_models_labels(tiny):
    calc = load_calculator(tiny, device="cpu")
    structures = replay_structures(["Y", "Mn", "O"], 5, seed=0, covered=set(ELEMENTS))
    # a fine-tuned base carries energy shifts: the labels are those of the model underneath, on the training scale
    shifted = ShiftedCalculator(calc, {"Y": -7.0, "Mn": -9.0, "O": -5.0, "Cu": -3.0, "Si": -4.0, "Ni": -2.0})
    dataset, _ = base_labels(shifted, structures)
    for frame, atoms in zip(dataset, structures):
        energy, forces, stress = ase_labels(calc, atoms)
        assert frame.energy_ev == pytest.approx(energy, abs=1e-4)
        np.testing.assert_allclose(frame.forces_ev_per_angstrom, forces, atol=1e-5)
        np.testing.assert_allclose(frame.stress_ev_per_angstrom3, stress, atol=1e-6)
        assert abs(frame.energy_ev - ase_labels(shifted, atoms)[0]) > 1.0  # not the shifted energies


def test_replay_loss_is_zero_at_the_start_whatever_the_dft_reference(tiny, ymno3_frames, tmp_path):
    """The trainer aligns the base to DFT with shifts and trains the raw model to E_DFT - shifts; replay targets are
    the raw base energies, so the base model fits them exactly, while the DFT frames it does not."""
    calc = load_calculator(tiny, device="cpu")
    hp = Hyperparameters(strategy="full", replay_weight=1.0, replay_frames=6)
    samples = replay_samples(calc, ["Y", "Mn", "O"], hp, "cpu")
    assert len(samples) == 6 and all(s.weight == 1.0 for s in samples)
    adapter = adapter_for(calc)
    module = adapter.module(calc)
    loss, sums = batch_loss(adapter, module, samples, LossWeights(), training=False)
    assert float(loss.detach()) < 1e-8 and sums["energy"] < 1e-6
    assert replay_samples(calc, ["Y"], Hyperparameters(strategy="full"), "cpu") == []  # weight 0: off


@pytest.fixture(scope="module")
def tuned(tiny, ymno3_frames, tmp_path_factory):
    """Full fine-tunes without and with a large replay weight (same data, seed and steps otherwise)."""
    out = tmp_path_factory.mktemp("replay")
    return {weight: finetune(load_calculator(tiny, device="cpu"), ymno3_frames[:2], None, strategy="full",
                             out=out / f"w{weight:g}", epochs=3, lr=0.05, batch_size=1, replay_weight=weight,
                             replay_frames=6, progress=False) for weight in (0.0, 100.0)}


def test_a_large_replay_weight_moves_the_model_less_on_the_replay_frames(tiny, tuned):
    """How far each fine-tune moved on the replay frames: its raw model's loss against the base labels (energy per
    atom, forces, stress; 0 for the base itself)."""
    base = load_calculator(tiny, device="cpu")
    samples = replay_samples(base, ["Y", "Mn", "O"], Hyperparameters(strategy="full", replay_weight=1.0,
                                                                      replay_frames=6), "cpu")
    moved = {}
    for weight, report in tuned.items():
        raw = unshifted(load_calculator(report.out_dir, device="cpu"))
        adapter = adapter_for(raw)
        moved[weight] = float(batch_loss(adapter, adapter.module(raw), samples, LossWeights(), training=False)[0].detach())
    assert moved[0.0] > 0.1, moved  # fine-tuning moved the model there (the energy zero above all)
    assert moved[100.0] < 0.5 * moved[0.0], moved
    # the replay frames are left out of the energy alignment: the same shifts with and without them
    assert tuned[0.0].base_energy_shifts_ev == pytest.approx(tuned[100.0].base_energy_shifts_ev)
    assert tuned[0.0].epochs_run == tuned[100.0].epochs_run == 3


def test_forgetting_of_a_model_against_itself_is_zero_and_of_a_finetune_is_not(tiny, tuned):
    base = load_calculator(tiny, device="cpu")
    itself = forgetting(load_calculator(tiny, device="cpu"), knowledge(base, settings=SETTINGS), settings=SETTINGS)
    assert itself.forgetting_force_rms_ev_per_angstrom == 0.0
    assert set(itself.probe_force_rms_change_ev_per_angstrom) == {"Cu", "Si", "MnO"}
    assert all(v == 0.0 for v in itself.probe_energy_change_mev_per_atom.values())
    assert itself.dft_before == itself.dft_after and "ni_fcc_vasp" in itself.dft_before
    lost = forgetting(load_calculator(tuned[0.0].out_dir, device="cpu"), base, settings=SETTINGS)
    assert lost.forgetting_force_rms_ev_per_angstrom > 1e-4
    assert lost.model != lost.base_model
    assert "probe NaCl" not in lost.skipped  # only the probes asked for


def test_command_line_finetune_takes_a_replay_weight(tiny, ymno3_frames, tmp_path):
    import json

    from umlip_helpers.cli import main
    from umlip_helpers.models import MANIFEST_NAME

    train = ymno3_frames[:1].write_extxyz(tmp_path / "train.xyz")
    code = main(["finetune", "--model", str(tiny), "--train", str(train), "--strategy", "head", "--epochs", "1",
                 "--replay-weight", "0.5", "--out", str(tmp_path / "cli"), "--device", "cpu"])
    assert code == 0
    manifest = json.loads((tmp_path / "cli" / MANIFEST_NAME).read_text())
    assert manifest["hyperparameters"]["replay_weight"] == 0.5 and manifest["hyperparameters"]["replay_frames"] == 16
