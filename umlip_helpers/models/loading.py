"""``load_calculator``: any model by name, checkpoint file or fine-tuned directory, as an ASE calculator, on CPU or
GPU; and the family behind any calculator the package returns (:func:`family_of`)."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..choices import Device
from ..errors import ModelUnavailable, UnsupportedElements
from ..io import ModelInfo, attach_model_info, model_info, sha256_file
from .base import ModelFamily
from .finetuned import MANIFEST_NAME, WEIGHTS_FILE, apply_saved_weights, base_location, read_manifest
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, get_spec
from .shifted import ShiftedCalculator, unshifted

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

#: The family registry: family -> the module its package installs (checked without importing it). A family's
#: code is ``models/<family>.py``, which defines ``FAMILY``.
FAMILY_MODULES = {"sevennet": "sevenn", "chgnet": "chgnet", "mace": "mace", "fairchem": "fairchem.core",
                  "upet": "upet", "nequip": "nequip", "emt": "ase"}
FAMILY_NAMES = tuple(FAMILY_MODULES)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # Hugging Face loaders otherwise spend 30 s failing to connect


def get_family(name: str) -> ModelFamily:
    if name not in FAMILY_NAMES:
        raise ValueError(f"unknown model family {name!r}; families: {', '.join(FAMILY_NAMES)}")
    return importlib.import_module(f"{__package__}.{name}").FAMILY


#: the modules of each family's own calculator classes, for calculators built outside ``load_calculator``
_CALCULATOR_MODULES = {"sevenn": "sevennet", "chgnet": "chgnet", "mace": "mace", "fairchem": "fairchem",
                       "nequip": "nequip", "metatomic": "upet", "upet": "upet"}


def family_of(calc: Any) -> ModelFamily:
    """The family of a calculator: from its :func:`~umlip_helpers.io.model_info`, else from its class's module."""
    name = model_info(calc).family
    if name not in FAMILY_NAMES:
        module = type(unshifted(calc)).__module__.split(".")[0]
        name = _CALCULATOR_MODULES.get(module, name)
    if name not in FAMILY_NAMES:
        raise NotImplementedError(f"{type(calc).__name__}: not a calculator of a known model family "
                                  f"({', '.join(FAMILY_NAMES)})")
    return get_family(name)


def resolve_device(device: Device | str = "auto") -> str:
    """'auto' gives 'cuda' when a GPU is visible to torch, else 'cpu'."""
    if device != "auto":
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise RuntimeError(f"device={device!r} was asked for, but torch sees no CUDA GPU")
        return device
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op thread count. On 2 shared cores, 1 thread is often the fastest."""
    if threads is None:
        threads = int(os.environ["UMLIP_THREADS"]) if os.environ.get("UMLIP_THREADS") else None
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def package_available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def model_status(spec: ModelSpec) -> tuple[bool, str]:
    """(available offline, where or why not) for a registered model, without loading it."""
    module = FAMILY_MODULES[spec.family]
    if not package_available(module):
        return False, f"Python package {module} is not installed"
    if spec.ships_with_package:
        return True, f"ships with {module}"
    found = spec.find_weights()
    if found is None:
        return False, f"{spec.weights_file} not found"
    return True, str(found)


def _unavailable(spec: ModelSpec, reason: str) -> ModelUnavailable:
    places = "\n  ".join(str(p) for p in spec.candidate_paths()) or "(none)"
    return ModelUnavailable(
        f"model {spec.name!r} is not available here: {reason}.\n"
        f"Needed file: {spec.weights_file}\nLooked in:\n  {places}\n"
        f"How to get it: {spec.how_to_get}\n"
        f"Or pass the checkpoint's path: load_calculator('/path/to/{spec.weights_file}')."
    )


def adapter_for(calc: Any):
    """The trainer's view (:class:`~.base.FamilyAdapter`) of the family behind ``calc``."""
    family = family_of(calc)
    if family.adapter is None:
        raise NotImplementedError(f"fine-tuning is not implemented for the {family.name!r} family")
    return family.adapter


def detect_family(path: Path) -> str:
    for name in FAMILY_NAMES:
        if name == "emt":
            continue
        try:
            if get_family(name).recognises(path):
                return name
        except ImportError:
            continue
    raise ModelUnavailable(
        f"{path}: cannot tell which model family this checkpoint belongs to; pass family= one of "
        f"{', '.join(FAMILY_NAMES[:-1])}"
    )


