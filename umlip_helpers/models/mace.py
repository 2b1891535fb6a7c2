"""MACE (mace-torch): foundation checkpoints such as MACE-MP-0, and user ``.model`` files."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from .base import E3nnFamilyAdapter, ModelFamily, Size, pickle_mentions, voigt

if TYPE_CHECKING:
    import torch

Dtype = Literal["float32", "float64"]
#: Hyperparameters of ``build``'s sizes (a student: two interactions, scalars and vectors, a 5 Å cutoff).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_irreps": "8x0e+8x1o", "max_ell": 2, "num_interactions": 2, "correlation": 2, "r_max": 4.0,
             "num_bessel": 4, "radial_mlp": [8, 8], "mlp_irreps": "4x0e"},
    "student": {"hidden_irreps": "16x0e+16x1o", "max_ell": 1, "num_interactions": 2, "correlation": 2,
                "r_max": 5.0, "num_bessel": 8, "radial_mlp": [16, 16], "mlp_irreps": "16x0e"},
}


class MACEAdapter(E3nnFamilyAdapter):
    family = "mace"
    heads = ("readouts",)
    # every o3.Linear of the interactions, the product basis and the readouts
    lora_targets = r"(interactions\.\d+\.(linear_up|linear)|products\.\d+\.linear|readouts\.\d+\.linear(_1|_2)?)"
    lora_rank = 4

    def prepare(self, calc, atoms):
        return {"batch": calc._atoms_to_batch(atoms), "dtype": next(calc.models[0].parameters()).dtype,
                "energy_to_ev": calc.energy_units_to_eV, "length_to_angstrom": calc.length_units_to_A}

    def predict(self, module, sample, training):
        import torch

        batch = sample["batch"].clone()
        inputs = {k: v.to(sample["dtype"]) if torch.is_tensor(v) and v.is_floating_point() else v
                  for k, v in batch.to_dict().items()}
        module.train(training)
        out = module(inputs, compute_stress=True, training=training)  # training keeps the force graph
        e_unit, l_unit = sample["energy_to_ev"], sample["length_to_angstrom"]
        s = out["stress"][0] * e_unit / l_unit ** 3
        stress = voigt(s)
        n_atoms = int(batch["ptr"][1])
        return out["energy"][0] * e_unit, out["forces"][:n_atoms] * e_unit / l_unit, stress

    def predict_batch(self, module, samples, training):
        import torch
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
        stress = [voigt(s * e_unit / l_unit ** 3) for s in out["stress"]]
        return list(zip(out["energy"] * e_unit, forces, stress))


class MACEFamily(ModelFamily):
    name = "mace"
    package = "mace-torch"
    adapter = MACEAdapter()

    def load(self, checkpoint: str | Path | None, device: str, *, default_dtype: Dtype = "float32",
             **options: Any):
        """A ``MACECalculator`` for a MACE ``.model`` file (a pickled ``ScaleShiftMACE`` or ``MACE``).

        ``default_dtype="float64"`` is slower and recommended for relaxations and finite differences;
        other options (``head=...`` for multi-head models) go to ``MACECalculator``.
        """
        if checkpoint is None:
            raise ValueError("mace: a checkpoint file is required (no MACE weights ship with mace-torch here)")
        from mace.calculators import MACECalculator

        warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected",
                                module="mace")
        return MACECalculator(model_paths=str(checkpoint), device=device, default_dtype=default_dtype, **options)

    def build(self, path: str | Path, elements: Sequence[str], seed: int = 0, *, size: Size = "tiny",
              energy_references_ev: Mapping[str, float] | None = None, force_scale_ev_per_angstrom: float = 1.0,
              avg_num_neighbours: float = 12.0, **options: Any) -> Path:
        """Write a 2-interaction ``ScaleShiftMACE`` at ``size`` (:data:`SIZES`; ``options`` override its entries) to
        ``path`` (a ``.model`` file). A student's per-element references are ``energy_references_ev`` and its scale
        ``force_scale_ev_per_angstrom``; the tiny model's references run from -1 to -2 eV."""
        import numpy as np
        import torch
        from ase.data import atomic_numbers, chemical_symbols
        from e3nn import o3
        from mace import modules

        self.check_size(size, *SIZES)
        hp = {**SIZES[size], **options}
        torch.manual_seed(seed)
        numbers = sorted(atomic_numbers[symbol] for symbol in set(elements))
        if size == "tiny":
            references = np.linspace(-1.0, -2.0, len(numbers))
        else:
            references = np.array([(energy_references_ev or {}).get(chemical_symbols[z], 0.0) for z in numbers])
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = modules.ScaleShiftMACE(
            r_max=hp["r_max"], num_bessel=hp["num_bessel"], num_polynomial_cutoff=5, max_ell=hp["max_ell"],
            interaction_cls=block, interaction_cls_first=block, num_interactions=hp["num_interactions"],
            num_elements=len(numbers), hidden_irreps=o3.Irreps(hp["hidden_irreps"]),
            MLP_irreps=o3.Irreps(hp["mlp_irreps"]), atomic_energies=references, avg_num_neighbors=avg_num_neighbours,
            atomic_numbers=numbers, correlation=hp["correlation"], gate=torch.nn.functional.silu,
            radial_MLP=list(hp["radial_mlp"]), atomic_inter_scale=force_scale_ev_per_angstrom, atomic_inter_shift=0.0,
        )
        path = Path(path)
        return _save_model(path if path.suffix == ".model" else path.with_suffix(".model"), model)

    def save(self, calc, path: str | Path) -> Path:
        """Write the calculator's model (with its current weights, frozen, on the CPU) as a ``.model`` file."""
        import copy

        model = copy.deepcopy(self.torch_module(calc)).cpu().eval()
        for param in model.parameters():
            param.requires_grad_(False)
        return _save_model(Path(path), model)

    def _energy_references(self, calc) -> tuple["torch.Tensor", dict[str, int]]:
        """MACE's per-element atomic energies (eV) and each element's row in them."""
        from ase.data import chemical_symbols

        module = self.torch_module(calc)
        return (module.atomic_energies_fn.atomic_energies,
                {chemical_symbols[int(z)]: i for i, z in enumerate(module.atomic_numbers)})

    def recognises(self, path: Path) -> bool:
        return path.is_file() and (path.suffix == ".model" or pickle_mentions(path, b"mace.modules"))

    def _supported_elements(self, calc) -> set[str]:
        from ase.data import chemical_symbols

        return {chemical_symbols[int(z)] for z in calc.z_table.zs}

    def _torch_module(self, calc) -> "torch.nn.Module":
        """The (first) MACE model behind the calculator.

        Head for head-only fine-tuning: ``readouts`` (one readout block per interaction, giving the
        per-atom energy). ``atomic_energies_fn`` and ``scale_shift`` are fixed energy references/scales;
        ``node_embedding``, ``radial_embedding``, ``interactions`` and ``products`` are the body.
        """
        return calc.models[0]


def _save_model(path: Path, model: "torch.nn.Module") -> Path:
    import torch

    from ..io import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(model, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


FAMILY = MACEFamily()
