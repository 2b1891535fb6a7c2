"""PET models (upet / metatrain / metatomic): PET-MAD and other exported metatomic models."""

from __future__ import annotations

import contextlib
import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .base import ModelFamily, pickle_mentions

if TYPE_CHECKING:
    import torch

#: PET per-target readouts, as named in both the metatrain model and its TorchScript export.
HEAD_MODULES = ("backend.node_heads", "backend.edge_heads", "backend.node_last_layers", "backend.edge_last_layers")


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


class UPETFamily(ModelFamily):
    name = "upet"
    package = "upet"

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

    def build_tiny(self, path: str | Path, elements: Sequence[str], seed: int = 0, *,
                   form: Literal["exported", "checkpoint"] = "exported") -> Path:
        """Write a one-layer metatrain ``PET`` (8-wide, float64), exported as a metatomic model (``.pt``) or
        as a metatrain checkpoint (``.ckpt``, the form PET-MAD is published in)."""
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

    def supported_elements(self, calc) -> set[str]:
        from ase.data import chemical_symbols

        return {chemical_symbols[int(z)] for z in calc._model.capabilities().atomic_types}

    def torch_module(self, calc) -> "torch.nn.Module":
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
