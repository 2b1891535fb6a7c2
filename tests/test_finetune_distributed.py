"""Data-parallel fine-tuning under a real torchrun with the gloo backend, two processes on the CPU: the same weights
as one process over the same global batches, and a run killed on one rank resumes to the weights of a run that was
never killed. The model is a tiny random SevenNet; the frames are real YMnO3 VASP frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sevenn")

from umlip_helpers.models import get_family  # noqa: E402

pytestmark = pytest.mark.slow

#: One process of the run: argv = model train val out epochs resume kill_epoch (kill on rank 1; -1: never).
WORKER = '''
import sys
from umlip_helpers.finetune import finetune

model, train, val, out, epochs, resume, kill_epoch = sys.argv[1:]

def kill(progress):
    if progress["epoch"] == int(kill_epoch) and progress["rank"] == 1:
        raise RuntimeError(f"rank 1 killed at epoch {kill_epoch}")

finetune(model, train, val, strategy="full", out=out, epochs=int(epochs), batch_size=4, device="cpu",
         progress=False, resume=resume == "resume", callback=kill)
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ymno3_frames):
    from umlip_helpers.data import DFTDataset

    folder = tmp_path_factory.mktemp("ddp")
    model = get_family("sevennet").build(folder / "tiny.pth", ["Y", "Mn", "O"], seed=3)
    train = DFTDataset(ymno3_frames.frames[:4], name="train").write_extxyz(folder / "train.xyz")
    val = DFTDataset(ymno3_frames.frames[4:5], name="val").write_extxyz(folder / "val.xyz")
    worker = folder / "worker.py"
    worker.write_text(WORKER)
    return {"model": model, "train": train, "val": val, "worker": worker}


def _run(setup, out: Path, processes: int, epochs: int, resume: bool = False, kill_epoch: int = -1):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([*launcher, str(setup["worker"]), str(setup["model"]), str(setup["train"]),
                           str(setup["val"]), str(out), str(epochs), "resume" if resume else "new", str(kill_epoch)],
                          capture_output=True, text=True, env=env, timeout=600)


def _weights(out: Path) -> dict[str, "torch.Tensor"]:
    from safetensors.torch import load_file

    return load_file(str(out / "weights.safetensors"))


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_ranks_give_the_weights_of_one_process_over_the_same_batches(setup, tmp_path):
    """The two-rank run is book/gpu_and_hpc.md's command: torchrun over ``umlip_helpers.cli finetune``."""
    one, two = tmp_path / "one", tmp_path / "two"
    run = _run(setup, one, 1, epochs=2)
    assert run.returncode == 0, run.stderr[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
         "umlip_helpers.cli", "finetune", "--model", str(setup["model"]), "--train", str(setup["train"]), "--val",
         str(setup["val"]), "--strategy", "full", "--epochs", "2", "--batch-size", "4", "--device", "cpu",
         "--out", str(two)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert _max_difference(_weights(one), _weights(two)) < 1e-6
    log_one, log_two = (json.loads((out / "training_log.json").read_text()) for out in (one, two))
    for row_one, row_two in zip(log_one, log_two):  # losses are summed over the ranks: the same numbers
        assert row_two["train_loss"] == pytest.approx(row_one["train_loss"], rel=1e-6)
        assert row_two["val_loss"] == pytest.approx(row_one["val_loss"], rel=1e-6)
    manifest = json.loads((two / "umlip_model.json").read_text())
    assert manifest["provenance"]["parameters"]["processes"] == 2


def test_a_run_killed_on_one_rank_stops_with_its_error_and_resumes_to_the_same_weights(setup, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _run(setup, whole, 2, epochs=3).returncode == 0
    run = _run(setup, killed, 2, epochs=3, kill_epoch=2)
    assert run.returncode != 0 and "rank 1 killed at epoch 2" in run.stderr + run.stdout
    state = torch.load(killed / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 1 and not (killed / "umlip_model.json").exists()  # the last epoch's checkpoint kept
    resumed = _run(setup, killed, 2, epochs=3, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _max_difference(_weights(whole), _weights(killed)) < 1e-6


def test_umlip_finetune_nproc_starts_the_processes_itself(setup, tmp_path):
    out, report = tmp_path / "ft", tmp_path / "report.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "umlip_helpers.cli", "finetune", "--model", str(setup["model"]),
                          "--train", str(setup["train"]), "--strategy", "lora", "--epochs", "1", "--device", "cpu",
                          "--nproc", "2", "--out", str(out), "--json", str(report)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(report.read_text())["processes"] == 2
    assert json.loads((out / "umlip_model.json").read_text())["provenance"]["parameters"]["processes"] == 2
