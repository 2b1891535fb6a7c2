"""NequIP and Allegro (nequip, nequip-allegro): packaged ``.nequip.zip`` models and compiled models."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .base import E3nnFamilyAdapter, ModelFamily, Size, preserve_global_state, voigt

if TYPE_CHECKING:
    import torch

Architecture = Literal["nequip", "allegro"]
PACKAGE_SUFFIX = ".nequip.zip"
#: nequip-compile outputs: AOTInductor (``--target ase``) and TorchScript
COMPILED_SUFFIXES = (".nequip.pt2", ".nequip.pth")


def _float64_calculator_class():
    """nequip computes under its global float64 default (``set_global_state``); keep that default inside
    its calls only, so it does not leak into other models loaded in the same session."""
    import torch
    from nequip.integrations.ase import NequIPCalculator

    class Float64NequIPCalculator(NequIPCalculator):
        def calculate(self, *args, **kwargs):
            with preserve_global_state():
                torch.set_default_dtype(torch.float64)
                return super().calculate(*args, **kwargs)

    return Float64NequIPCalculator


def _tiny_model(architecture: Architecture, type_names: list[str], seed: int):
    common = dict(seed=seed, model_dtype="float64", r_max=4.0, type_names=type_names, avg_num_neighbors=12.0)
    if architecture == "nequip":
        from nequip.model import NequIPGNNModel

        return NequIPGNNModel(num_layers=2, l_max=1, num_features=4, radial_mlp_width=8, **common)
    from allegro.model import AllegroModel

    embed = {"_target_": "allegro.nn.TwoBodyBesselScalarEmbed", "num_bessels": 4}
    return AllegroModel(l_max=1, num_layers=1, num_scalar_features=4, num_tensor_features=2,
                        radial_chemical_embed=embed, allegro_mlp_hidden_layers_width=8,
                        readout_mlp_hidden_layers_width=8, **common)


class NequIPAdapter(E3nnFamilyAdapter):
    """NequIP and Allegro packages (eager ``.nequip.zip``; compiled models are not trainable)."""

    family = "nequip"
    heads = ("model.func.per_atom_energy_readout", "model.func.edge_readout",
                "model.func.per_type_energy_scale_shift")
    # NequIP's e3nn linears around each convolution (Allegro has none: its ScalarLinearLayers are not nn.Linear)
    lora_targets = r".*convnet\.conv\.linear_[12]"
    lora_rank = 4

    def prepare(self, calc, atoms):
        return {"data": calc.atoms_to_data(atoms), "energy_to_ev": calc.energy_units_to_eV,
                "length_to_angstrom": calc.length_units_to_A}

    def predict(self, module, sample, training):
        module.train(training)  # NequIP keeps the force graph (create_graph) only in training mode
        out = module(dict(sample["data"]))  # the model adds keys to its input: give it a copy
        e_unit, l_unit = sample["energy_to_ev"], sample["length_to_angstrom"]
        s = out["stress"].reshape(3, 3) * e_unit / l_unit ** 3
        stress = voigt(s)
        return out["total_energy"].reshape(()) * e_unit, out["forces"] * e_unit / l_unit, stress

    def predict_batch(self, module, samples, training):
        import torch
        from nequip.data import AtomicDataDict

        if len(samples) == 1:
            return [self.predict(module, samples[0], training)]
        data = AtomicDataDict.batched_from_list([dict(sample["data"]) for sample in samples])
        module.train(training)
        out = module(data)
        e_unit, l_unit = samples[0]["energy_to_ev"], samples[0]["length_to_angstrom"]
        forces = torch.split(out["forces"] * e_unit / l_unit, data["num_atoms"].tolist())
        stress = [voigt(s.reshape(3, 3) * e_unit / l_unit ** 3) for s in out["stress"]]
        return list(zip(out["total_energy"].reshape(-1) * e_unit, forces, stress))


class NequIPFamily(ModelFamily):
    name = "nequip"
    package = "nequip"
    adapter = NequIPAdapter()

    def load(self, checkpoint: str | Path | None, device: str, **options: Any):
        """A ``NequIPCalculator`` for a packaged model (``.nequip.zip``, eager mode) or a compiled one
        (``.nequip.pt2`` from ``nequip-compile --mode aotinductor --target ase``, or ``.nequip.pth``).

        Options (``chemical_species_to_atom_type_map``, ``neighborlist_backend``, ...) go to nequip's loader.
        """
        if checkpoint is None:
            raise ValueError("nequip: a packaged (.nequip.zip) or compiled model file is required")
        calculator_class = _float64_calculator_class()
        text = str(checkpoint)
        with preserve_global_state():
            if text.endswith(COMPILED_SUFFIXES):
                return calculator_class.from_compiled_model(text, device=device, **options)
            # nequip exposes eager loading of packages only through this (underscored) constructor
            return calculator_class._from_saved_model(text, device=device, **options)

    def build(self, path: str | Path, elements: Sequence[str], seed: int = 0, *, size: Size = "tiny",
                   architecture: Architecture = "nequip") -> Path:
        """Write a tiny float64 NequIP (2 layers, l_max=1, 4 channels) or Allegro (1 layer) model as a
        ``.nequip.zip`` package laid out as ``nequip-package build`` lays it out (eager model only)."""
        self.check_size(size, "tiny")
        import torch
        import yaml
        from ase.build import bulk
        from nequip.data import compute_neighborlist_, from_ase
        from nequip.model.saved_models.package import _suppress_package_importer_exporter_warnings
        from nequip.scripts._package_utils import _EXTERNAL_MODULES, _INTERNAL_MODULES, _MOCK_MODULES
        from nequip.scripts.package import _CURRENT_NEQUIP_PACKAGE_VERSION
        from nequip.train.lightning import _SOLE_MODEL_KEY
        from nequip.utils.global_state import set_global_state
        from nequip.utils.versions.package_versions import get_current_code_versions

        from ..io import atomic_write_bytes

        with preserve_global_state():
            set_global_state()
            model = _tiny_model(architecture, sorted(set(elements)), seed)
        type_names = sorted(set(elements))
        example = bulk(type_names[0], "fcc", a=3.6, cubic=True)
        example.symbols[1:len(type_names)] = type_names[1:]
        example_data = compute_neighborlist_(from_ase(example), r_max=4.0)
        metadata = {
            "versions": get_current_code_versions(verbose=False),
            "external_modules": {},
            "package_version_id": _CURRENT_NEQUIP_PACKAGE_VERSION,
            "available_models": ["eager"],
            "atom_types": dict(enumerate(type_names)),
        }
        buffer = io.BytesIO()
        with _suppress_package_importer_exporter_warnings():
            with torch.package.PackageExporter(buffer) as exporter:
                exporter.mock([f"{name}.**" for name in _MOCK_MODULES])
                exporter.extern([f"{name}.**" for name in _EXTERNAL_MODULES])
                exporter.intern([f"{name}.**" for name in _INTERNAL_MODULES])
                exporter.save_pickle("model", "example_data.pkl", example_data, dependencies=True)
                exporter.save_text("model", "config.yaml",
                                   f"# tiny random {architecture} model built by umlip_helpers (seed {seed})\n")
                exporter.save_text("model", "package_metadata.txt", yaml.dump(metadata, default_flow_style=False))
                exporter.save_pickle("model", "eager_model.pkl", torch.nn.ModuleDict({_SOLE_MODEL_KEY: model}),
                                     dependencies=True)
        path = Path(path)
        if not path.name.endswith(PACKAGE_SUFFIX):
            path = path.with_name(path.name.split(".")[0] + PACKAGE_SUFFIX)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def recognises(self, path: Path) -> bool:
        return path.is_file() and path.name.endswith((PACKAGE_SUFFIX, *COMPILED_SUFFIXES))

    def _supported_elements(self, calc) -> set[str]:
        """The chemical species the calculator maps onto the model's atom types."""
        from ase.data import chemical_symbols
        from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper

        mapper = next(t for t in calc.transforms if isinstance(t, ChemicalSpeciesToAtomTypeMapper))
        return {chemical_symbols[z] for z in (mapper.lookup_table >= 0).nonzero().flatten().tolist()}

    def _torch_module(self, calc) -> "torch.nn.Module":
        """The ``GraphModel`` behind the calculator (eager packages only; compiled models are not trainable).

        Head for head-only fine-tuning: ``model.func.per_atom_energy_readout`` (NequIP) or
        ``model.func.edge_readout`` (Allegro), plus ``model.func.per_type_energy_scale_shift``. The rest
        (embeddings, convolutions or Allegro layers) is the body.
        """
        import torch

        model = calc.model
        if not isinstance(model, torch.nn.Module) or next(model.parameters(), None) is None:
            raise TypeError(f"{type(model).__name__}: a compiled NequIP model has no trainable torch module; "
                            "load the packaged .nequip.zip instead")
        return model


FAMILY = NequIPFamily()