def _load_checkpoint(path: Path, family: str | None, device: str, options: dict[str, Any]) -> "Calculator":
    if not path.exists():
        raise ModelUnavailable(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise ModelUnavailable(f"{path} is a directory without {MANIFEST_NAME}; is it a fine-tuned model output?")
    family = family or detect_family(path)
    calc = get_family(family).load(path, device=device, **options)
    return attach_model_info(calc, ModelInfo(name=path.name, family=family, version="user checkpoint",
                                             checkpoint=str(path.resolve()), sha256=sha256_file(path), device=device))


def _load_registered(name: str, device: str, options: dict[str, Any]) -> "Calculator":
    spec = get_spec(name)
    family = get_family(spec.family)
    ok, where = model_status(spec)
    if not ok:
        raise _unavailable(spec, where)
    options = {**spec.options, **options}
    checkpoint = None if spec.ships_with_package else Path(where)
    calc = family.load(checkpoint, device=device, **options)
    weights = checkpoint or family.shipped_weights(**options)
    return attach_model_info(calc, ModelInfo(
        name=spec.name, family=spec.family, version=spec.version, checkpoint=str(weights) if weights else where,
        sha256=sha256_file(weights) if weights else None, device=device))


def load_calculator(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    device: Device | str = "auto",
    *,
    family: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> "Calculator":
    """Return an ASE calculator for a registered model name, a checkpoint file or a fine-tuned (or distilled) model
    directory. What was loaded (name, family, version, checkpoint, sha256, device) is
    :func:`umlip_helpers.io.model_info` of the calculator."""
    set_threads(threads)
    device = resolve_device(device)
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        return load_finetuned(path, device=device, **options)
    looks_like_path = os.sep in text or path.suffix != "" or path.exists()
    if looks_like_path and text.lower() not in MODELS:
        return _load_checkpoint(path, family, device, options)
    return _load_registered(text, device, options)


def load_finetuned(directory: str | Path, device: str = "cpu", **options: Any) -> ShiftedCalculator:
    """The fine-tuned model in ``directory`` as an ASE calculator (LoRA adapters merged into the weights)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    base_info = manifest["base_model"]
    weights = directory / WEIGHTS_FILE[manifest["strategy"]]
    if not weights.is_file():
        raise ModelUnavailable(f"{directory}: the manifest names {weights.name}, which is missing")
    if manifest.get("weights_sha256") and sha256_file(weights) != manifest["weights_sha256"]:
        raise ModelUnavailable(f"{weights}: sha256 differs from the manifest's; the file was changed or truncated")
    load = base_location(directory, base_info)
    base = load_calculator(load, device=device, family=base_info.get("family"), **options)
    expected_sha, actual_sha = base_info.get("sha256"), model_info(base).sha256
    if expected_sha and actual_sha and expected_sha != actual_sha:
        raise ModelUnavailable(
            f"{directory}: the base model {load!r} here has sha256 {actual_sha[:12]}..., but the "
            f"fine-tuning started from {expected_sha[:12]}...; the adapters do not fit these weights"
        )
    base = unshifted(base)  # fine-tuned again: the new shifts were fitted on the raw model
    adapter = family_of(base).adapter
    module = adapter.module(base)
    apply_saved_weights(module, adapter, directory, manifest["strategy"], manifest.get("lora"))
    module.eval().requires_grad_(False)  # as finetune() leaves it: inference differentiates positions only
    calc = ShiftedCalculator(base, manifest["energy_shifts_ev"])
    return attach_model_info(calc, model_info(base).replace(
        name=directory.name, version=f"fine-tuned ({manifest['strategy']}) from {base_info.get('name')}",
        checkpoint=str(directory.resolve()), sha256=sha256_file(weights), base_model=base_info, device=device))


def supported_elements(calc: "Calculator") -> set[str] | None:
    try:
        family = family_of(calc)
    except NotImplementedError:
        return None
    return family.supported_elements(calc)


def check_elements(atoms: "Atoms", calc: "Calculator", where: str = "structure") -> None:
    """Raise UnsupportedElements, before any computation, if ``atoms`` holds elements ``calc`` lacks."""
    covered = supported_elements(calc)
    if covered is None:
        return
    missing = sorted(set(atoms.get_chemical_symbols()) - covered)
    if missing:
        raise UnsupportedElements(
            f"{where}: model {model_info(calc).name!r} does not cover element(s) {', '.join(missing)}; it covers "
            f"{len(covered)} elements ({', '.join(sorted(covered)[:12])}{', ...' if len(covered) > 12 else ''})"
        )
