"""MACE (mace-torch): foundation checkpoints such as MACE-MP-0, and user ``.model`` files."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

from .base import ModelFamily, pickle_mentions

if TYPE_CHECKING:
    import torch

Dtype = Literal["float32", "float64"]
#: Per-interaction readout blocks giving the per-atom energy (head-only fine-tuning trains these).
HEAD_MODULES = ("readouts",)


class MACEFamily(ModelFamily):
    name = "mace"
    package = "mace-torch"

    def load(self, checkpoint: str | Path | None, device: str, *, default_dtype: Dtype = "float32",
             **options: Any):
        """A ``MACECalculator`` for a MACE ``.model`` file (a pickled ``ScaleShiftMACE`` or ``MACE``).

        ``default_dtype="float64"`` is slower and recommended for relaxations and finite differences;
        other options (``head=...`` for multi-head models) go to ``MACECalculator``.
        """
        if checkpoint is None:
            raise ValueError("mace: a checkpoint file is required (no MACE weights ship with mace-torch here)")
        from mace.calculators import MACECalculator

        return MACECalculator(model_paths=str(checkpoint), device=device, default_dtype=default_dtype, **options)

    def build_tiny(self, path: str | Path, elements: Sequence[str], seed: int = 0) -> Path:
        """Write a 2-interaction ``ScaleShiftMACE`` (8x0e+8x1o, L=2 messages) to ``path`` (a ``.model`` file)."""
        import numpy as np
        import torch
        from ase.data import atomic_numbers
        from e3nn import o3
        from mace import modules

        from ..io import atomic_write_bytes

        torch.manual_seed(seed)
        numbers = sorted(atomic_numbers[symbol] for symbol in set(elements))
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = modules.ScaleShiftMACE(
            r_max=4.0, num_bessel=4, num_polynomial_cutoff=5, max_ell=2,
            interaction_cls=block, interaction_cls_first=block, num_interactions=2,
            num_elements=len(numbers), hidden_irreps=o3.Irreps("8x0e+8x1o"), MLP_irreps=o3.Irreps("4x0e"),
            atomic_energies=np.linspace(-1.0, -2.0, len(numbers)), avg_num_neighbors=12.0,
            atomic_numbers=numbers, correlation=2, gate=torch.nn.functional.silu, radial_MLP=[8, 8],
            atomic_inter_scale=1.0, atomic_inter_shift=0.0,
        )
        path = Path(path)
        if path.suffix != ".model":
            path = path.with_suffix(".model")
        buffer = io.BytesIO()
        torch.save(model, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def recognises(self, path: Path) -> bool:
        return path.is_file() and (path.suffix == ".model" or pickle_mentions(path, b"mace.modules"))

    def supported_elements(self, calc) -> set[str]:
        from ase.data import chemical_symbols

        return {chemical_symbols[int(z)] for z in calc.z_table.zs}

    def torch_module(self, calc) -> "torch.nn.Module":
        """The (first) MACE model behind the calculator.

        Head for head-only fine-tuning: ``readouts`` (one readout block per interaction, giving the
        per-atom energy). ``atomic_energies_fn`` and ``scale_shift`` are fixed energy references/scales;
        ``node_embedding``, ``radial_embedding``, ``interactions`` and ``products`` are the body.
        """
        return calc.models[0]


FAMILY = MACEFamily()
