"""What the trainer needs from each model family: the torch module behind a calculator, a differentiable
per-frame forward returning energy, forces and stress, and the names of its readout ("head") and LoRA targets.

Units of :meth:`FamilyAdapter.predict`: energy eV, forces eV/Å, stress eV/Å^3 in ASE's sign and Voigt order
(xx, yy, zz, yz, xz, xy) -- the same numbers the family's ASE calculator reports.
"""

from __future__ import annotations

import abc
import importlib
import re
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
    #: regex of the parameter names the family keeps frozen in training (normalisation constants)
    frozen_on_purpose: str | None = None

    @property
    def head_modules(self) -> tuple[str, ...]:
        """Names of the readout modules trained by strategy="head" (the family's ``HEAD_MODULES``)."""
        heads = importlib.import_module(f"umlip_helpers.models.{self.family}").HEAD_MODULES
        return tuple(name.rsplit(".", 1)[-1] for name in heads)

    def module(self, calc: Any) -> torch.nn.Module:
        """The torch module the calculator evaluates (modified in place by training)."""
        return get_family(self.family).torch_module(calc)

    def keep_frozen(self, module: torch.nn.Module) -> str | None:
        """Regex of the parameter names of ``module`` that training leaves frozen."""
        return self.frozen_on_purpose

    def make_trainable(self, module: torch.nn.Module) -> None:
        """Inference wrappers (MACE's calculator, fairchem's predictor, metatomic's export) and
        :func:`~umlip_helpers.finetune.io.load_finetuned` set ``requires_grad=False`` on every weight. Undo that,
        except for :meth:`keep_frozen`, when no weight is trainable; a module a strategy was already applied to
        (LoRA, head) is left as it is."""
        if any(p.requires_grad for p in module.parameters()):
            return
        pattern = self.keep_frozen(module)
        for name, param in module.named_parameters():
            param.requires_grad_(pattern is None or re.fullmatch(pattern, name) is None)

    @abc.abstractmethod
    def prepare(self, calc: Any, atoms: Atoms) -> Any:
        """Whatever the forward needs for ``atoms`` that does not depend on the weights (graphs, neighbour lists)."""

    @abc.abstractmethod
    def predict(self, module: torch.nn.Module, sample: Any, training: bool
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(energy (), forces (n, 3), stress (6,)) with the autograd graph kept when ``training``."""

    def predict_batch(self, module: torch.nn.Module, samples: list[Any], training: bool
                      ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """:meth:`predict` of each sample. A family whose model takes several graphs at once overrides this with one
        forward: a per-frame forward of small cells is bound by Python and kernel launches, most of all on a GPU."""
        return [self.predict(module, sample, training) for sample in samples]


class E3nnFamilyAdapter(FamilyAdapter):
    """Families built on e3nn's generated tensor-product and linear code: their module comes with the block slices
    fused (same numbers and gradients; SevenNet-0 trains 1.3-1.4x and a MACE-MP-small-sized MACE 1.25x faster per
    step on CPU, see :mod:`.e3nn_fx`)."""

    def module(self, calc):
        from .e3nn_fx import fuse_block_slices

        module = super().module(calc)
        fuse_block_slices(module)
        return module


class SevenNetAdapter(E3nnFamilyAdapter):
    family = "sevennet"
    frozen_on_purpose = r".*\.denominator"  # each convolution's neighbour-count normalisation
    # the node-update linears of every interaction and the first readout linear: 3.4% of SevenNet-0 at r=4
    # (3.7% with lora_extra below)
    lora_targets = r".*(self_interaction_[12]|reduce_input_to_hidden)\.linear"
    lora_rank = 4
    #: trained in full next to the adapters (0.3%): the first layer of each radial network, from the distance
    #: basis. The convolution weights come from these networks (LoRA cannot reach them), and without them LoRA
    #: barely moves the stress (a 6-9 GPa pressure offset on YMnO3)
    lora_extra = r".*convolution\.weight_nn\.layer0\.weight"

    def prepare(self, calc, atoms):
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        return {"graph": unlabeled_atoms_to_graph(atoms, calc.cutoff, with_shift=False),
                "modal": getattr(calc, "modal", None), "device": calc.device}

    @staticmethod
    def _graph(sample):
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData

        graph = AtomGraphData.from_numpy_dict(sample["graph"])  # the model writes into its input: rebuild it
        if sample["modal"]:
            graph[KEY.DATA_MODALITY] = sample["modal"]
        return graph

    def predict(self, module, sample, training):
        import sevenn._keys as KEY

        data = self._graph(sample)
        data.to(sample["device"])
        module.train(training)  # SevenNet keeps the force graph (create_graph) only in training mode
        out = module(data)
        stress = -out[KEY.PRED_STRESS][[0, 1, 2, 4, 5, 3]]
        return out[KEY.PRED_TOTAL_ENERGY].reshape(()), out[KEY.PRED_FORCE], stress

    def predict_batch(self, module, samples, training):
        import sevenn._keys as KEY
        from torch_geometric.data import Batch

        if len(samples) == 1:
            return [self.predict(module, samples[0], training)]
        graphs = [self._graph(sample) for sample in samples]
        data = Batch.from_data_list(graphs).to(samples[0]["device"])
        was_batched = module.is_batch_data  # the ASE calculator runs the same module unbatched
        module.set_is_batch_data(True)
        try:
            module.train(training)
            out = module(data)
        finally:
            module.set_is_batch_data(was_batched)
        forces = torch.split(out[KEY.PRED_FORCE], [len(graph[KEY.ATOMIC_NUMBERS]) for graph in graphs])
        stress = -out[KEY.PRED_STRESS][:, [0, 1, 2, 4, 5, 3]]
        return list(zip(out[KEY.PRED_TOTAL_ENERGY], forces, stress))


class CHGNetAdapter(FamilyAdapter):
    family = "chgnet"
    frozen_on_purpose = r"composition_model\..*"  # the fitted per-element reference energies
    # the atom-update MLPs of every atom conv layer, the bond-update outputs and the readout MLP:
    # 4.3% of CHGNet 0.3.0 at r=4 (r=8 on all linears would be 15.7%)
    lora_targets = (r".*(atom_conv_layers\.\d+\.(twoBody_atom\.mlp_(core|gate)|mlp_out)|bond_conv_layers\.\d+\.mlp_out"
                    r"|mlp)\.layers\.\d+")
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
        stress = _voigt(s)
        return energy, out["f"][0], stress

    def predict_batch(self, module, samples, training):
        from ase.units import GPa

        module.train(training)
        out = module(list(samples), task="efs")  # CHGNet batches a list of graphs itself
        n_atoms = [sample.atomic_number.shape[0] for sample in samples]
        energies = [e * n if module.is_intensive else e for e, n in zip(out["e"], n_atoms)]
        return [(e, f, _voigt(s * GPa)) for e, f, s in zip(energies, out["f"], out["s"])]


class MACEAdapter(E3nnFamilyAdapter):
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
        stress = _voigt(s)
        n_atoms = int(batch["ptr"][1])
        return out["energy"][0] * e_unit, out["forces"][:n_atoms] * e_unit / l_unit, stress

    def predict_batch(self, module, samples, training):
        from mace.tools.torch_geometric import Batch, Data

        fields = [sample["batch"].to_dict() for sample in samples]
        if len(samples) == 1 or any(len(f["ptr"]) != 2 for f in fields):  # one structure, or padded for compile
            return super().predict_batch(module, samples, training)
        batch = Batch.from_data_list([Data(num_nodes=int(f["ptr"][1]), **{k: v for k, v in f.items()
                                                                           if k not in ("batch", "ptr")})
                                      for f in fields])
        dtype = samples[0]["dtype"]
        inputs = {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
                  for k, v in batch.to_dict().items()}
        module.train(training)
        out = module(inputs, compute_stress=True, training=training)
        e_unit, l_unit = samples[0]["energy_to_ev"], samples[0]["length_to_angstrom"]
        forces = torch.split(out["forces"] * e_unit / l_unit, torch.diff(batch["ptr"]).tolist())
        stress = [_voigt(s * e_unit / l_unit ** 3) for s in out["stress"]]
        return list(zip(out["energy"] * e_unit, forces, stress))


class NequIPAdapter(E3nnFamilyAdapter):
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
        stress = _voigt(s)
        return out["total_energy"].reshape(()) * e_unit, out["forces"] * e_unit / l_unit, stress

    def predict_batch(self, module, samples, training):
        from nequip.data import AtomicDataDict

        if len(samples) == 1:
            return [self.predict(module, samples[0], training)]
        data = AtomicDataDict.batched_from_list([dict(sample["data"]) for sample in samples])
        module.train(training)
        out = module(data)
        e_unit, l_unit = samples[0]["energy_to_ev"], samples[0]["length_to_angstrom"]
        forces = torch.split(out["forces"] * e_unit / l_unit, data["num_atoms"].tolist())
        stress = [_voigt(s.reshape(3, 3) * e_unit / l_unit ** 3) for s in out["stress"]]
        return list(zip(out["total_energy"].reshape(-1) * e_unit, forces, stress))


def _voigt(s: torch.Tensor) -> torch.Tensor:
    """(xx, yy, zz, yz, xz, xy) of the symmetric part of a 3x3 stress, as ASE's ``full_3x3_to_voigt_6_stress``
    gives the calculators' stress (exact for a symmetric tensor; a model that is not rotation-invariant, PET, gives
    an asymmetric strain derivative)."""
    s = (s + s.T) / 2
    return torch.stack([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


class FairChemAdapter(FamilyAdapter):
    """UMA and other eSCN-MD models (fairchem-core 2.x), uncompiled and with their experts unmerged.

    LoRA targets the nn.Linear layers of each eSCN-MD block: the SO(2) convolutions' m=0 and m>0 linears
    (``fc_m0``, ``so2_m_conv.*.fc``), the radial MLP that weights the first SO(2) convolution from the edge
    distances, and the point-wise MLP on the sphere grid (``atom_wise.grid_mlp``). The SO(2) linears act on
    coefficients in each edge's own frame and the others on invariants or grid points, so any update to them
    keeps the model rotation-equivariant. 2.1% of an eSCN-MD with fairchem's default sizes at r=4.

    UMA's backbone (fairchem's eSCN-MD-MoE) turns the SO(2) convolution linears into mixture-of-linear-experts
    layers (MOLE: an (experts, out, in) weight mixed per system from its composition). They are not nn.Linear,
    so peft cannot adapt them: on a UMA, LoRA reaches the radial and grid MLPs only (0.15% of an eSCN-MD-MoE
    with fairchem's default sizes, 8 experts, at r=4); ``strategy="full"`` trains the experts too. The tiny test
    model has no experts. Merged-MOLE or compiled calculators (fairchem's GPU presets) cannot be trained.
    """

    family = "fairchem"
    lora_targets = (r".*backbone\.blocks\.\d+\.(edge_wise\.so2_conv_[12]\."
                    r"(fc_m0|so2_m_conv\.\d+\.fc|rad_func\.net\.\d+)|atom_wise\.grid_mlp\.\d+)")
    lora_rank = 4

    def module(self, calc):
        settings = calc.predictor.inference_settings
        if settings.compile or settings.merge_mole or getattr(settings, "nitro", False):
            raise ValueError(
                "fairchem: this calculator runs a compiled model or one with its experts merged for one "
                "composition (inference_settings compile/merge_mole/nitro), which cannot be fine-tuned; load it "
                "with inference_settings=InferenceSettings(compile=False, merge_mole=False) (what "
                "load_calculator does on a CPU, or with dtype='float64')")
        module = super().module(calc)
        backbone = module.backbone
        if getattr(backbone, "execution_mode", "general") != "general":
            raise ValueError(f"fairchem: execution_mode={backbone.execution_mode!r} caches weights in fused "
                             "kernels; fine-tuning needs execution_mode='general'")
        return module

    def keep_frozen(self, module):
        backbone = module.backbone
        frozen = [name for name, trainable in (("charge_embedding|spin_embedding", backbone.cs_emb_grad),
                                               ("dataset_embedding", backbone.dataset_emb_grad)) if not trainable]
        return rf"backbone\.({'|'.join(frozen)})\..*" if frozen else None

    def prepare(self, calc, atoms):
        atoms = atoms.copy()  # the check fills in charge and spin in atoms.info
        calc.predictor.validate_atoms_data(atoms, calc.task_name)
        data = calc.a2g(atoms).to(calc.predictor.device)
        dtype = calc.predictor.inference_settings.base_precision_dtype
        for key, value in data:
            if torch.is_tensor(value) and value.is_floating_point():
                data[key] = value.to(dtype)
        tasks = {task.property: task.name for task in calc.predictor.dataset_to_tasks[calc.task_name]}
        return {"data": data, "tasks": tasks}

    def predict(self, module, sample, training):
        return self.predict_batch(module, [sample], training)[0]

    def predict_batch(self, module, samples, training):
        from fairchem.core.datasets.atomic_data import atomicdata_list_to_batch

        # the backbone writes into its input: batch copies
        data = atomicdata_list_to_batch([sample["data"].clone() for sample in samples])
        module.train(training)  # the EFS head keeps the force graph (create_graph) only in training mode
        out = module(data)
        values = {}
        for prop in ("energy", "forces", "stress"):
            task = module.tasks[samples[0]["tasks"][prop]]
            value = task.normalizer.denorm(out[task.name][task.property])
            if task.element_references is not None:
                value = task.element_references.undo_refs(data, value)
            values[prop] = value
        forces = torch.split(values["forces"], data.natoms.tolist())
        stress = [_voigt(s.reshape(3, 3)) for s in values["stress"].reshape(len(samples), 9)]
        return list(zip(values["energy"].reshape(-1), forces, stress))


class UPETAdapter(FamilyAdapter):
    """PET (metatrain) from a metatrain checkpoint (``.ckpt``, the form PET-MAD is published in).

    LoRA targets the attention and feed-forward linears of the transformer in every GNN layer: 0.97% of a PET
    with metatrain's default sizes at r=4 (metatrain's own LoRA adapts the attention linears only).
    """

    family = "upet"
    lora_targets = r".*backend\.gnn_layers\.\d+\.trans\.layers\.\d+\.(attention\.(input|output)_linear|mlp\.w_(in|out))"
    lora_rank = 4

    def module(self, calc):
        trainable = getattr(calc, "umlip_trainable_module", None)
        if trainable is None:
            raise ValueError(
                "upet: this calculator runs an exported TorchScript model (.pt), which cannot be fine-tuned; "
                "load the metatrain checkpoint (.ckpt) it was exported from (PET-MAD is published as .ckpt)")
        exported = calc._model  # metatomic's AtomisticModel: it must run this very module, or training is unseen
        if exported.module is not trainable:
            exported.module = trainable
        return trainable

    def prepare(self, calc, atoms):
        from metatomic.torch import systems_to_torch
        from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

        capabilities = calc._model.capabilities()
        unit = capabilities.outputs[calc._energy_key].unit
        if unit != "eV" or capabilities.length_unit.lower() not in ("angstrom", "a"):
            raise ValueError(f"upet: fine-tuning needs a model in eV and Angstrom, this one gives {unit} and "
                             f"{capabilities.length_unit}")
        system = systems_to_torch(atoms, dtype=calc._dtype, device=calc._device)
        system = get_system_with_neighbor_lists(system, calc._model.requested_neighbor_lists())
        return {"system": system, "energy_key": calc._energy_key}

    def predict(self, module, sample, training):
        return self.predict_batch(module, [sample], training)[0]

    def predict_batch(self, module, samples, training):
        import metatensor.torch as mts
        from metatomic.torch import ModelOutput, System, register_autograd_neighbors

        strained, positions, strains = [], [], []
        for sample in samples:  # forces and stress are gradients with respect to positions and a strain
            system = sample["system"]
            positions.append(system.positions.detach().clone().requires_grad_(True))
            strains.append(torch.eye(3, dtype=positions[-1].dtype, device=positions[-1].device, requires_grad=True))
            strained.append(System(types=system.types, positions=positions[-1] @ strains[-1],
                                   cell=system.cell @ strains[-1], pbc=system.pbc))
            for options in system.known_neighbor_lists():
                neighbors = mts.detach_block(system.get_neighbor_list(options))
                register_autograd_neighbors(strained[-1], neighbors)
                strained[-1].add_neighbor_list(options, neighbors)
        # metatrain's PET adds its per-element energies and output scales in eval mode only: always evaluate
        module.eval()
        key = samples[0]["energy_key"]
        out = module(strained, {key: ModelOutput(unit="eV", sample_kind="system")})
        energies = out[key].block().values.reshape(-1)
        grads = torch.autograd.grad(energies.sum(), positions + strains, create_graph=training)
        volumes = [torch.abs(torch.linalg.det(sample["system"].cell)) for sample in samples]
        return [(energy, -grad_positions, _voigt(grad_strain / volume)) for energy, grad_positions, grad_strain, volume
                in zip(energies, grads[:len(samples)], grads[len(samples):], volumes)]


ADAPTERS: dict[str, FamilyAdapter] = {a.family: a for a in (SevenNetAdapter(), CHGNetAdapter(), MACEAdapter(),
                                                            NequIPAdapter(), FairChemAdapter(), UPETAdapter())}


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

