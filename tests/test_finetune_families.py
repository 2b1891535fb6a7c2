"""The same trainer on other families' tiny random models (MACE, NequIP; Allegro below; UMA and PET have no
training adapter yet): LoRA starts at the base model, stays equivariant merged and unmerged, and round-trips through disk."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from umlip_helpers.finetune import finetune  # noqa: E402
from umlip_helpers.finetune.adapters import adapter_for  # noqa: E402
from umlip_helpers.finetune.strategies import apply_strategy  # noqa: E402
from umlip_helpers.models import get_family, load_calculator  # noqa: E402

FAMILIES = {"mace": ("mace", {}), "nequip": ("nequip", {"architecture": "nequip"})}


@pytest.fixture(scope="module", params=list(FAMILIES))
def tiny_model(request, tmp_path_factory):
    package, options = FAMILIES[request.param]
    pytest.importorskip(package)
    return get_family(request.param).build_tiny(tmp_path_factory.mktemp(request.param) / "tiny", ["Y", "Mn", "O"],
                                                **options)


def predict(calc, atoms):
    calc.reset()
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


def rotation(seed: int = 5) -> np.ndarray:
    q = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))[0]
    return q * np.sign(np.linalg.det(q))


def assert_equivariant(calc, atoms):
    r = rotation()
    turned = atoms.copy()
    turned.set_cell(atoms.cell.array @ r.T, scale_atoms=False)
    turned.positions = atoms.positions @ r.T
    (e, f), (e_r, f_r) = predict(calc, atoms), predict(calc, turned)
    assert abs(e_r - e) < 1e-5 * max(1.0, abs(e))
    np.testing.assert_allclose(f_r, f @ r.T, atol=1e-5)


def test_lora_on_a_tiny_model_starts_at_the_base_and_stays_equivariant(tiny_model, ymno3_frames):
    calc = load_calculator(tiny_model, device="cpu")
    atoms = ymno3_frames[0].atoms
    base_e, base_f = predict(calc, atoms)
    adapter = adapter_for(calc)
    peft_model = apply_strategy(adapter.module(calc), adapter, "lora")
    e, f = predict(calc, atoms)
    assert e == base_e and np.array_equal(f, base_f)
    with torch.no_grad():
        for name, param in adapter.module(calc).named_parameters():
            if "lora_B" in name:
                param.copy_(0.3 * torch.randn_like(param))
    unmerged = predict(calc, atoms)
    assert np.abs(unmerged[1] - base_f).max() > 1e-4
    assert_equivariant(calc, atoms)
    peft_model.merge_and_unload()
    merged = predict(calc, atoms)
    assert abs(merged[0] - unmerged[0]) < 1e-5 * max(1.0, abs(unmerged[0]))
    np.testing.assert_allclose(merged[1], unmerged[1], atol=1e-5)
    assert_equivariant(calc, atoms)


def test_finetuned_tiny_model_loads_by_path(tiny_model, ymno3_frames, tmp_path):
    calc = load_calculator(tiny_model, device="cpu")
    report = finetune(calc, ymno3_frames[:2], None, strategy="lora", out=tmp_path / "ft", epochs=2, batch_size=1,
                      lr=0.02, progress=False)
    assert report.log[-1]["train_forces_rmse"] < report.log[0]["train_forces_rmse"]
    loaded = load_calculator(tmp_path / "ft", device="cpu")
    np.testing.assert_allclose(predict(loaded, ymno3_frames[2].atoms)[1], predict(calc, ymno3_frames[2].atoms)[1],
                               atol=1e-6)
    assert_equivariant(loaded, ymno3_frames[2].atoms)


def test_allegro_takes_head_and_full_but_refuses_lora_clearly(ymno3_frames, tmp_path):
    pytest.importorskip("allegro")
    path = get_family("nequip").build_tiny(tmp_path / "allegro", ["Y", "Mn", "O"], architecture="allegro")
    calc = load_calculator(path, device="cpu")
    with pytest.raises(ValueError, match="cannot take LoRA adapters"):
        finetune(calc, ymno3_frames[:1], None, strategy="lora", out=tmp_path / "lora", progress=False)
    report = finetune(load_calculator(path, device="cpu"), ymno3_frames[:1], None, strategy="head",
                      out=tmp_path / "head", epochs=1, progress=False)
    assert 0 < report.trainable_fraction < 1
    loaded = load_calculator(tmp_path / "head", device="cpu")
    assert np.isfinite(predict(loaded, ymno3_frames[1].atoms)[1]).all()
