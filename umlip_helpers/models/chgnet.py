"""CHGNet (crystal Hamiltonian graph network). The 0.3.0 and r2SCAN weights ship in the chgnet wheel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ase.data import chemical_symbols

from ..io import sha256_file
from .base import ModelFamily, pickle_mentions

#: The readout MLP after the last interaction (trained alone by head-only fine-tuning).
HEAD_MODULES = ("mlp",)
#: CHGNet embeds atomic numbers 1..94.
MAX_ATOMIC_NUMBER = 94
PRETRAINED_FILES = {
    "0.3.0": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "r2scan": "pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}


class CHGNetFamily(ModelFamily):
    name = "chgnet"
    package = "chgnet"

    def load(self, checkpoint: str | Path | None, device: str, model: str = "0.3.0", **options: Any):
        import chgnet
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        if checkpoint is None:
            network = CHGNet.load(model_name=model, use_device=device, verbose=False)
            checkpoint = os.path.join(os.path.dirname(chgnet.__file__), PRETRAINED_FILES[model])
        else:
            network = CHGNet.from_file(str(checkpoint))
        calc = CHGNetCalculator(model=network, use_device=device, **options)
        calc._umlip_checkpoint = str(checkpoint)
        calc._umlip_sha256 = sha256_file(checkpoint)
        return calc

    def recognises(self, path: Path) -> bool:
        return pickle_mentions(path, b"model_args", b"state_dict")

    def build_tiny(self, path: str | Path, elements: Sequence[str], seed: int = 0) -> Path:
        """A CHGNet of the real architecture with 8-wide features and 2 interactions."""
        import torch
        from chgnet.model import CHGNet

        torch.manual_seed(seed)
        network = CHGNet(atom_fea_dim=8, bond_fea_dim=8, angle_fea_dim=8, n_conv=2, atom_conv_hidden_dim=8,
                         bond_conv_hidden_dim=8, mlp_hidden_dims=(8,), composition_model="MPtrj")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": network.as_dict()}, path)
        return path

    def torch_module(self, calc):
        return calc.model

    def supported_elements(self, calc) -> set[str]:
        return set(chemical_symbols[1:MAX_ATOMIC_NUMBER + 1])


FAMILY = CHGNetFamily()
