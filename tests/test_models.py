"""The model registry and loader: real shipped weights, tiny real models, and clear errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase.build import bulk
from scipy.spatial.transform import Rotation

from umlip_helpers.errors import ModelUnavailable, UnknownModel, UnsupportedElements
from umlip_helpers.io import model_info
from umlip_helpers.models import (MODELS, check_elements, get_family, load_calculator, model_status,
                                  resolve_device)
from umlip_helpers.models.loading import FAMILY_NAMES


def test_registry_metadata_is_complete():
    assert {"sevennet-0", "sevennet-l3i5", "sevennet-mf-0", "chgnet-0.3.0", "chgnet-r2scan", "mace-mp-0-medium",
            "uma-s-1p1", "pet-mad", "allegro-fm", "emt"} <= set(MODELS)
    for spec in MODELS.values():
        assert spec.family in FAMILY_NAMES
        assert spec.doi.startswith("10.") and spec.licence and spec.citation and spec.training_data
        assert spec.ships_with_package or spec.how_to_get


@pytest.mark.parametrize("name", ["sevennet-0", "sevennet-l3i5", "sevennet-mf-0", "chgnet-0.3.0", "chgnet-r2scan"])
def test_shipped_weights_are_available_offline(name):
    available, where = model_status(MODELS[name])
    assert available, where


def test_unknown_model_name():
    with pytest.raises(UnknownModel, match="unknown model 'sevennet-99'.*known models are"):
        load_calculator("sevennet-99")


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_calculator(tmp_path / "absent.model")


@pytest.mark.parametrize("name", ["mace-mp-0-medium", "uma-s-1p1", "pet-mad", "allegro-fm"])
def test_absent_weights_say_which_file_and_how(name, tmp_path, monkeypatch):
    monkeypatch.setenv("UMLIP_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = MODELS[name]
    start = time.perf_counter()
    with pytest.raises(ModelUnavailable) as info:
        load_calculator(name)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert spec.weights_file in message and str(tmp_path) in message and "How to get it" in message


def test_user_checkpoint_is_found_in_model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("UMLIP_MODEL_DIR", str(tmp_path))
    (tmp_path / MODELS["mace-mp-0-small"].weights_file).write_bytes(b"")
    available, where = model_status(MODELS["mace-mp-0-small"])
    assert available and where.startswith(str(tmp_path))


def test_device_resolution():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch sees no CUDA GPU"):
            resolve_device("cuda")


def test_element_outside_the_model(emt):
    ymn = bulk("Y", "hcp", a=3.65, c=5.73)
    with pytest.raises(UnsupportedElements, match="'emt' does not cover element\\(s\\) Y"):
        check_elements(ymn, emt)
    check_elements(bulk("Ni"), emt)


def _random_rotation(seed=3):
    return Rotation.random(random_state=seed).as_matrix()


def assert_rotation_equivariant(calc, atoms, atol=1e-5):
    """Energy invariant and forces rotating with the structure, to ``atol``."""
    atoms = atoms.copy()
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces().copy()
    rotation = _random_rotation()
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    turned.positions = atoms.positions @ rotation.T
    turned.calc = calc
    assert turned.get_potential_energy() == pytest.approx(energy, abs=atol)
    np.testing.assert_allclose(turned.get_forces(), forces @ rotation.T, atol=atol)
    assert np.abs(forces).max() > 1e-4, "a test structure with zero forces proves nothing"


@pytest.fixture(scope="module")
def rattled_nicu():
    atoms = bulk("Ni", "fcc", a=3.55, cubic=True) * (2, 1, 1)
    atoms.symbols[[1, 4]] = "Cu"
    atoms.rattle(0.08, seed=2)
    return atoms


@pytest.mark.parametrize("family", ["sevennet", "chgnet"])
def test_tiny_model_loads_by_path_and_is_equivariant(family, tmp_path, rattled_nicu):
    path = get_family(family).build(tmp_path / f"tiny_{family}.pth", ["Ni", "Cu"], seed=1)
    calc = load_calculator(path)  # family detected from the file
    assert model_info(calc).family == family and len(model_info(calc).sha256) == 64
    assert_rotation_equivariant(calc, rattled_nicu)


def test_tiny_sevennet_rejects_elements_it_lacks(tmp_path, rattled_nicu):
    calc = load_calculator(get_family("sevennet").build(tmp_path / "t.pth", ["Ni", "Cu"]))
    with pytest.raises(UnsupportedElements, match="does not cover element\\(s\\) Al"):
        check_elements(bulk("Al"), calc)


@pytest.mark.slow
def test_sevennet0_and_chgnet_on_real_ymno3_frames(sevennet0, chgnet, ymno3_frames):
    """Force errors on 2 real frames, in the range the 20-frame benchmark gives (0.074 and 0.102 eV/Å)."""
    from umlip_helpers.metrics import evaluate

    two = ymno3_frames[:2]
    for calc, low, high in ((sevennet0, 0.04, 0.11), (chgnet, 0.06, 0.15)):
        result = evaluate(calc, two, progress=False)
        assert low < result.force_mae_ev_per_angstrom < high
        assert result.force_cosine_mean > 0.6
        assert result.provenance["model"]["sha256"] == model_info(calc).sha256
    assert_rotation_equivariant(sevennet0, two[0].atoms, atol=2e-4)  # float32 on 120 atoms


def test_family_calls_take_a_lora_fine_tuned_calculator(tmp_path, rattled_nicu):
    """A fine-tuned model (a ShiftedCalculator around the family's own) goes straight into the family's calls; the
    module they hand back is the one the fine-tuned calculator evaluates."""
    import torch
    from ase.calculators.emt import EMT

    from umlip_helpers.distill import label_with
    from umlip_helpers.finetune import finetune
    from umlip_helpers.models import ShiftedCalculator, family_of

    tiny = load_calculator(get_family("sevennet").build(tmp_path / "tiny.pth", ["Ni", "Cu"], seed=1))
    second = rattled_nicu.copy()
    second.rattle(0.05, seed=5)
    frames = label_with(EMT(), [rattled_nicu, second], progress=False)
    finetune(tiny, frames[:1], frames[1:], strategy="lora", out=tmp_path / "ft", epochs=1, batch_size=1,
             progress=False)
    ft = load_calculator(tmp_path / "ft")
    assert isinstance(ft, ShiftedCalculator)

    family = family_of(ft)
    module = family.torch_module(ft)
    assert not any("lora_" in name for name, _ in module.named_parameters())  # merged on loading
    assert family.supported_elements(ft) == {"Ni", "Cu"}
    with pytest.raises(ValueError, match="one energy shift for every species"):  # the tiny model's scalar shift
        family.energy_references(ft)
    assert family.readout(ft).width > 0

    atoms = rattled_nicu.copy()
    atoms.calc = ft
    before = atoms.get_potential_energy()
    with torch.no_grad():
        next(p for p in module.parameters() if p.is_floating_point()).mul_(1.5)
    ft.reset()
    assert abs(atoms.get_potential_energy() - before) > 1e-6
