"""The same trainer on other families' tiny random models: MACE, NequIP and UMA (fairchem) with LoRA that starts
at the base model, stays equivariant merged and unmerged, and round-trips through disk; Allegro (head and full
only: no linear LoRA can reach); PET (metatrain checkpoints; not equivariant by construction)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from umlip_helpers.finetune import LossWeights, finetune  # noqa: E402
from umlip_helpers.models import adapter_for  # noqa: E402
from umlip_helpers.finetune.strategies import apply_strategy  # noqa: E402
from umlip_helpers.models import get_family, load_calculator  # noqa: E402

#: family -> (module it needs, build options, load options); UMA in float64 so that equivariance holds to 1e-5
FAMILIES = {"mace": ("mace", {}, {}), "nequip": ("nequip", {"architecture": "nequip"}, {}),
            "fairchem": ("fairchem.core", {}, {"dtype": "float64"})}


@pytest.fixture(scope="module", params=list(FAMILIES))
def tiny_model(request, tmp_path_factory):
    """(model file, load options) of a tiny random model of an equivariant family."""
    package, build_options, load_options = FAMILIES[request.param]
    pytest.importorskip(package)
    path = get_family(request.param).build(tmp_path_factory.mktemp(request.param) / "tiny", ["Y", "Mn", "O"],
                                                **build_options)
    return path, load_options


@pytest.fixture(scope="module")
def tiny_uma(tmp_path_factory):
    """(model file, load options) of a tiny random UMA (eSCN-MD)."""
    pytest.importorskip("fairchem.core")
    return get_family("fairchem").build(tmp_path_factory.mktemp("uma") / "tiny", ["Y", "Mn", "O"]), \
        FAMILIES["fairchem"][2]


@pytest.fixture(scope="module")
def tiny_pet(tmp_path_factory):
    """A tiny random PET as a metatrain checkpoint (the trainable form)."""
    pytest.importorskip("metatrain")
    return get_family("upet").build(tmp_path_factory.mktemp("upet") / "tiny", ["Y", "Mn", "O"],
                                         form="checkpoint"), {}


def predict(calc, atoms):
    calc.reset()
    atoms = atoms.copy()
    atoms.calc = calc
    return atoms.get_potential_energy(), atoms.get_forces()


def assert_starts_at_the_base(calc, atoms, base_e, base_f):
    """Zero B: the base model's numbers, up to round-off (UMA's SO(2) linears take another GEMM path when
    wrapped: 2e-15 eV apart)."""
    e, f = predict(calc, atoms)
    assert abs(e - base_e) <= 1e-12 * max(1.0, abs(base_e))
    np.testing.assert_allclose(f, base_f, rtol=0, atol=1e-12)


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


def check_lora_start_and_merge(calc, atoms, equivariant: bool, tolerance: float) -> None:
    """LoRA starts at the base; random adapters change what the calculator returns; merging keeps it (and, for an
    equivariant family, the rotation equivariance before and after the merge)."""
    base_e, base_f = predict(calc, atoms)
    adapter = adapter_for(calc)
    peft_model = apply_strategy(adapter.module(calc), adapter, "lora")
    assert_starts_at_the_base(calc, atoms, base_e, base_f)
    with torch.no_grad():
        for name, param in adapter.module(calc).named_parameters():
            if "lora_B" in name:
                param.copy_(0.3 * torch.randn_like(param))
    unmerged = predict(calc, atoms)
    assert np.abs(unmerged[1] - base_f).max() > 1e-4
    if equivariant:
        assert_equivariant(calc, atoms)
    peft_model.merge_and_unload()
    merged = predict(calc, atoms)
    assert abs(merged[0] - unmerged[0]) < tolerance * max(1.0, abs(unmerged[0]))
    np.testing.assert_allclose(merged[1], unmerged[1], atol=tolerance)
    if equivariant:
        assert_equivariant(calc, atoms)


def test_lora_on_a_tiny_model_starts_at_the_base_and_stays_equivariant(tiny_model, ymno3_frames):
    path, load_options = tiny_model
    check_lora_start_and_merge(load_calculator(path, device="cpu", **load_options), ymno3_frames[0].atoms,
                               equivariant=True, tolerance=1e-5)


def test_finetuned_tiny_model_loads_by_path(tiny_model, ymno3_frames, tmp_path):
    path, load_options = tiny_model
    calc = load_calculator(path, device="cpu", **load_options)
    report = finetune(calc, ymno3_frames[:2], None, strategy="lora", out=tmp_path / "ft", epochs=2, batch_size=1,
                      lr=0.02, progress=False)
    assert report.log[-1]["train_forces_rmse"] < report.log[0]["train_forces_rmse"]
    loaded = load_calculator(tmp_path / "ft", device="cpu", **load_options)
    np.testing.assert_allclose(predict(loaded, ymno3_frames[2].atoms)[1], predict(calc, ymno3_frames[2].atoms)[1],
                               atol=1e-6)
    assert_equivariant(loaded, ymno3_frames[2].atoms)


def test_full_finetuning_trains_a_model_its_calculator_froze(tiny_model, ymno3_frames, tmp_path):
    """MACE's and fairchem's calculators freeze every weight for inference; strategy="full" trains them all."""
    path, load_options = tiny_model
    calc = load_calculator(path, device="cpu", **load_options)
    module = adapter_for(calc).module(calc)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    report = finetune(calc, ymno3_frames[:2], None, strategy="full", out=tmp_path / "full", epochs=1, batch_size=1,
                      lr=0.01, progress=False)
    assert report.trainable_fraction > 0.9
    changed = [name for name, p in module.named_parameters() if not torch.equal(p, before[name])]
    assert len(changed) > 0.9 * len(before)
    loaded = load_calculator(tmp_path / "full", device="cpu", **load_options)
    np.testing.assert_allclose(predict(loaded, ymno3_frames[2].atoms)[1], predict(calc, ymno3_frames[2].atoms)[1],
                               atol=1e-6)


@pytest.mark.parametrize("family, package, build_options", [
    ("mace", "mace", {}), ("nequip", "nequip", {"architecture": "nequip"}),
    ("nequip", "allegro", {"architecture": "allegro"}), ("fairchem", "fairchem.core", {}),
    ("upet", "metatrain", {"form": "checkpoint"})],
    ids=["mace", "nequip", "allegro", "uma", "pet"])
def test_batched_forward_matches_a_forward_per_frame(family, package, build_options, tmp_path,
                                                     assert_batched_forward_matches_per_frame):
    pytest.importorskip(package)
    path = get_family(family).build(tmp_path / "tiny", ["Y", "Mn", "O"], **build_options)
    assert_batched_forward_matches_per_frame(load_calculator(path, device="cpu"))


def test_allegro_takes_head_and_full_but_refuses_lora_clearly(ymno3_frames, tmp_path):
    pytest.importorskip("allegro")
    path = get_family("nequip").build(tmp_path / "allegro", ["Y", "Mn", "O"], architecture="allegro")
    calc = load_calculator(path, device="cpu")
    with pytest.raises(ValueError, match="cannot take LoRA adapters"):
        finetune(calc, ymno3_frames[:1], None, strategy="lora", out=tmp_path / "lora", progress=False)
    report = finetune(load_calculator(path, device="cpu"), ymno3_frames[:1], None, strategy="head",
                      out=tmp_path / "head", epochs=1, progress=False)
    assert 0 < report.trainable_fraction < 1
    loaded = load_calculator(tmp_path / "head", device="cpu")
    assert np.isfinite(predict(loaded, ymno3_frames[1].atoms)[1]).all()


@pytest.mark.parametrize("model", ["tiny_uma", "tiny_pet"])
def test_adapter_predicts_what_the_calculator_reports(model, ymno3_frames, request):
    """The trainer's differentiable forward gives the ASE calculator's energy, forces and stress (ASE sign, Voigt)."""
    path, load_options = request.getfixturevalue(model)
    calc = load_calculator(path, device="cpu", **load_options)
    atoms = ymno3_frames[0].atoms.copy()
    atoms.calc = calc
    adapter = adapter_for(calc)
    energy, forces, stress = adapter.predict(adapter.module(calc), adapter.prepare(calc, atoms), training=True)
    assert forces.requires_grad and stress.requires_grad  # the training graph is kept
    assert float(energy.detach()) == pytest.approx(atoms.get_potential_energy(), abs=1e-5)
    np.testing.assert_allclose(forces.detach().numpy(), atoms.get_forces(), atol=1e-5)
    np.testing.assert_allclose(stress.detach().numpy(), atoms.get_stress(), atol=1e-7)  # eV/A^3
    assert np.abs(atoms.get_stress()[3:]).max() > 1e-7  # the off-diagonal order is tested too


def test_pet_lora_starts_at_the_base_and_merges_exactly(tiny_pet, ymno3_frames):
    """PET is not rotation-equivariant by construction (it learns the symmetry from rotated data), so there is
    no equivariance check; the calculator must evaluate the adapted module, unmerged and merged."""
    check_lora_start_and_merge(load_calculator(tiny_pet[0], device="cpu"), ymno3_frames[0].atoms, equivariant=False,
                               tolerance=1e-6)


def test_pet_finetunes_and_loads_back_by_path(tiny_pet, ymno3_frames, tmp_path):
    calc = load_calculator(tiny_pet[0], device="cpu")
    base_f = predict(calc, ymno3_frames[2].atoms)[1]
    report = finetune(calc, ymno3_frames[:2], None, strategy="lora", out=tmp_path / "ft", epochs=2, batch_size=1,
                      lr=0.02, progress=False)
    assert report.log[-1]["train_loss"] < report.log[0]["train_loss"]
    tuned = predict(calc, ymno3_frames[2].atoms)
    assert np.abs(tuned[1] - base_f).max() > 1e-4
    # the module metatomic's calculator runs no longer collects weight gradients at inference
    assert not any(p.requires_grad for p in calc._model.module.parameters())
    loaded = load_calculator(tmp_path / "ft", device="cpu")
    np.testing.assert_allclose(predict(loaded, ymno3_frames[2].atoms)[1], tuned[1], atol=1e-6)
    assert not any(p.requires_grad for p in loaded.inner._model.module.parameters())  # loaded frozen too


#: per model: learning rate and loss weights for two epochs of head training on random weights. The tiny PET's
#: readout moves its energy zero by ~0.7 eV/atom at once (the base alignment is fixed during training), so its
#: head is judged on forces and stress; the tiny UMA's forces are ~0 and hardly depend on its readout.
HEAD_RUNS = {"tiny_uma": (3e-3, LossWeights()), "tiny_pet": (1e-2, LossWeights(energy_per_atom_mev=0.0))}


@pytest.mark.parametrize("model", list(HEAD_RUNS))
def test_head_strategy_trains_only_the_readout(model, ymno3_frames, tmp_path, request):
    path, load_options = request.getfixturevalue(model)
    lr, weights = HEAD_RUNS[model]
    calc = load_calculator(path, device="cpu", **load_options)
    before = {n: p.detach().clone() for n, p in adapter_for(calc).module(calc).named_parameters()}
    report = finetune(calc, ymno3_frames[:2], None, strategy="head", out=tmp_path / "head", epochs=2, batch_size=1,
                      lr=lr, loss_weights=weights, progress=False)
    assert 0 < report.trainable_fraction < 0.5
    assert report.log[-1]["train_loss"] < 0.9 * report.log[0]["train_loss"]
    heads = adapter_for(calc).head_modules
    changed = {n for n, p in adapter_for(calc).module(calc).named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(set(n.split(".")) & set(heads) for n in changed)
    loaded = load_calculator(tmp_path / "head", device="cpu", **load_options)
    np.testing.assert_allclose(predict(loaded, ymno3_frames[2].atoms)[1], predict(calc, ymno3_frames[2].atoms)[1],
                               atol=1e-6)


def test_exported_pet_is_refused_with_a_pointer_to_the_checkpoint(ymno3_frames, tmp_path):
    pytest.importorskip("metatrain")
    path = get_family("upet").build(tmp_path / "tiny", ["Y", "Mn", "O"], form="exported")
    with pytest.raises(ValueError, match=r"\.ckpt"):
        finetune(load_calculator(path, device="cpu"), ymno3_frames[:1], None, strategy="lora", out=tmp_path / "ft",
                 progress=False)


def _default_size_models():
    """Random models at the sizes their packages default to (the released UMA and PET-MAD configurations do not
    ship with the packages): an eSCN-MD and an eSCN-MD with 8 MOLE experts (fairchem), and a PET (metatrain)."""
    models = {}
    if _importable("fairchem.core"):
        from fairchem.core.models.base import HydraModel

        for label, backbone in (("fairchem", "escn_md.eSCNMDBackbone"),
                                ("fairchem-mole", "escn_moe.eSCNMDMoeBackbone")):
            models[label] = HydraModel(
                backbone={"model": f"fairchem.core.models.uma.{backbone}", "otf_graph": True, "direct_forces": False,
                          "regress_stress": True, "dataset_mapping": {"omat": "omat"}},
                heads={"efs": {"module": "fairchem.core.models.uma.escn_md.MLP_EFS_Head", "prefix": "omat",
                               "wrap_property": True}},
                pass_through_head_outputs=True)
    if _importable("metatrain"):
        from metatrain.pet import PET
        from metatrain.utils.architectures import get_default_hypers
        from metatrain.utils.data import DatasetInfo
        from metatrain.utils.data.target_info import get_energy_target_info

        energy = get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"}, add_position_gradients=True,
                                        add_strain_gradients=True)
        models["upet"] = PET(get_default_hypers("pet")["model"],
                             DatasetInfo(length_unit="Angstrom", atomic_types=list(range(1, 87)),
                                         targets={"energy": energy}))
    return models


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module.split(".")[0]) is not None


def test_lora_trains_at_most_5_percent_of_default_size_uma_and_pet():
    from umlip_helpers.finetune.strategies import parameter_counts

    models = _default_size_models()
    if not models:
        pytest.skip("neither fairchem nor metatrain is installed")
    fractions = {}
    for label, module in models.items():
        apply_strategy(module, get_family(label.split("-")[0]).adapter, "lora")
        trainable, total = parameter_counts(module)
        fractions[label] = trainable / total
        # the base weights are frozen: only adapters train
        assert all("lora_" in n for n, p in module.named_parameters() if p.requires_grad)
    assert all(0 < f <= 0.05 for f in fractions.values()), fractions
    if "fairchem-mole" in fractions:  # MOLE layers are not nn.Linear: LoRA reaches far fewer weights there
        assert fractions["fairchem-mole"] < fractions["fairchem"] / 5
