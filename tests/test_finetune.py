"""The fine-tuning engine on a tiny random SevenNet (the real architecture, 4 channels) and real YMnO3 frames:
LoRA start, equivariance, merge, save/load, resume, strategies, bad input, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sevenn")
pytest.importorskip("peft")

from umlip_helpers.data import DFTDataset, LabelledFrame, shift_for  # noqa: E402
from umlip_helpers.errors import DataValidationError, ModelUnavailable, UmlipError, UnsupportedElements  # noqa: E402
from umlip_helpers.finetune import finetune  # noqa: E402
from umlip_helpers.io import model_info  # noqa: E402
from umlip_helpers.models import adapter_for  # noqa: E402
from umlip_helpers.finetune.strategies import apply_strategy  # noqa: E402
from umlip_helpers.finetune.trainer import LossWeights, batched_by_default  # noqa: E402
from umlip_helpers.models import MANIFEST_NAME, load_calculator  # noqa: E402


def fresh(tiny_sevennet):
    return load_calculator(tiny_sevennet, device="cpu")


def predict(calc, atoms):
    calc.reset()  # weights change under the calculator between calls: never reuse cached results
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()


def rotated(atoms, rotation):
    out = atoms.copy()
    out.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    out.positions = atoms.positions @ rotation.T
    return out


def proper_rotation(seed: int) -> np.ndarray:
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))[0]
    return q * np.sign(np.linalg.det(q))


ROTATION = proper_rotation(7)


def assert_equivariant(calc, atoms):
    energy, forces, _ = predict(calc, atoms)
    energy_r, forces_r, _ = predict(calc, rotated(atoms, ROTATION))
    assert abs(energy_r - energy) < 1e-5 * max(1.0, abs(energy))
    np.testing.assert_allclose(forces_r, forces @ ROTATION.T, atol=1e-5)


def test_lora_starts_at_the_base_model_and_stays_equivariant_unmerged_and_merged(tiny_sevennet, ymno3_frames):
    calc = fresh(tiny_sevennet)
    atoms = ymno3_frames[0].atoms
    base_e, base_f, base_s = predict(calc, atoms)
    adapter = adapter_for(calc)
    peft_model = apply_strategy(adapter.module(calc), adapter, "lora")
    e, f, s = predict(calc, atoms)
    assert e == base_e and np.array_equal(f, base_f) and np.array_equal(s, base_s)  # B = 0 at step 0

    with torch.no_grad():  # stand-in for training: random adapters of a realistic size
        for name, param in adapter.module(calc).named_parameters():
            if "lora_B" in name:
                param.copy_(0.3 * torch.randn_like(param))
    unmerged = predict(calc, atoms)
    assert np.abs(unmerged[1] - base_f).max() > 1e-3, "the adapters did not change the forces"
    assert_equivariant(calc, atoms)

    peft_model.merge_and_unload()
    merged = predict(calc, atoms)
    assert abs(merged[0] - unmerged[0]) < 1e-5 * abs(unmerged[0])
    np.testing.assert_allclose(merged[1], unmerged[1], atol=1e-5)
    np.testing.assert_allclose(merged[2], unmerged[2], atol=1e-7)
    assert not any("lora" in n for n, _ in adapter.module(calc).named_parameters())
    assert_equivariant(calc, atoms)


def test_a_batched_forward_gives_each_frame_its_own_predictions_and_gradients(
        tiny_sevennet, assert_batched_forward_matches_per_frame):
    calc = fresh(tiny_sevennet)
    assert_batched_forward_matches_per_frame(calc)
    adapter = adapter_for(calc)
    assert not batched_by_default(adapter, adapter.module(calc)), \
        "on CPU the trainer runs a forward per frame (measured faster)"


def test_finetune_output_loads_by_path_and_reproduces_the_trained_model(tiny_sevennet, ymno3_frames, tmp_path):
    calc = fresh(tiny_sevennet)
    out = tmp_path / "ft"
    report = finetune(calc, ymno3_frames[:2], ymno3_frames[2:3], strategy="lora", out=out, epochs=2, batch_size=1,
                      lr=0.02, progress=False)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["strategy"] == "lora" and manifest["base_model"]["sha256"] == model_info(calc).sha256
    assert (out / "adapter_model.safetensors").is_file() and (out / "learning_curve.png").is_file()
    assert manifest["data"]["train"]["sha256"] == ymno3_frames[:2].sha256()
    assert 0 < report.trainable_fraction < 1 and report.epochs_run == 2  # SevenNet-0: <= 5% (test_finetune_real)

    loaded = load_calculator(out, device="cpu")
    atoms = ymno3_frames[2].atoms
    e_mem, f_mem, s_mem = predict(calc, atoms)  # calc was trained in place and merged; no energy shift
    e, f, s = predict(loaded, atoms)
    assert abs(e - (e_mem + shift_for(atoms, report.energy_shifts_ev))) < 1e-4
    np.testing.assert_allclose(f, f_mem, atol=1e-6)
    np.testing.assert_allclose(s, s_mem, atol=1e-8)
    base_f = predict(fresh(tiny_sevennet), atoms)[1]
    assert np.abs(f - base_f).max() > 1e-4, "fine-tuning left the model unchanged"
    assert_equivariant(loaded, atoms)
    # the energy reference is aligned: the fine-tuned model's energy is on the DFT scale
    assert abs(e - ymno3_frames[2].energy_ev) / len(atoms) < 0.05


def test_resume_after_an_interrupted_epoch_matches_an_uninterrupted_run(tiny_sevennet, ymno3_frames, tmp_path,
                                                                        kill_training_at):
    from safetensors.torch import load_file

    options = dict(strategy="lora", epochs=3, batch_size=1, lr=0.02, progress=False, seed=3)
    finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path / "a", **options)

    with pytest.raises(RuntimeError, match="training killed"):
        finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path / "b",
                 callback=kill_training_at(epoch=1, step=1), **options)
    with pytest.raises(Exception, match="resume"):  # refuses to overwrite a run silently
        finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path / "b", **options)
    with pytest.raises(UmlipError, match="another run: train_sha256 differ"):  # nor to continue it on other data
        finetune(fresh(tiny_sevennet), ymno3_frames[1:3], ymno3_frames[2:3], out=tmp_path / "b", resume=True,
                 **options)
    with pytest.raises(UmlipError, match="another run: hyperparameters differ"):
        finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path / "b", resume=True,
                 **{**options, "lr": 0.01})
    steps = []
    report = finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path / "b",
                      resume=True, callback=steps.append, **options)
    assert [s["epoch"] for s in steps] == [1, 1, 2, 2]  # continued at epoch 1, not from scratch
    assert [row["epoch"] for row in report.log] == [0, 1, 2]
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].abs().max() > 0 for k in a if "lora_B" in k)


def test_resuming_a_finished_run_returns_its_report_and_weights_without_redoing_it(tiny_sevennet, ymno3_frames,
                                                                                   tmp_path):
    options = dict(strategy="lora", epochs=1, batch_size=1, lr=0.02, progress=False, seed=3)
    first = finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path, **options)
    manifest = tmp_path / "umlip_model.json"
    written = manifest.stat().st_mtime_ns
    calc = fresh(tiny_sevennet)
    again = finetune(calc, ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path, resume=True, **options)
    assert manifest.stat().st_mtime_ns == written  # reports not recomputed, manifest not rewritten
    assert json.dumps(again.to_dict(), sort_keys=True, default=float) == \
        json.dumps(first.to_dict(), sort_keys=True, default=float)
    atoms = ymno3_frames[2].atoms  # calc holds the trained weights, as after training
    np.testing.assert_allclose(predict(calc, atoms)[1], predict(load_calculator(tmp_path), atoms)[1], atol=1e-6)
    assert np.abs(predict(calc, atoms)[1] - predict(fresh(tiny_sevennet), atoms)[1]).max() > 1e-4
    with pytest.raises(UmlipError, match="another run: hyperparameters differ"):
        finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path, resume=True,
                 **{**options, "lr": 0.01})
    (tmp_path / "training_log.json").unlink()  # a run dir missing a file: the reports are recomputed, no crash
    redone = finetune(fresh(tiny_sevennet), ymno3_frames[:2], ymno3_frames[2:3], out=tmp_path, resume=True, **options)
    assert manifest.stat().st_mtime_ns != written and redone.after == pytest.approx(first.after)


@pytest.mark.parametrize("strategy", ["head", "full"])
def test_head_trains_only_the_readout_and_full_trains_everything(strategy, tiny_sevennet, ymno3_frames, tmp_path):
    calc = fresh(tiny_sevennet)
    before = {k: v.clone() for k, v in calc.model.state_dict().items()}
    report = finetune(calc, ymno3_frames[:2], None, strategy=strategy, out=tmp_path / strategy, epochs=1,
                      batch_size=2, lr=0.01, progress=False)
    changed = {k.split(".")[0] for k, v in calc.model.state_dict().items() if not torch.equal(v, before[k])}
    head = set(adapter_for(calc).head_modules)
    if strategy == "head":
        assert changed and changed <= head
        assert report.trainable_fraction < 0.5
    else:
        assert changed - head, "full fine-tuning left the interaction blocks unchanged"
        assert report.trainable_fraction > 0.9
    loaded = load_calculator(tmp_path / strategy, device="cpu")
    np.testing.assert_allclose(predict(loaded, ymno3_frames[3].atoms)[1], predict(calc, ymno3_frames[3].atoms)[1],
                               atol=1e-6)


def test_batched_training_gives_the_model_that_per_frame_training_gives(tiny_sevennet, ymno3_frames, tmp_path):
    """Batches of frames in one forward (the default on a GPU) against a forward per frame (CPU): the same steps.
    Squared errors: under full's default Huber loss a residual that rounds across delta takes the other branch, and
    the two runs drift apart by a few 1e-4 in two epochs."""
    reports = {batched: finetune(fresh(tiny_sevennet), ymno3_frames[:4], ymno3_frames[4:6], strategy="full",
                                 out=tmp_path / str(batched), epochs=2, batch_size=2, lr=0.01, progress=False,
                                 batched=batched, loss_weights=LossWeights()) for batched in (False, True)}
    per_frame, batched = reports[False], reports[True]
    for row_a, row_b in zip(per_frame.log, batched.log):
        for key in ("train_loss", "val_loss", "train_forces_rmse", "val_forces_rmse"):
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-4), key
    assert batched.after["forces_mae_ev_per_angstrom"] == pytest.approx(per_frame.after["forces_mae_ev_per_angstrom"],
                                                                        rel=1e-4)
    assert per_frame.log[1]["train_loss"] != pytest.approx(per_frame.log[0]["train_loss"], rel=1e-3), \
        "training left the model unchanged"


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_validation_ignores_an_energy_offset_per_atom_that_the_final_shift_refit_removes(loss, tiny_sevennet,
                                                                                        ymno3_frames, tmp_path):
    """The best epoch is chosen on a validation loss that ignores a uniform offset per atom (the shifts are fitted
    again after training): validation frames 50 meV/atom off give the same validation losses, and the energy
    still counts through its spread."""
    import dataclasses

    val = ymno3_frames[2:5]
    offset = DFTDataset([dataclasses.replace(f, energy_ev=f.energy_ev + 0.05 * f.n_atoms) for f in val], name="off")
    weights = LossWeights(function=loss)
    logs = {name: finetune(fresh(tiny_sevennet), ymno3_frames[:2], frames, strategy="full", out=tmp_path / name,
                           epochs=2, batch_size=2, lr=0.01, progress=False, loss_weights=weights).log
            for name, frames in (("as_labelled", val), ("offset", offset))}
    for row, shifted in zip(logs["as_labelled"], logs["offset"]):
        assert shifted["val_loss"] == pytest.approx(row["val_loss"], rel=1e-4)  # float32 energies of 120 atoms
        assert shifted["val_energy_rmse"] == pytest.approx(row["val_energy_rmse"], rel=1e-4, abs=1e-6)
        assert row["val_energy_rmse"] > 0
    assert logs["as_labelled"][1]["val_loss"] != pytest.approx(logs["as_labelled"][0]["val_loss"], rel=1e-3)


def test_a_finetuned_model_can_be_finetuned_again(tiny_sevennet, ymno3_frames, tmp_path):
    """A model loaded from a fine-tuning directory (all weights frozen for inference) trains again in full, with the
    family's normalisation constants still frozen."""
    finetune(fresh(tiny_sevennet), ymno3_frames[:2], None, strategy="head", out=tmp_path / "first", epochs=1,
             batch_size=2, lr=0.01, progress=False)
    first = load_calculator(tmp_path / "first", device="cpu")
    assert not any(p.requires_grad for p in first.inner.model.parameters())
    before = {k: v.clone() for k, v in first.inner.model.state_dict().items()}
    report = finetune(first, ymno3_frames[2:4], None, strategy="full", out=tmp_path / "second", epochs=1,
                      batch_size=2, lr=0.01, progress=False)
    assert 0.9 < report.trainable_fraction < 1
    changed = {k for k, v in first.inner.model.state_dict().items() if not torch.equal(v, before[k])}
    assert {k.split(".")[0] for k in changed} - set(adapter_for(first).head_modules)
    assert not [k for k in changed if k.endswith("denominator")]
    expected = predict(first, ymno3_frames[4].atoms)[1]
    np.testing.assert_allclose(predict(load_calculator(tmp_path / "second", device="cpu"), ymno3_frames[4].atoms)[1],
                               expected, atol=1e-6)
    # the second model needs the first; moved together, the pair still loads
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("first", "second"):
        (tmp_path / name).rename(moved / name)
    np.testing.assert_allclose(predict(load_calculator(moved / "second", device="cpu"), ymno3_frames[4].atoms)[1],
                               expected, atol=1e-6)
    (moved / "first").rename(tmp_path / "elsewhere")
    with pytest.raises(ModelUnavailable, match="first"):
        load_calculator(moved / "second", device="cpu")


