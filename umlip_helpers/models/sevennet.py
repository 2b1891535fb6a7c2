"""SevenNet (NequIP-style e3nn message passing). SevenNet-0, -l3i5 and -MF-0 weights ship in the sevenn wheel."""

from __future__ import annotations

import uuid
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from ase.data import chemical_symbols

from ..io import sha256_file
from .base import ModelFamily, pickle_mentions

#: The readout after the last interaction block (FINETUNA-style head-only fine-tuning trains these).
HEAD_MODULES = ("reduce_input_to_hidden", "reduce_hidden_to_energy", "rescale_atomic_energy")


class SevenNetFamily(ModelFamily):
    name = "sevennet"
    package = "sevenn"

    def load(self, checkpoint: str | Path | None, device: str, model: str = "7net-0", modal: str | None = None,
             **options: Any):
        from sevenn.calculator import SevenNetCalculator
        from sevenn.util import pretrained_name_to_path

        source = str(checkpoint) if checkpoint is not None else pretrained_name_to_path(model)
        with warnings.catch_warnings():  # "no tensor-product accelerator": expected on CPU
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            calc = SevenNetCalculator(source, device=device, modal=modal, **options)
        calc._umlip_checkpoint = source
        calc._umlip_sha256 = sha256_file(source)
        return calc

    def recognises(self, path: Path) -> bool:
        return pickle_mentions(path, b"model_state_dict", b"num_convolution_layer", b"_type_map")

    def build_tiny(self, path: str | Path, elements: Sequence[str], seed: int = 0, channel: int = 4,
                   lmax: int = 1, layers: int = 2) -> Path:
        """A SevenNet of the real architecture with a few channels, written as a sevenn checkpoint."""
        import torch
        from sevenn.model_build import build_E3_equivariant_model
        from sevenn.util import chemical_species_preprocess, load_checkpoint

        config = load_checkpoint("7net-0").config
        species = sorted(set(elements))
        config.update(chemical_species_preprocess(species))
        config.update({"channel": channel, "lmax": lmax, "lmax_edge": -1, "lmax_node": -1,
                       "num_convolution_layer": layers, "irreps_manual": False, "use_species_wise_shift_scale": False,
                       "shift": 0.0, "scale": 1.0, "conv_denominator": 10.0,
                       "weight_nn_hidden_neurons": [8, 8]})
        torch.manual_seed(seed)
        model = build_E3_equivariant_model(config)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": config, "model_state_dict": model.state_dict(), "epoch": 0,
                    "optimizer_state_dict": {}, "scheduler_state_dict": {},
                    "time": datetime.now().strftime("%Y-%m-%d %H:%M"), "hash": uuid.uuid4().hex}, path)
        return path

    def torch_module(self, calc):
        return calc.model

    def supported_elements(self, calc) -> set[str]:
        return {chemical_symbols[z] for z in calc.type_map}


FAMILY = SevenNetFamily()
