"""What the trainer needs from each model family: the torch module behind a calculator, a differentiable
per-frame forward returning energy, forces and stress, and the names of its readout ("head") and LoRA targets.

Units of :meth:`FamilyAdapter.predict`: energy eV, forces eV/Å, stress eV/Å^3 in ASE's sign and Voigt order
(xx, yy, zz, yz, xz, xy) -- the same numbers the family's ASE calculator reports.
"""

from __future__ import annotations

import abc
import importlib
from typing import Any

import torch
from ase import Atoms

from ..models import get_family


class FamilyAdapter(abc.ABC):
    family: str
    #: regex (peft ``target_modules``) of the linears LoRA adapts
    lora_targets: str
    #: default LoRA rank for this family (chosen to keep the trainable fraction at or below ~5%)
    lora_rank: int = 8

    @property
    def head_modules(self) -> tuple[str, ...]:
        """Names of the readout modules trained by strategy="head" (the family's ``HEAD_MODULES``)."""
        heads = importlib.import_module(f"umlip_helpers.models.{self.family}").HEAD_MODULES
        return tuple(name.rsplit(".", 1)[-1] for name in heads)

    def module(self, calc: Any) -> torch.nn.Module:
        """The torch module the calculator evaluates (modified in place by training)."""
        return get_family(self.family).torch_module(calc)

    @abc.abstractmethod
    def prepare(self, calc: Any, atoms: Atoms) -> Any:
        """Whatever the forward needs for ``atoms`` that does not depend on the weights (graphs, neighbour lists)."""

    @abc.abstractmethod
    def predict(self, module: torch.nn.Module, sample: Any, training: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(energy (), forces (n, 3), stress (6,)) with the autograd graph kept when ``training``."""


class SevenNetAdapter(FamilyAdapter):
    family = "sevennet"
    # the node-update linears of every interaction and the first readout linear: 3.4% of SevenNet-0 at r=4
    # (3.7% with lora_extra below)
    lora_targets = r".*(self_interaction_[12]|reduce_input_to_hidden)\.linear"
    lora_rank = 4
    #: trained in full next to the adapters (0.3%): the first layer of each radial network, from the distance
    #: basis. The convolution weights come from these networks (LoRA cannot reach them), and without them LoRA
    #: barely moves the stress (a 6-9 GPa pressure offset on YMnO3)
    lora_extra = r".*convolution\.weight_nn\.layer0\.weight"

    def module(self, calc):
        from .e3nn_fx import fuse_block_slices

        module = super().module(calc)
        fuse_block_slices(module)  # same numbers, 1.3-1.4x faster training steps (see e3nn_fx)
        return module

    def prepare(self, calc, atoms):
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        return {"graph": unlabeled_atoms_to_graph(atoms, calc.cutoff, with_shift=False),
                "modal": getattr(calc, "modal", None), "device": calc.device}

    def predict(self, module, sample, training):
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData

        data = AtomGraphData.from_numpy_dict(sample["graph"])  # the model writes into its input: rebuild it
        if sample["modal"]:
            data[KEY.DATA_MODALITY] = sample["modal"]
        data.to(sample["device"])
        module.train(training)  # SevenNet keeps the force graph (create_graph) only in training mode
        out = module(data)
        stress = -out[KEY.PRED_STRESS][[0, 1, 2, 4, 5, 3]]
        return out[KEY.PRED_TOTAL_ENERGY].reshape(()), out[KEY.PRED_FORCE], stress


class CHGNetAdapter(FamilyAdapter):
    family = "chgnet"
    # the atom-update MLPs of every atom conv layer, the bond-update outputs and the readout MLP:
    # 4.3% of CHGNet 0.3.0 at r=4 (r=8 on all linears would be 15.7%)
    lora_targets = r".*(atom_conv_layers\.\d+\.(twoBody_atom\.mlp_(core|gate)|mlp_out)|bond_conv_layers\.\d+\.mlp_out|mlp)\.layers\.\d+"
    lora_rank = 4


    def prepare(self, calc, atoms):
        from pymatgen.io.ase import AseAtomsAdaptor

        return calc.model.graph_converter(AseAtomsAdaptor.get_structure(atoms)).to(calc.device)

    def predict(self, module, sample, training):
        from ase.units import GPa

        module.train(training)
        out = module([sample], task="efs")
        n_atoms = sample.atomic_number.shape[0]
        energy = out["e"][0] * n_atoms if module.is_intensive else out["e"][0]
        s = out["s"][0] * GPa
        stress = torch.stack([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        return energy, out["f"][0], stress


class MACEAdapter(FamilyAdapter):
    family = "mace"
    # every o3.Linear of the interactions, the product basis and the readouts
    lora_targets = r"(interactions\.\d+\.(linear_up|linear)|products\.\d+\.linear|readouts\.\d+\.linear(_1|_2)?)"
    lora_rank = 4


    def prepare(self, calc, atoms):
        return {"batch": calc._atoms_to_batch(atoms), "dtype": next(calc.models[0].parameters()).dtype,
                "energy_to_ev": calc.energy_units_to_eV, "length_to_angstrom": calc.length_units_to_A}

    def predict(self, module, sample, training):
        batch = sample["batch"].clone()
        inputs = {k: v.to(sample["dtype"]) if torch.is_tensor(v) and v.is_floating_point() else v
                  for k, v in batch.to_dict().items()}
        module.train(training)
        out = module(inputs, compute_stress=True, training=training)  # training keeps the force graph
        e_unit, l_unit = sample["energy_to_ev"], sample["length_to_angstrom"]
        s = out["stress"][0] * e_unit / l_unit ** 3
        stress = torch.stack([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        n_atoms = int(batch["ptr"][1])
        return out["energy"][0] * e_unit, out["forces"][:n_atoms] * e_unit / l_unit, stress


class NequIPAdapter(FamilyAdapter):
    """NequIP and Allegro packages (eager ``.nequip.zip``; compiled models are not trainable)."""

    family = "nequip"
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
        stress = torch.stack([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        return out["total_energy"].reshape(()) * e_unit, out["forces"] * e_unit / l_unit, stress


ADAPTERS: dict[str, FamilyAdapter] = {a.family: a for a in (SevenNetAdapter(), CHGNetAdapter(), MACEAdapter(),
                                                            NequIPAdapter())}


def adapter_for(calc: Any) -> FamilyAdapter:
    family = getattr(getattr(calc, "umlip_family", None), "name", None) or _guess_family(calc)
    if family not in ADAPTERS:
        raise NotImplementedError(
            f"fine-tuning is not implemented for the {family!r} family yet; available: {', '.join(ADAPTERS)}"
        )
    return ADAPTERS[family]


def _guess_family(calc: Any) -> str:
    module = type(calc).__module__
    for family in ("sevenn", "chgnet", "mace", "fairchem", "nequip", "metatomic", "upet"):
        if module.startswith(family):
            return {"sevenn": "sevennet", "metatomic": "upet"}.get(family, family)
    return type(calc).__name__

