"""Distillation end to end with an EMT parent: EMT labels a few Cu cells, SevenNet-0 head-fine-tuned on them is the
teacher, and a small MACE student trained from scratch on the teacher's labels must be faster than the teacher in
MD and about as accurate against EMT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from umlip_helpers.distill import (DistillationResult, distill, generate_configurations, label_with, md_speed,
                                   train_student)
from umlip_helpers.data import random_split, read_dataset
from umlip_helpers.errors import DataValidationError, UnsupportedElements
from umlip_helpers.io import model_info
from umlip_helpers.metrics import evaluate
from umlip_helpers.models import get_family, load_calculator


@pytest.fixture(scope="module")
def copper():
    return bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))  # 32 atoms


@pytest.fixture(scope="module")
def parent_test_set(copper):
    """EMT-labelled rattled and strained cells that neither teacher nor student trains on."""
    configurations = generate_configurations(copper, None, rattle_amplitudes_angstrom=(0.03, 0.06),
                                             rattles_per_amplitude=2, strains=(-0.015, 0.015), seed=123,
                                             progress=False)
    return label_with(EMT(), configurations, name="EMT", progress=False)


@pytest.fixture(scope="module")
def distilled(copper, parent_test_set, tmp_path_factory):
    from umlip_helpers.finetune import finetune

    parent_train = label_with(EMT(), generate_configurations(copper, None, rattle_amplitudes_angstrom=(0.05,),
                                                             rattles_per_amplitude=3, strains=(), seed=7,
                                                             progress=False), name="EMT", progress=False)
    teacher_dir = tmp_path_factory.mktemp("teacher")
    finetune("sevennet-0", parent_train, strategy="head", out=teacher_dir, epochs=2, batch_size=1, device="cpu",
             progress=False)
    teacher = load_calculator(teacher_dir, device="cpu")
    out = tmp_path_factory.mktemp("student")
    generation = {"temperatures_k": (600.0,), "md_steps": 6, "md_interval": 3, "rattles_per_amplitude": 4}
    result = distill(teacher, copper, out, architecture="mace", parent_data=parent_test_set, speed_structure=copper,
                     speed_steps=3, generation=generation, epochs=20, device="cpu", progress=False)
    return teacher, result


@pytest.mark.slow
def test_student_is_faster_and_about_as_accurate_as_the_teacher(distilled):
    _, result = distilled
    assert isinstance(result, DistillationResult)
    assert result.n_configurations == 2 * 4 + 2 + 2  # rattles, strains, MD frames at steps 3 and 6
    # SevenNet-0 (5 layers, up to 128 channels) against a 2-layer, 16-channel MACE, interleaved in one run;
    # measured 14.9x on this 32-atom cell (2 shared cores, load average 9)
    assert result.md_speedup_student_over_teacher > 3.0, result.speed
    # measured against EMT: teacher 0.049, student 0.050 eV/Å (ratio 1.02); student against the teacher's labels
    # 0.016 eV/Å, where an untrained student is off by ~0.2 eV/Å
    assert result.student_force_mae_vs_teacher_ev_per_angstrom < 0.05
    assert result.force_mae_ratio_student_to_teacher < 1.5, result.summary()
    summary = result.summary()
    assert summary["md_speedup_student_over_teacher"] == result.md_speedup_student_over_teacher
    result.plot()


@pytest.mark.slow
def test_student_round_trip_through_load_calculator(distilled):
    teacher, result = distilled
    student = load_calculator(result.student_path, device="cpu")
    assert model_info(student).family == "mace"
    sidecar = json.loads(open(result.student_path.rsplit(".", 1)[0] + ".json").read())
    assert sidecar["teacher"]["sha256"] == model_info(teacher).sha256
    assert sidecar["data"]["train"]["n_frames"] + sidecar["data"]["val"]["n_frames"] == result.n_configurations
    # the reloaded file reproduces the trained module's in-memory errors on the validation labels
    labels = read_dataset(Path(result.student_path).parent / "teacher_labels.extxyz")
    _, val = random_split(labels, (0.9, 0.1), seed=0)
    assert len(val) == sidecar["data"]["val"]["n_frames"]
    again = evaluate(student, val, progress=False)
    assert again.force_mae_ev_per_angstrom == pytest.approx(
        result.training["force_mae_vs_labels_ev_per_angstrom"], rel=1e-4)
    assert again.force_mae_ev_per_angstrom == pytest.approx(
        result.student_force_mae_vs_teacher_ev_per_angstrom, rel=1e-4)


def test_sevennet_student_trains_and_loads(copper, tmp_path):
    """The second student family: a small SevenNet learns EMT forces within a few epochs (measured: the force
    RMSE falls from ~0.3 to ~0.1 eV/Å in about 100 optimiser steps)."""
    data = label_with(EMT(), generate_configurations(copper, None, rattle_amplitudes_angstrom=(0.05,),
                                                     rattles_per_amplitude=8, strains=(), seed=1, progress=False),
                      progress=False)
    report = train_student(data, tmp_path, architecture="sevennet", epochs=12, batch_size=1, device="cpu",
                           progress=False)
    first, last = report.log[0]["train_forces_rmse"], report.log[-1]["train_forces_rmse"]
    assert last < 0.9 * first, report.log
    calc = load_calculator(report.path, device="cpu")
    assert model_info(calc).family == "sevennet"
    again = evaluate(calc, data, progress=False)
    assert again.force_mae_ev_per_angstrom == pytest.approx(report.force_mae_vs_labels_ev_per_angstrom, rel=1e-4)


def test_md_speed_ranks_a_cheap_and_an_expensive_calculator(copper, tmp_path):
    tiny = load_calculator(get_family("mace").build(tmp_path / "tiny.model", ["Cu"]), device="cpu")
    speed = md_speed({"mace-tiny": tiny, "emt": EMT()}, copper, steps_per_round=3, rounds=1, progress=False)
    assert speed.speedup["mace-tiny"] == 1.0
    assert speed.speedup["emt"] > 1.0, speed.ms_per_step  # EMT is analytic: far cheaper than any network


def test_bad_input_is_named(copper, tmp_path):
    with pytest.raises(DataValidationError, match="no structures"):
        generate_configurations([], None)
    with pytest.raises(DataValidationError, match="no labelled frames"):
        train_student(label_with(EMT(), [copper], progress=False)[:0], tmp_path / "empty")
    with pytest.raises(ValueError, match="architecture"):
        train_student(label_with(EMT(), [copper], progress=False), tmp_path / "bad", architecture="allegro")
    copper_only = load_calculator(get_family("mace").build(tmp_path / "cu.model", ["Cu"]), device="cpu")
    nickel = bulk("Ni", "fcc", a=3.52, cubic=True)
    with pytest.raises(UnsupportedElements, match="Ni"):
        distill(copper_only, [copper, nickel], tmp_path / "out")
    with pytest.raises(UnsupportedElements, match="configuration 0"):
        label_with(copper_only, [nickel])


def test_student_training_resumes_to_the_same_weights(tmp_path, kill_training_at):
    cell = bulk("Cu", "fcc", a=3.61, cubic=True)  # 4 atoms: resume is about the bookkeeping, not the model
    data = label_with(EMT(), generate_configurations(cell, None, rattle_amplitudes_angstrom=(0.05,),
                                                     rattles_per_amplitude=4, strains=(), seed=2, progress=False),
                      progress=False)
    options = dict(architecture="mace", epochs=3, batch_size=2, device="cpu", progress=False, seed=5)
    whole = train_student(data, tmp_path / "whole", **options)

    with pytest.raises(RuntimeError, match="training killed"):
        train_student(data, tmp_path / "killed", callback=kill_training_at(epoch=1, step=1), **options)
    with pytest.raises(Exception, match="resume"):  # refuses to start over a run silently
        train_student(data, tmp_path / "killed", **options)
    with pytest.raises(Exception, match="another run: train_sha256 differ"):  # nor continues it on other data
        train_student(data[:3], tmp_path / "killed", resume=True, **options)
    steps = []
    resumed = train_student(data, tmp_path / "killed", resume=True, callback=steps.append, **options)
    assert [s["epoch"] for s in steps] == [1, 1, 2, 2]  # continued in epoch 1, not from scratch
    assert [row["epoch"] for row in resumed.log] == [0, 1, 2]
    predictions = []
    for run in (whole, resumed):
        atoms = data[0].atoms.copy()
        atoms.calc = load_calculator(run.path, device="cpu")
        predictions.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert predictions[0][0] == predictions[1][0]
    assert (predictions[0][1] == predictions[1][1]).all()


def test_distill_resumes_on_its_saved_labels(tmp_path, kill_training_at):
    """A killed distillation continues: the teacher's labels are read back, not regenerated, and the student ends
    with the weights of an uninterrupted run."""
    cell = bulk("Cu", "fcc", a=3.61, cubic=True)
    options = dict(architecture="mace", epochs=2, batch_size=2, device="cpu", progress=False, seed=3,
                   generation={"md_steps": 4, "md_interval": 2, "temperatures_k": (300.0,), "strains": ()})
    whole = distill(EMT(), cell, tmp_path / "whole", **options)
    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="training killed"):
        distill(EMT(), cell, killed, callback=kill_training_at(epoch=1, step=0), **options)
    labels = killed / "teacher_labels.extxyz"
    written = labels.stat().st_mtime_ns
    with pytest.raises(Exception, match="resume"):
        distill(EMT(), cell, killed, **options)
    steps = []
    resumed = distill(EMT(), cell, killed, resume=True, callback=steps.append, **options)
    assert labels.stat().st_mtime_ns == written and resumed.labels_sha256 == whole.labels_sha256
    assert {s["epoch"] for s in steps} == {1}  # continued in epoch 1, not from scratch
    probe = cell.copy()
    probe.rattle(0.05, seed=9)
    forces = []
    for result in (whole, resumed):
        probe.calc = load_calculator(result.student_path, device="cpu")
        forces.append(probe.get_forces())
    assert (forces[0] == forces[1]).all()
    with pytest.raises(Exception, match="another teacher"):
        distill(EMT(), cell.repeat((2, 1, 1)), killed, resume=True, **options)


def test_settings_objects_and_keywords_give_the_same_student(tmp_path):
    """A StudentSettings passed directly trains the student the keywords train; a GenerationSettings read from a
    config file (lists) makes the configurations the keywords make; a misspelt keyword is an error naming it."""
    from umlip_helpers.distill import DistillSettings, GenerationSettings, StudentSettings

    cell = bulk("Cu", "fcc", a=3.61, cubic=True)
    by_keywords = generate_configurations(cell, None, rattle_amplitudes_angstrom=(0.05,), rattles_per_amplitude=3,
                                          strains=(0.01,), seed=4, progress=False)
    generation = GenerationSettings(rattle_amplitudes_angstrom=[0.05], rattles_per_amplitude=3, strains=[0.01])
    by_settings = generate_configurations(cell, None, settings=generation, seed=4, progress=False)
    assert [a.positions.tolist() for a in by_keywords] == [a.positions.tolist() for a in by_settings]
    data = label_with(EMT(), by_settings, progress=False)

    options = dict(architecture="mace", epochs=1, batch_size=2, device="cpu", seed=2)
    runs = [train_student(data, tmp_path / "keywords", progress=False, **options),
            train_student(data, tmp_path / "settings", settings=StudentSettings(**options), progress=False)]
    energies = []
    for run in runs:
        atoms = data[0].atoms.copy()
        atoms.calc = load_calculator(run.path, device="cpu")
        energies.append(atoms.get_potential_energy())
    assert energies[0] == energies[1] and runs[0].log[0]["train_forces_rmse"] == runs[1].log[0]["train_forces_rmse"]

    settings = DistillSettings.from_options(epochs=3, generation={"md_steps": 4}, speed_steps=2)
    assert (settings.student.epochs, settings.generation.md_steps, settings.speed_steps) == (3, 4, 2)
    with pytest.raises(TypeError, match="epochz"):
        train_student(data, tmp_path / "typo", epochz=3)
    with pytest.raises(TypeError, match="epochz"):
        distill(EMT(), cell, tmp_path / "typo", epochz=3)
