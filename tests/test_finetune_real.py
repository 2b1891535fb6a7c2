"""Fine-tuning the shipped foundation models (SevenNet-0, CHGNet 0.3.0) on real YMnO3 VASP frames.

Each SevenNet-0 forward+backward on 120 atoms takes 10-30 s on the shared CPUs, so these use one or two
frames and two optimiser steps: enough to see the loss fall, not to reach the benchmark's accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from umlip_helpers.finetune import finetune  # noqa: E402
from umlip_helpers.models import adapter_for  # noqa: E402
from umlip_helpers.finetune.strategies import apply_strategy  # noqa: E402
from umlip_helpers.models import load_calculator  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sevennet-0", "chgnet-0.3.0"])
def test_zero_initialised_lora_predicts_exactly_like_the_base_model(name, ymno3_frames):
    calc = load_calculator(name, device="cpu")
    adapter = adapter_for(calc)
    sample = adapter.prepare(calc, ymno3_frames[0].atoms)
    module = adapter.module(calc)
    base = [t.detach().clone() for t in adapter.predict(module, sample, training=False)]
    apply_strategy(module, adapter, "lora")
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)
    assert 0 < trainable / total <= 0.05
    lora = [t.detach() for t in adapter.predict(module, sample, training=False)]
    assert all(torch.equal(a, b) for a, b in zip(base, lora))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sevennet-0", "chgnet-0.3.0"])
def test_lora_lowers_force_and_stress_errors_on_real_frames(name, ymno3_frames, tmp_path):
    report = finetune(name, ymno3_frames[:1], None, strategy="lora", out=tmp_path / name, epochs=2, batch_size=1,
                      device="cpu", progress=False)
    # without validation frames, before/after are measured on the training frame
    assert report.after["forces_mae_ev_per_angstrom"] < report.before["forces_mae_ev_per_angstrom"]
    assert report.after["stress_mae_gpa"] < report.before["stress_mae_gpa"]
    assert report.log[-1]["train_forces_rmse"] < report.log[0]["train_forces_rmse"]
    assert report.log[-1]["train_stress_rmse"] < report.log[0]["train_stress_rmse"]
    # alignment: the base model's energy error per atom falls to ~0 on the frame it was fitted on
    assert report.before["energy_mae_mev_per_atom"] < 0.01 * report.base_energy_mae_unaligned_mev_per_atom
    loaded = load_calculator(tmp_path / name, device="cpu")
    atoms = ymno3_frames[0].atoms.copy()
    atoms.calc = loaded
    mae = np.abs(atoms.get_forces() - ymno3_frames[0].forces_ev_per_angstrom).mean()
    assert mae == pytest.approx(report.after["forces_mae_ev_per_angstrom"], abs=1e-5)


@pytest.mark.slow
def test_chgnet_batched_forward_matches_a_forward_per_frame(assert_batched_forward_matches_per_frame):
    # float32 sums in another order: one weight gradient of 64 differed by 3.4e-6
    assert_batched_forward_matches_per_frame(load_calculator("chgnet-0.3.0", device="cpu"), gradient_atol=1e-5)
