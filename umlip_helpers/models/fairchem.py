"""FAIR Chemistry (fairchem-core): UMA and other eSCN-MD checkpoints saved as inference ``.pt`` files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .base import ModelFamily, pickle_mentions

if TYPE_CHECKING:
    import torch

TaskName = Literal["omat", "omol", "oc20", "odac", "omc"]
Dtype = Literal["float32", "float64"]
#: The output heads on the eSCN-MD backbone (head-only fine-tuning trains these).
HEAD_MODULES = ("output_heads",)


class FairChemFamily(ModelFamily):
    name = "fairchem"
    package = "fairchem-core"

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

    def build_tiny(self, path: str | Path, elements: Sequence[str], seed: int = 0) -> Path:
        """Write a one-layer eSCN-MD (UMA architecture, no mixture of experts) inference checkpoint.

        UMA embeds elements by atomic number up to ``max_num_elements``; the tiny model sets it to one
        above the heaviest of ``elements``, so heavier elements are outside it. Its only task is "omat"
        (energy, conservative forces and stress).
        """
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

    def supported_elements(self, calc) -> set[str]:
        """UMA embeds atomic numbers 1 .. max_num_elements-1 (1..99 for the released models)."""
        from ase.data import chemical_symbols

        limit = min(self.torch_module(calc).backbone.max_num_elements, len(chemical_symbols))
        return set(chemical_symbols[1:limit])

    def torch_module(self, calc) -> "torch.nn.Module":
        """The ``HydraModel`` behind the calculator.

        Head for head-only fine-tuning: ``output_heads`` (e.g. ``MLP_EFS_Head.energy_block``, an MLP on the
        invariant node features; forces and stress are its gradients). ``backbone`` is the eSCN-MD body,
        including the dataset (task) embedding and, for UMA, the mixture-of-linear-experts layers.
        """
        model = calc.predictor.model
        return getattr(model, "module", model)  # unwrap torch.optim.swa_utils.AveragedModel


FAMILY = FairChemFamily()
