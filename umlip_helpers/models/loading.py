"""``load_calculator``: any model by name or path, as an ASE calculator, on CPU or GPU."""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ModelUnavailable, UnsupportedElements
from ..io import sha256_file
from .base import ModelFamily
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, get_spec

if TYPE_CHECKING:
    from ase import Atoms
    from ase.calculators.calculator import Calculator

Device = Literal["auto", "cpu", "cuda"]
#: family -> the module its package installs (checked without importing it)
FAMILY_MODULES = {"sevennet": "sevenn", "chgnet": "chgnet", "mace": "mace", "fairchem": "fairchem.core",
                  "upet": "upet", "nequip": "nequip", "emt": "ase"}
FAMILY_NAMES = tuple(FAMILY_MODULES)
#: File written into every fine-tuned or distilled model directory.
MANIFEST_NAME = "umlip_model.json"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # Hugging Face loaders otherwise spend 30 s failing to connect


def get_family(name: str) -> ModelFamily:
    if name not in FAMILY_NAMES:
        raise ValueError(f"unknown model family {name!r}; families: {', '.join(FAMILY_NAMES)}")
    return importlib.import_module(f"{__package__}.{name}").FAMILY


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


def load_calculator(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    device: Device | str = "auto",
    *,
    family: str | None = None,
    threads: int | None = None,
    **options: Any,
) -> "Calculator":
    """Return an ASE calculator for a registered model name, a checkpoint file or a fine-tuned model directory.

    The calculator carries ``calc.umlip_info`` (name, family, version, checkpoint, sha256, device) for provenance.
    """
    set_threads(threads)
    device = resolve_device(device)
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    looks_like_path = os.sep in text or path.suffix != "" or path.exists()

    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        from ..finetune.io import load_finetuned

        return load_finetuned(path, device=device, **options)

    if looks_like_path and text.lower() not in MODELS:
        if not path.exists():
            raise ModelUnavailable(f"checkpoint {path} does not exist")
        if path.is_dir():
            raise ModelUnavailable(f"{path} is a directory without {MANIFEST_NAME}; is it a fine-tuned model output?")
        family_name = family or detect_family(path)
        fam = get_family(family_name)
        calc = fam.load(path, device=device, **options)
        info = {"name": path.name, "family": family_name, "version": "user checkpoint",
                "checkpoint": str(path.resolve()), "sha256": sha256_file(path)}
    else:
        spec = get_spec(text)
        fam = get_family(spec.family)
        ok, where = model_status(spec)
        if not ok:
            raise _unavailable(spec, where)
        checkpoint = None if spec.ships_with_package else Path(where)
        calc = fam.load(checkpoint, device=device, **{**spec.options, **options})
        info = {"name": spec.name, "family": spec.family, "version": spec.version,
                "checkpoint": str(checkpoint) if checkpoint else getattr(calc, "_umlip_checkpoint", where),
                "sha256": sha256_file(checkpoint) if checkpoint else getattr(calc, "_umlip_sha256", None)}
    info["device"] = device
    calc.umlip_info = info
    calc.umlip_family = fam
    return calc


def supported_elements(calc: "Calculator") -> set[str] | None:
    fam = getattr(calc, "umlip_family", None)
    return fam.supported_elements(calc) if fam is not None else None


def check_elements(atoms: "Atoms", calc: "Calculator", where: str = "structure") -> None:
    """Raise UnsupportedElements, before any computation, if ``atoms`` holds elements ``calc`` lacks."""
    covered = supported_elements(calc)
    if covered is None:
        return
    missing = sorted(set(atoms.get_chemical_symbols()) - covered)
    if missing:
        name = getattr(calc, "umlip_info", {}).get("name", type(calc).__name__)
        raise UnsupportedElements(
            f"{where}: model {name!r} does not cover element(s) {', '.join(missing)}; it covers {len(covered)} "
            f"elements ({', '.join(sorted(covered)[:12])}{', ...' if len(covered) > 12 else ''})"
        )
