"""FAIR Chemistry (fairchem-core): UMA and other eSCN-MD checkpoints saved as inference ``.pt`` files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .base import FamilyAdapter, ModelFamily, Size, pickle_mentions, voigt

if TYPE_CHECKING:
    import torch

TaskName = Literal["omat", "omol", "oc20", "odac", "omc"]
Dtype = Literal["float32", "float64"]


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
    heads = ("output_heads",)
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
        import torch

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
        import torch
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
        stress = [voigt(s.reshape(3, 3)) for s in values["stress"].reshape(len(samples), 9)]
        return list(zip(values["energy"].reshape(-1), forces, stress))


class FairChemFamily(ModelFamily):
    name = "fairchem"
    package = "fairchem-core"
    adapter = FairChemAdapter()

    def load(self, checkpoint: str | Path | None, device: str, *, task_name: TaskName = "omat",
             dtype: Dtype = "float32", inference_settings: Any = None, **options: Any):
        """A ``FAIRChemCalculator`` for a local fairchem inference checkpoint (e.g. ``uma-s-1p1.pt``).

        ``task_name`` picks the UMA output head ("omat" for inorganic materials with PBE/PBE+U).
        ``inference_settings`` defaults to fairchem's "default" preset on a GPU; on a CPU, and whenever
        ``dtype="float64"`` is asked for, to an uncompiled model (compiling takes minutes on a CPU).
        """
        if checkpoint is None:
            raise ValueError("fairchem: a checkpoint file is required")
        from fairchem.core.calculate.ase_calculator import FAIRChemCalculator
        from fairchem.core.units.mlip_unit import load_predict_unit
        from fairchem.core.units.mlip_unit.api.inference import InferenceSettings

        if inference_settings is None:
            if device.startswith("cuda") and dtype == "float32":
                inference_settings = "default"
            else:
                inference_settings = InferenceSettings(activation_checkpointing=False, compile=False,
                                                       merge_mole=False, base_precision_dtype=dtype)
        predictor = load_predict_unit(str(checkpoint), inference_settings=inference_settings,
                                      device="cuda" if device.startswith("cuda") else "cpu")
        return FAIRChemCalculator(predictor, task_name=task_name, **options)

    def build(self, path: str | Path, elements: Sequence[str], seed: int = 0, *, size: Size = "tiny") -> Path:
        """Write a one-layer eSCN-MD (UMA architecture, no mixture of experts) inference checkpoint.

        UMA embeds elements by atomic number up to ``max_num_elements``; the tiny model sets it to one
        above the heaviest of ``elements``, so heavier elements are outside it. Its only task is "omat"
        (energy, conservative forces and stress).
        """
        self.check_size(size, "tiny")
        import hydra
        import torch
        from ase.data import atomic_numbers
        from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

        from ..io import atomic_write_bytes

        torch.manual_seed(seed)
        task = "omat"
        model_config = {
            "_target_": "fairchem.core.models.base.HydraModel",
            "backbone": {
                "model": "fairchem.core.models.uma.escn_md.eSCNMDBackbone",
                "max_num_elements": max(atomic_numbers[s] for s in elements) + 1,
                "sphere_channels": 8, "hidden_channels": 8, "edge_channels": 8, "lmax": 2, "mmax": 2,
                "num_layers": 1, "num_distance_basis": 16, "cutoff": 4.0, "max_neighbors": 30,
                "otf_graph": True, "always_use_pbc": False, "regress_forces": True, "direct_forces": False,
                "regress_stress": True, "dataset_mapping": {task: task},
            },
            "heads": {"efs": {"module": "fairchem.core.models.uma.escn_md.MLP_EFS_Head", "prefix": task,
                              "wrap_property": True}},
            "pass_through_head_outputs": True,
        }
        levels = {"energy": ("system", [1]), "forces": ("atom", [3]), "stress": ("system", [1, 9])}
        tasks_config = [
            {"_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task", "name": f"{task}_{prop}",
             "level": level, "property": prop, "datasets": [task],
             "out_spec": {"_target_": "fairchem.core.units.mlip_unit.mlip_unit.OutputSpec", "dim": dim,
                          "dtype": "float32"},
             "normalizer": {"_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
                            "mean": 0.0, "rmsd": 1.0}}
            for prop, (level, dim) in levels.items()
        ]
        model = hydra.utils.instantiate(model_config)
        checkpoint = MLIPInferenceCheckpoint(
            model_config=model_config, model_state_dict=model.state_dict(),
            ema_state_dict=torch.optim.swa_utils.AveragedModel(model).state_dict(), tasks_config=tasks_config)
        path = Path(path)
        if path.suffix != ".pt":
            path = path.with_suffix(".pt")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def recognises(self, path: Path) -> bool:
        return path.is_file() and pickle_mentions(path, b"MLIPInferenceCheckpoint")

    def _supported_elements(self, calc) -> set[str]:
        """UMA embeds atomic numbers 1 .. max_num_elements-1 (1..99 for the released models)."""
        from ase.data import chemical_symbols

        limit = min(self.torch_module(calc).backbone.max_num_elements, len(chemical_symbols))
        return set(chemical_symbols[1:limit])

    def _torch_module(self, calc) -> "torch.nn.Module":
        """The ``HydraModel`` behind the calculator.

        Head for head-only fine-tuning: ``output_heads`` (e.g. ``MLP_EFS_Head.energy_block``, an MLP on the
        invariant node features; forces and stress are its gradients). ``backbone`` is the eSCN-MD body,
        including the dataset (task) embedding and, for UMA, the mixture-of-linear-experts layers.
        """
        model = calc.predictor.model
        return getattr(model, "module", model)  # unwrap torch.optim.swa_utils.AveragedModel


FAMILY = FairChemFamily()
