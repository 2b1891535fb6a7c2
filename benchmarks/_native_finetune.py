"""Fine-tune with each model family's OWN training code, for comparison with the project's trainer
(``benchmarks/finetune_vs_native.py`` imports this module; it has no headline of its own).

- SevenNet: the ``sevenn train`` command of sevenn 0.13 on its shipped preset ``sevenn/presets/fine_tune.yaml``
  (continues from the shipped SevenNet-0_11July2024 weights), changed only where :func:`sevenn_settings` says.
- CHGNet: ``chgnet.trainer.Trainer`` with its own defaults (Adam, CosLR, MSE, lr 1e-3, e/f/s ratios 1/1/0.1) on
  ``StructureData`` from ``CHGNet.load()`` (0.3.0), run by this file's own entry point
  (``python benchmarks/_native_finetune.py chgnet WORKDIR``).

Each run is one single-threaded subprocess (OMP/MKL threads 1, HF_HUB_OFFLINE=1), so its wall time (graph building
included) and peak RSS (``os.wait4``'s rusage of that child alone) are its own. The frames go in as extxyz files
in ``workdir`` (ASE units and sign: eV, eV/Å, eV/Å^3, which is what sevenn's reader expects). A finished run
leaves ``workdir/native_run.json``; calling again with that workdir returns it without rerunning.

Stress signs, checked on the YMnO3 frames (data/ymno3/ymno3_vasp_200.xyz): the labels are near zero (|σ| < 0.5 GPa)
while both base models predict about -11 to -15 GPa on the diagonal, so the stress MAE (about 6 GPa over the Voigt
6, 4.0 GPa over CHGNet's 9 components) hardly depends on the label's sign; the shear components decide it.
sevenn's reader takes ``-atoms.get_stress()`` and its calculator undoes that, so ASE stress is written as is
(``sevenn inference`` of the base model on such a file: stress MAE 63.7 kBar, as SevenNetCalculator's 6.37 GPa).
CHGNet's ``StructureData`` multiplies the stress it is given by -0.1 (VASP kBar to GPa, sign flipped), so it gets
``-10 * σ_ASE / GPa``: its targets are then σ_ASE in GPa, the sign of CHGNet's own output (shear MAE 0.014 GPa
against base CHGNet on frames 180-199; 0.147 with the other sign).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

RECORD = "native_run.json"
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@dataclass(frozen=True)
class NativeRun:
    family: str  # "sevennet" or "chgnet"
    checkpoint: str  # the best (by validation loss) checkpoint the native trainer wrote
    wall_seconds: float  # wall time of the training subprocess, graph building included
    peak_rss_mb: float  # peak resident memory of that subprocess
    settings: dict  # the exact settings the native trainer ran with
    command: list  # the command line of the subprocess


def _finished(workdir: Path, family: str) -> NativeRun | None:
    path = workdir / RECORD
    if not path.exists():
        return None
    run = NativeRun(**json.loads(path.read_text()))
    if run.family != family:
        raise ValueError(f"{path} records a {run.family} run, not {family}")
    return run


def _save(run: NativeRun, workdir: Path) -> NativeRun:
    tmp = workdir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(run), indent=1))
    os.replace(tmp, workdir / RECORD)
    return run


def _write_frames(atoms_list, path: Path) -> str:
    """Write labelled frames as extxyz (energy, forces, stress from each Atoms' calculator, ASE units and sign)."""
    from ase.io import write

    for i, atoms in enumerate(atoms_list):
        results = getattr(atoms.calc, "results", {})
        missing = {"energy", "forces", "stress"} - set(results)
        if missing:
            raise ValueError(f"{path.name}: frame {i} has no {sorted(missing)} on its calculator")
    write(path, list(atoms_list), format="extxyz")
    return path.name


def run_timed(command: list, workdir: Path, log_name: str) -> tuple[float, float]:
    """Run command in workdir, single-threaded; return (wall seconds, peak RSS in MB of that child)."""
    env = os.environ | CHILD_ENV
    with open(workdir / log_name, "w") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not a max over earlier children
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited with {proc.returncode}; see {workdir / log_name}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def sevenn_settings(epochs: int, batch_size: int, seed: int, train_file: str, valid_file: str) -> dict:
    """sevenn's shipped fine_tune.yaml preset, changed only in the lines below."""
    import sevenn
    import yaml

    preset = Path(sevenn.__file__).parent / "presets" / "fine_tune.yaml"
    settings = yaml.safe_load(preset.read_text())
    settings["train"]["epoch"] = epochs
    settings["train"]["random_seed"] = seed
    settings["train"]["per_epoch"] = epochs  # one periodic checkpoint, at the end (checkpoint_0.pth is always written)
    # CPU: sevenn would take a visible GPU. Offline needs no change: continue.checkpoint 'SevenNet-0_11July2024'
    # resolves to the weights shipped in sevenn/pretrained_potentials.
    settings["train"]["device"] = "cpu"
    settings["data"]["batch_size"] = batch_size
    settings["data"]["load_trainset_path"] = [train_file]
    settings["data"]["load_validset_path"] = [valid_file]  # sevenn writes checkpoint_best.pth by validation loss
    del settings["data"]["load_testset_path"]
    return settings


def run_sevenn(train: list, val: list, epochs: int, batch_size: int, workdir: Path, seed: int = 1) -> NativeRun:
    """Fine-tune SevenNet-0 with ``sevenn train`` on the fine_tune preset; the best checkpoint is by validation."""
    import yaml

    workdir = Path(workdir).resolve()
    if (done := _finished(workdir, "sevennet")) is not None:
        return done
    workdir.mkdir(parents=True, exist_ok=True)
    settings = sevenn_settings(epochs, batch_size, seed, _write_frames(train, workdir / "train.extxyz"),
                               _write_frames(val, workdir / "valid.extxyz"))
    (workdir / "input.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    command = [str(Path(sys.executable).with_name("sevenn")), "train", "input.yaml"]
    wall, rss = run_timed(command, workdir, "sevenn_stdout.log")
    best = workdir / "checkpoint_best.pth"
    if not best.exists():
        raise RuntimeError(f"sevenn wrote no {best}; see {workdir / 'log.sevenn'}")
    return _save(NativeRun("sevennet", str(best), wall, rss, settings, command), workdir)


def chgnet_settings(epochs: int, batch_size: int, seed: int) -> dict:
    """What the CHGNet run changes from the Trainer's defaults; the child adds the Trainer's full argument record."""
    return {
        "model": "CHGNet.load() (0.3.0)",
        "trainer_kwargs": {"targets": "efs", "epochs": epochs, "use_device": "cpu"},
        "batch_size": batch_size,  # chgnet.data.dataset.get_loader, train and val (it shuffles both)
        "seed": seed,  # random, numpy and torch, before the datasets and Trainer are made
        "train_file": "train.extxyz",
        "valid_file": "valid.extxyz",
        "save_dir": "chgnet_checkpoints",
        "labels": "energy per atom (eV/atom), forces (eV/Å), stresses -10*σ_ASE/GPa (VASP kBar; StructureData x -0.1)",
    }


def run_chgnet(train: list, val: list, epochs: int, batch_size: int, workdir: Path, seed: int = 0) -> NativeRun:
    """Fine-tune CHGNet 0.3.0 with its own Trainer. The best checkpoint is the Trainer's bestE file (lowest
    validation energy MAE, its notion of best); not ``trainer.best_model``, which is the live model, not a copy."""
    workdir = Path(workdir).resolve()
    if (done := _finished(workdir, "chgnet")) is not None:
        return done
    workdir.mkdir(parents=True, exist_ok=True)
    settings = chgnet_settings(epochs, batch_size, seed)
    _write_frames(train, workdir / settings["train_file"])
    _write_frames(val, workdir / settings["valid_file"])
    (workdir / "chgnet_settings.json").write_text(json.dumps(settings, indent=1))
    command = [sys.executable, str(Path(__file__).resolve()), "chgnet", str(workdir)]
    wall, rss = run_timed(command, workdir, "chgnet_stdout.log")
    settings["trainer_args"] = json.loads((workdir / "chgnet_trainer_args.json").read_text())
    best = sorted((workdir / settings["save_dir"]).glob("bestE_*.pth.tar"))
    if len(best) != 1:
        raise RuntimeError(f"expected one bestE checkpoint in {workdir / settings['save_dir']}, found {best}")
    return _save(NativeRun("chgnet", str(best[0]), wall, rss, settings, command), workdir)


def _structure_data(path: Path):
    """CHGNet StructureData from an extxyz of labelled frames (labels converted as the module docstring says)."""
    from ase.io import read
    from ase.stress import voigt_6_to_full_3x3_stress
    from ase.units import GPa
    from chgnet.data.dataset import StructureData
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = read(path, index=":")
    return StructureData(
        structures=[AseAtomsAdaptor.get_structure(a) for a in frames],
        energies=[a.get_potential_energy() / len(a) for a in frames],
        forces=[a.get_forces() for a in frames],
        stresses=[-10 * voigt_6_to_full_3x3_stress(a.get_stress()) / GPa for a in frames],
        shuffle=False,
    )


def _chgnet_child(workdir: Path) -> None:
    """The CHGNet training subprocess: reads chgnet_settings.json and the extxyz files that run_chgnet wrote."""
    import random

    import numpy as np
    import torch

    torch.set_num_threads(1)
    settings = json.loads((workdir / "chgnet_settings.json").read_text())
    random.seed(settings["seed"])
    np.random.seed(settings["seed"])
    torch.manual_seed(settings["seed"])
    from chgnet.data.dataset import get_loader
    from chgnet.model import CHGNet
    from chgnet.trainer import Trainer

    train = get_loader(_structure_data(workdir / settings["train_file"]), batch_size=settings["batch_size"])
    val = get_loader(_structure_data(workdir / settings["valid_file"]), batch_size=settings["batch_size"])
    trainer = Trainer(model=CHGNet.load(use_device="cpu"), **settings["trainer_kwargs"])
    (workdir / "chgnet_trainer_args.json").write_text(json.dumps(trainer.trainer_args, indent=1))
    trainer.train(train, val, save_dir=str(workdir / settings["save_dir"]))


def native_calculator(run: NativeRun):
    """An ASE calculator (CPU) on the run's best checkpoint."""
    if run.family == "sevennet":
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(run.checkpoint, device="cpu")
    if run.family == "chgnet":
        from chgnet.model import CHGNet, CHGNetCalculator

        return CHGNetCalculator(CHGNet.from_file(run.checkpoint), use_device="cpu")
    raise ValueError(f"unknown family {run.family!r}")


if __name__ == "__main__":  # internal entry point: python benchmarks/_native_finetune.py chgnet WORKDIR
    if sys.argv[1:2] != ["chgnet"] or len(sys.argv) != 3:
        sys.exit("usage (internal, run by run_chgnet): python benchmarks/_native_finetune.py chgnet WORKDIR")
    _chgnet_child(Path(sys.argv[2]))
