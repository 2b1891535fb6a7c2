"""PET models (upet / metatrain / metatomic): PET-MAD and other exported metatomic models."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .base import FamilyAdapter, ModelFamily, Size, pickle_mentions, voigt

if TYPE_CHECKING:
    import torch



@contextlib.contextmanager
def _torch_functions_torchscript_can_compile():
    """torch_geometric (imported by sevenn) replaces ``torch.index_select`` and ``torch.select`` with Python
    wrappers that TorchScript cannot compile; metatensor and metatomic script code when imported and when a
    model is exported. Restore torch's own functions for that time."""
    import sys

    import torch

    patched = sys.modules.get("torch_geometric.hash_tensor")
    if patched is None:
        yield
        return
    saved = torch.index_select, torch.select
    torch.index_select, torch.select = patched._old_index_select, patched._old_select
    try:
        yield
    finally:
        torch.index_select, torch.select = saved


def _is_metatomic_export(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/extra/metatomic-version") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


class UPETAdapter(FamilyAdapter):
    """PET (metatrain) from a metatrain checkpoint (``.ckpt``, the form PET-MAD is published in).

    LoRA targets the attention and feed-forward linears of the transformer in every GNN layer: 0.97% of a PET
    with metatrain's default sizes at r=4 (metatrain's own LoRA adapts the attention linears only).
    """

    family = "upet"
    heads = ("backend.node_heads", "backend.edge_heads", "backend.node_last_layers", "backend.edge_last_layers")
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
        import torch
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
        return [(energy, -grad_positions, voigt(grad_strain / volume)) for energy, grad_positions, grad_strain, volume
                in zip(energies, grads[:len(samples)], grads[len(samples):], volumes)]


class UPETFamily(ModelFamily):
    name = "upet"
    package = "upet"
    adapter = UPETAdapter()

    def load(self, checkpoint: str | Path | None, device: str, **options: Any):
        """A ``MetatomicCalculator`` for an exported metatomic model (``.pt``) or a metatrain checkpoint
        (``.ckpt``, e.g. ``pet-mad-s-v1.0.2.ckpt`` from the lab-cosmo/upet Hugging Face repository).

        A checkpoint keeps its Python (trainable) model for ``torch_module``; an exported model is TorchScript.
        Options (``variants``, ``non_conservative``, ...) go to ``MetatomicCalculator``.
        """
        if checkpoint is None:
            raise ValueError("upet: a model file is required")
        with _torch_functions_torchscript_can_compile():
            from metatomic_ase import MetatomicCalculator

            checkpoint = Path(checkpoint)
            if checkpoint.suffix == ".ckpt":
                from metatrain.utils.io import load_model

                model = load_model(str(checkpoint))
                calc = MetatomicCalculator(model.export(), device=device, **options)
                calc.umlip_trainable_module = model
                return calc
            return MetatomicCalculator(str(checkpoint), device=device, **options)

    def build(self, path: str | Path, elements: Sequence[str], seed: int = 0, *, size: Size = "tiny",
                   form: Literal["exported", "checkpoint"] = "exported") -> Path:
        """Write a one-layer metatrain ``PET`` (8-wide, float64), exported as a metatomic model (``.pt``) or
        as a metatrain checkpoint (``.ckpt``, the form PET-MAD is published in)."""
        self.check_size(size, "tiny")
        with _torch_functions_torchscript_can_compile():
            return self._build_tiny(Path(path), elements, seed, form)

    def _build_tiny(self, path: Path, elements: Sequence[str], seed: int, form: str) -> Path:
        import torch
        from ase.data import atomic_numbers
        from metatrain.pet import PET
        from metatrain.utils.architectures import get_default_hypers
        from metatrain.utils.data import DatasetInfo
        from metatrain.utils.data.target_info import get_energy_target_info

        from ..io import atomic_write_bytes

        torch.manual_seed(seed)
        hypers = get_default_hypers("pet")["model"]
        hypers.update(cutoff=4.0, d_pet=8, d_head=8, d_node=8, d_feedforward=8, num_heads=1,
                      num_attention_layers=1, num_gnn_layers=1)
        energy = get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"},
                                        add_position_gradients=True, add_strain_gradients=True)
        info = DatasetInfo(length_unit="Angstrom", atomic_types=sorted({atomic_numbers[s] for s in elements}),
                           targets={"energy": energy})
        model = PET(hypers, info).to(torch.float64)
        path = Path(path)
        if form == "checkpoint":
            path = path.with_suffix(".ckpt")
            buffer = io.BytesIO()
            torch.save(model.get_checkpoint(), buffer)
            atomic_write_bytes(path, buffer.getvalue())
            return path
        if path.suffix != ".pt":
            path = path.with_suffix(".pt")
        exported = model.export()
        scratch = path.with_name(f".{path.name}.export")
        try:
            exported.save(str(scratch))  # metatomic writes by file name only
            atomic_write_bytes(path, scratch.read_bytes())
        finally:
            scratch.unlink(missing_ok=True)
        return path

    def recognises(self, path: Path) -> bool:
        return path.is_file() and (_is_metatomic_export(path) or
                                   (path.suffix == ".ckpt" and pickle_mentions(path, b"architecture_name")))

    def _supported_elements(self, calc) -> set[str]:
        from ase.data import chemical_symbols

        return {chemical_symbols[int(z)] for z in calc._model.capabilities().atomic_types}

    def _torch_module(self, calc) -> "torch.nn.Module":
        """The PET model behind the calculator: the Python model for a ``.ckpt``, else the TorchScript one.

        Head for head-only fine-tuning (metatrain ``PET``): ``backend.node_heads``/``backend.edge_heads`` and
        ``backend.node_last_layers``/``backend.edge_last_layers`` (per-target readouts); ``additive_models``
        hold the per-element composition energies and ``scaler`` the output scale. PET is not
        rotation-equivariant by construction (it learns rotational symmetry from augmented data), so a
        fine-tuned PET should be trained on randomly rotated structures.
        """
        trainable = getattr(calc, "umlip_trainable_module", None)
        return trainable if trainable is not None else calc._model.module


FAMILY = UPETFamily()
