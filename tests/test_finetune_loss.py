"""The fine-tuning loss's shape (``LossWeights.function``, ``umlip finetune --loss huber``): Huber equals the squared
error below its delta and grows linearly beyond it, on a tiny random SevenNet and real YMnO3 VASP frames."""

from __future__ import annotations

import dataclasses
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sevenn")

from umlip_helpers.finetune.trainer import (DEFAULT_LOSS, DEFAULT_LR, Hyperparameters, LossWeights,  # noqa: E402
                                            batch_loss, make_samples, prepare_samples)
from umlip_helpers.models import adapter_for, load_calculator  # noqa: E402


def test_huber_is_the_squared_error_below_delta_and_linear_beyond():
    residual = torch.tensor([0.001, -0.004, 0.5, -2.0])
    huber = LossWeights(function="huber", huber_delta_ev_per_angstrom=0.01)
    small, large = residual[:2], residual[2:]
    assert float(huber.penalty(small, (small ** 2).mean(), 0.01)) == pytest.approx(float((small ** 2).mean()))
    expected = float((2 * 0.01 * large.abs() - 0.01 ** 2).mean())  # 2 * delta * (|r| - delta / 2)
    assert float(huber.penalty(large, (large ** 2).mean(), 0.01)) == pytest.approx(expected)
    assert float(LossWeights().penalty(large, (large ** 2).mean(), 0.01)) == pytest.approx(float((large ** 2).mean()))


def test_huber_loss_on_real_frames_matches_mse_for_a_large_delta_and_caps_large_errors(tiny_sevennet, ymno3_frames):
    calc = load_calculator(tiny_sevennet, device="cpu")
    adapter = adapter_for(calc)
    module = adapter.module(calc)
    frames = ymno3_frames[:2]
    samples = make_samples(frames, prepare_samples(adapter, calc, frames, "test", progress=False), {}, "cpu")
    losses = {}
    for name, weights in {"mse": LossWeights(), "huber_wide": LossWeights(function="huber",
                                                                           huber_delta_ev_per_angstrom=1e6),
                          "huber": LossWeights(function="huber")}.items():
        loss, sums = batch_loss(adapter, module, samples, weights, training=False)
        losses[name] = (float(loss.detach()), sums)
    assert losses["huber_wide"][0] == pytest.approx(losses["mse"][0], rel=1e-6)
    # the raw random model is eV off per atom: Huber's linear arm makes the loss far smaller than the squared error
    assert losses["huber"][0] < 0.1 * losses["mse"][0]
    # the logged squared errors are the same whatever the loss's shape
    assert losses["huber"][1]["forces"] == pytest.approx(losses["mse"][1]["forces"])


def test_huber_from_the_command_line_is_recorded_and_bad_values_are_refused(tiny_sevennet, finetune_cli, tmp_path):
    from umlip_helpers.cli import main

    manifest = finetune_cli(tiny_sevennet, "--strategy", "head", "--batch-size", "2",
                            config="loss: huber\nhuber-delta: 0.05\nepochs: 1\n")
    weights = manifest["hyperparameters"]["weights"]
    assert weights["function"] == "huber" and weights["huber_delta_ev_per_angstrom"] == 0.05
    train = tmp_path / "train2.xyz"
    with pytest.raises(SystemExit):
        main(["finetune", "--model", str(tiny_sevennet), "--train", str(train), "--loss", "l1",
              "--out", str(tmp_path / "no")])
    with pytest.raises(ValueError, match="loss function must be one of mse, huber"):
        LossWeights(function="l1")
    with pytest.raises(ValueError, match="huber_delta_ev_per_angstrom must be > 0"):
        LossWeights(function="huber", huber_delta_ev_per_angstrom=0.0)


def test_each_strategy_has_its_default_loss_and_a_flag_overrides_one_field(tiny_sevennet, finetune_cli):
    """full's defaults (Huber, stress weight 0.1, lr 4e-3: benchmarks/finetune_vs_native.py --sweep) apply when no
    loss is given; a flag changes its one field and keeps the rest of the strategy's default."""
    assert Hyperparameters(strategy="full").weights == DEFAULT_LOSS["full"] == LossWeights(stress_gpa=0.1,
                                                                                        function="huber")
    assert Hyperparameters(strategy="full").lr == DEFAULT_LR["full"] == 4e-3
    assert Hyperparameters(strategy="lora").weights == Hyperparameters(strategy="head").weights == LossWeights()
    given = LossWeights(stress_gpa=0.0)
    assert Hyperparameters(strategy="full", weights=given).weights is given
    manifest = finetune_cli(tiny_sevennet, "--strategy", "full", "--stress-weight", "0.5", "--epochs", "1",
                            "--batch-size", "2")["hyperparameters"]
    assert manifest["weights"] == {**dataclasses.asdict(DEFAULT_LOSS["full"]), "stress_gpa": 0.5}
    assert manifest["lr"] == 4e-3


def test_a_constant_schedule_keeps_the_learning_rate_after_warm_up_and_cosine_decays_it(tiny_sevennet, finetune_cli,
                                                                                       tmp_path):
    """``--schedule constant`` (sevenn's preset decays by only 1 % an epoch) against the default warm-up + cosine:
    the per-epoch learning rates in the training log, and the choice in the manifest."""
    rates = {}
    for schedule in ("cosine", "constant"):
        manifest = finetune_cli(tiny_sevennet, "--strategy", "head", "--schedule", schedule, "--epochs", "4",
                                "--batch-size", "2", "--lr", "1e-3", frames=4, out=schedule)
        assert manifest["hyperparameters"]["schedule"] == schedule
        rates[schedule] = [row["lr"] for row in json.loads((tmp_path / schedule / "training_log.json").read_text())]
    assert rates["constant"][1:] == pytest.approx([1e-3] * 3)
    assert rates["cosine"][0] > rates["cosine"][1] > rates["cosine"][2] > rates["cosine"][3] >= 0.05e-3
    with pytest.raises(ValueError, match="schedule must be one of cosine, constant"):
        Hyperparameters(strategy="full", schedule="linear")
