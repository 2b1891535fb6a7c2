"""CHGNet (crystal Hamiltonian graph network). The 0.3.0 and r2SCAN weights ship in the chgnet wheel."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Sequence

from ase.data import chemical_symbols

from .base import FamilyAdapter, ModelFamily, Size, pickle_mentions, voigt

#: CHGNet embeds atomic numbers 1..94.
MAX_ATOMIC_NUMBER = 94
PRETRAINED_FILES = {
    "0.3.0": "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
    "r2scan": "pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
}


class CHGNetAdapter(FamilyAdapter):
    family = "chgnet"
    heads = ("mlp",)
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
        stress = voigt(s)
        return energy, out["f"][0], stress

    def predict_batch(self, module, samples, training):
        from ase.units import GPa

        module.train(training)
        out = module(list(samples), task="efs")  # CHGNet batches a list of graphs itself
        n_atoms = [sample.atomic_number.shape[0] for sample in samples]
        energies = [e * n if module.is_intensive else e for e, n in zip(out["e"], n_atoms)]
        return [(e, f, voigt(s * GPa)) for e, f, s in zip(energies, out["f"], out["s"])]


class CHGNetFamily(ModelFamily):
    name = "chgnet"
    package = "chgnet"
    adapter = CHGNetAdapter()

    def load(self, checkpoint: str | Path | None, device: str, model: str = "0.3.0", **options: Any):
        from chgnet.model import CHGNet
        from chgnet.model.dynamics import CHGNetCalculator

        # chgnet prints its parameter count and device, and warns (with its install path) on every stress
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True", module="chgnet")
        with contextlib.redirect_stdout(io.StringIO()):
            if checkpoint is None:
                network = CHGNet.load(model_name=model, use_device=device, verbose=False)
            else:
                network = CHGNet.from_file(str(checkpoint))
            return CHGNetCalculator(model=network, use_device=device, **options)

    def shipped_weights(self, model: str = "0.3.0", **options: Any) -> Path:
        import chgnet

        return Path(chgnet.__file__).parent / PRETRAINED_FILES[model]

    def recognises(self, path: Path) -> bool:
        return pickle_mentions(path, b"model_args", b"state_dict")

    def build(self, path: str | Path, elements: Sequence[str], seed: int = 0, *, size: Size = "tiny") -> Path:
        """A CHGNet of the real architecture with 8-wide features and 2 interactions."""
        self.check_size(size, "tiny")
        import torch
        from chgnet.model import CHGNet

        torch.manual_seed(seed)
        network = CHGNet(atom_fea_dim=8, bond_fea_dim=8, angle_fea_dim=8, n_conv=2, atom_conv_hidden_dim=8,
                         bond_conv_hidden_dim=8, mlp_hidden_dims=(8,), composition_model="MPtrj")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": network.as_dict()}, path)
        return path

    def _torch_module(self, calc):
        return calc.model

    def _supported_elements(self, calc) -> set[str]:
        return set(chemical_symbols[1:MAX_ATOMIC_NUMBER + 1])


FAMILY = CHGNetFamily()
