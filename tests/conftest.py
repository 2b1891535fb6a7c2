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