def test_same_inputs_and_seed_give_the_same_model(tiny_sevennet, ymno3_frames, tmp_path):
    from safetensors.torch import load_file

    for name in ("x", "y"):
        finetune(fresh(tiny_sevennet), ymno3_frames[:1], None, strategy="lora", out=tmp_path / name, epochs=1,
                 batch_size=1, progress=False, seed=11)
    x, y = (load_file(tmp_path / n / "adapter_model.safetensors") for n in ("x", "y"))
    assert all(torch.equal(x[k], y[k]) for k in x)


def test_bad_training_data_is_refused_with_a_clear_message(tiny_sevennet, ymno3_frames, tmp_path):
    calc = fresh(tiny_sevennet)
    frame = ymno3_frames[0]
    no_forces = DFTDataset([LabelledFrame(frame.atoms, frame.energy_ev, None, frame.stress_ev_per_angstrom3,
                                          "no_forces.xyz", 0)])
    with pytest.raises(DataValidationError, match="no_forces.xyz: frame 0: forces: missing"):
        finetune(calc, no_forces, out=tmp_path / "a", progress=False)
    with pytest.raises(DataValidationError, match="empty"):
        finetune(calc, DFTDataset([], name="nothing.xyz"), out=tmp_path / "b", progress=False)
    nickel = frame.atoms.copy()
    nickel.symbols[0] = "Ni"
    foreign = DFTDataset([LabelledFrame(nickel, frame.energy_ev, frame.forces_ev_per_angstrom,
                                        frame.stress_ev_per_angstrom3, "doped.xyz", 0)], name="doped.xyz")
    with pytest.raises(UnsupportedElements, match="doped.xyz.*Ni"):
        finetune(calc, foreign, out=tmp_path / "c", progress=False)


def test_command_line_finetune(tiny_sevennet, ymno3_frames, tmp_path):
    from umlip_helpers.cli import main

    train = ymno3_frames[:2].write_extxyz(tmp_path / "train.xyz")
    out = tmp_path / "cli"
    code = main(["finetune", "--model", str(tiny_sevennet), "--train", str(train), "--strategy", "head",
                 "--epochs", "1", "--max-frames", "2", "--batch-size", "2", "--out", str(out), "--device", "cpu",
                 "--json", str(tmp_path / "report.json")])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_train_frames"] == 2 and report["strategy"] == "head"
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["strategy"] == "head" and manifest["hyperparameters"]["batch_size"] == 2
