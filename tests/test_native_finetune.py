"""benchmarks/_native_finetune.py: one tiny native fine-tuning run per family (2 YMnO3 frames, 1 epoch), its record,
a CPU calculator on its best checkpoint, and the saved record returned on a second call without rerunning."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from benchmarks import _native_finetune as nf  # noqa: E402

FAMILIES = {"sevennet": ("sevenn", nf.run_sevenn), "chgnet": ("chgnet", nf.run_chgnet)}


def _check_settings(run: nf.NativeRun) -> None:
    json.dumps(run.settings)
    if run.family == "sevennet":
        import sevenn
        import yaml

        preset = yaml.safe_load((Path(sevenn.__file__).parent / "presets" / "fine_tune.yaml").read_text())
        preset["train"].update(epoch=1, random_seed=1, per_epoch=1, device="cpu")
        preset["data"].update(batch_size=2, load_trainset_path=["train.extxyz"], load_validset_path=["valid.extxyz"])
        del preset["data"]["load_testset_path"]
        assert run.settings == preset  # the shipped preset, changed only where the module says
        assert run.settings["train"]["continue"]["checkpoint"] == "SevenNet-0_11July2024"
    else:
        assert run.settings["trainer_kwargs"] == {"targets": "efs", "epochs": 1, "use_device": "cpu"}
        assert run.settings["batch_size"] == 2
        args = run.settings["trainer_args"]
        assert (args["optimizer"], args["scheduler"], args["criterion"], args["learning_rate"]) == (
            "Adam", "CosLR", "MSE", 1e-3)
        assert (args["energy_loss_ratio"], args["force_loss_ratio"], args["stress_loss_ratio"]) == (1, 1, 0.1)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_tiny_native_run(family, ymno3_path, tmp_path):
    package, run_native = FAMILIES[family]
    pytest.importorskip(package)
    from ase.units import GPa

    from umlip_helpers.data import read_dataset

    frames = read_dataset(ymno3_path)
    train, val = [frames[0].to_atoms(), frames[1].to_atoms()], [frames[199].to_atoms()]
    run = run_native(train, val, epochs=1, batch_size=2, workdir=tmp_path)

    assert run.family == family and isinstance(run.command, list)
    assert (tmp_path / "native_run.json").exists() and tmp_path in Path(run.checkpoint).parents
    assert 0 < run.wall_seconds < 900 and 100 < run.peak_rss_mb < 32_000
    _check_settings(run)

    test = frames[198]
    atoms = test.atoms.copy()
    atoms.calc = nf.native_calculator(run)
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    assert np.isfinite(energy) and np.isfinite(forces).all() and np.isfinite(stress).all()
    assert np.abs(forces - test.forces_ev_per_angstrom).mean() < 0.2
    assert np.abs(stress - test.stress_ev_per_angstrom3).mean() / GPa < 20  # base models: ~6 GPa, a pressure offset

    again = run_native(train, val, epochs=1, batch_size=2, workdir=tmp_path)
    assert again == run  # the saved record (same wall time to the bit), not a rerun
