"""Shared fixtures. Real models only: shipped weights (SevenNet-0, CHGNet), EMT, and tiny random models."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
YMNO3 = DATA / "ymno3" / "ymno3_vasp_200.xyz"


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)  # 2 shared cores: one thread is fastest and keeps timings stable


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def ymno3_path() -> Path:
    return YMNO3


@pytest.fixture(scope="session")
def ymno3_frames():
    """The first 5 real VASP frames of YMnO3 (120 atoms each)."""
    from umlip_helpers.data import read_dataset

    return read_dataset(YMNO3, max_frames=5, require=("energy", "forces", "stress"))


@pytest.fixture(scope="session")
def ase_vasp_testdata() -> Path:
    """Real VASP output files that ship with ASE's own tests (a Ni OUTCAR, two vasprun.xml)."""
    import ase

    return Path(ase.__file__).parent / "test" / "testdata" / "vasp"


@pytest.fixture(scope="session")
def sevennet0():
    from umlip_helpers.models import load_calculator

    return load_calculator("sevennet-0", device="cpu")


@pytest.fixture(scope="session")
def chgnet():
    from umlip_helpers.models import load_calculator

    return load_calculator("chgnet-0.3.0", device="cpu")


@pytest.fixture
def emt():
    from umlip_helpers.models import load_calculator

    return load_calculator("emt")


@pytest.fixture
def kill_training_at():
    """``kill_training_at(epoch, step)``: a trainer callback that raises RuntimeError("training killed ...") at that
    optimiser step, as a killed job would stop mid-epoch."""

    def make(epoch: int, step: int):
        def callback(progress: dict) -> None:
            if progress["epoch"] == epoch and progress["step"] == step:
                raise RuntimeError(f"training killed at epoch {epoch}, step {step}")

        return callback

    return make


@pytest.fixture(scope="session")
def tiny_sevennet(tmp_path_factory):
    """A tiny random SevenNet for Y, Mn and O (seed 1): fine-tuning tests that need a real model, fast."""
    from umlip_helpers.models import get_family

    return get_family("sevennet").build(tmp_path_factory.mktemp("tiny") / "tiny7.pth", ["Y", "Mn", "O"], seed=1)


@pytest.fixture
def finetune_cli(ymno3_frames, tmp_path):
    """``run(model, *flags, config=None, frames=2, out="cli")``: ``umlip finetune`` on the first ``frames`` YMnO3
    frames on the CPU (``config``: the text of a --config file); returns the fine-tuned directory's manifest."""
    import json

    from umlip_helpers.cli import main
    from umlip_helpers.models import MANIFEST_NAME

    def run(model, *flags: str, config: str | None = None, frames: int = 2, out: str = "cli") -> dict:
        train = ymno3_frames[:frames].write_extxyz(tmp_path / f"train{frames}.xyz")
        argv = ["finetune", "--model", str(model), "--train", str(train), "--out", str(tmp_path / out),
                "--device", "cpu", *flags]
        if config is not None:
            (tmp_path / f"{out}.yml").write_text(config)
            argv += ["--config", str(tmp_path / f"{out}.yml")]
        assert main(argv) == 0
        return json.loads((tmp_path / out / MANIFEST_NAME).read_text())

    return run


@pytest.fixture
def assert_batched_forward_matches_per_frame(ymno3_frames):
    """``check(calc)``: the family adapter's one forward over two YMnO3 frames of different sizes (120 and 80
    atoms) gives each its own energy, forces and stress, and the same parameter gradients through them (to
    ``gradient_atol``), as a forward per frame; the calculator still gives what it gave before (the module runs
    unbatched there)."""
    import numpy as np
    import torch

    from umlip_helpers.models import FamilyAdapter, adapter_for

    smaller = ymno3_frames[1].atoms.copy()
    del smaller[[i for i in range(len(smaller)) if i % 3 == 0]]
    structures = [ymno3_frames[0].atoms, smaller]

    def check(calc, gradient_atol: float = 1e-6) -> None:
        last = structures[-1].copy()
        last.calc = calc
        before = last.get_potential_energy(), last.get_forces()  # some calculators freeze the weights here
        adapter = adapter_for(calc)
        assert type(adapter).predict_batch is not FamilyAdapter.predict_batch, "the family has no batched forward"
        module = adapter.module(calc)
        adapter.make_trainable(module)
        params = [p for p in module.parameters() if p.requires_grad]
        samples = [adapter.prepare(calc, atoms) for atoms in structures]

        def loss_and_grads(outputs):  # forces and stress enter the loss: the force graph must be kept
            loss = sum(e + (f ** 2).sum() + (s ** 2).sum() for e, f, s in outputs)
            return loss, torch.autograd.grad(loss, params, allow_unused=True)

        single = [adapter.predict(module, sample, training=True) for sample in samples]
        batched = adapter.predict_batch(module, samples, training=True)
        assert len(batched) == len(single)
        for one, together in zip(single, batched):
            assert together[0].shape == () and together[1].shape == one[1].shape and together[2].shape == (6,)
            for a, b in zip(one, together):
                torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        (loss_1, grads_1), (loss_b, grads_b) = loss_and_grads(single), loss_and_grads(batched)
        torch.testing.assert_close(loss_b, loss_1)
        assert sum(g is not None for g in grads_1) > 0
        for g1, gb in zip(grads_1, grads_b):
            assert (g1 is None) == (gb is None)
            if g1 is not None:
                torch.testing.assert_close(gb, g1, rtol=1e-4, atol=gradient_atol)
        module.zero_grad(set_to_none=True)
        calc.reset()
        after = last.get_potential_energy(), last.get_forces()
        assert after[0] == pytest.approx(before[0], rel=1e-6)
        np.testing.assert_allclose(after[1], before[1], atol=1e-6)

    return check


def can_install_system_packages() -> bool:
    """Root, or passwordless sudo: what the install scripts need for apt-get."""
    import os
    import shutil
    import subprocess

    if os.geteuid() == 0:
        return True
    return shutil.which("sudo") is not None and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0


def require_installed(what: str, present: bool, script: str) -> None:
    """Fail when ``what`` is missing although this machine could install it (the install step broke); skip, with
    the reason, when installing it needs root or sudo that this user lacks (``make test`` skipped it too)."""
    if present:
        return
    if can_install_system_packages():
        pytest.fail(f"{what} is not installed, though this user can install it: run {script}")
    pytest.skip(f"{what} needs root or sudo to install ({script} skipped it), which this user lacks")
