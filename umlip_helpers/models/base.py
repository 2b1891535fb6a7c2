"""The narrow interface every model family implements.

A family turns a checkpoint into an ASE calculator, builds a tiny random model of its
architecture for tests, and exposes the torch module behind a calculator to the trainer.
"""

from __future__ import annotations

import abc
import contextlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch
    from ase.calculators.calculator import Calculator


def pickle_mentions(path: Path, *markers: bytes) -> bool:
    """True if ``path`` is a torch zip archive whose pickle holds every marker (a key or class name).

    Reads only the small pickle index, never the tensors, and unpickles nothing.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            index = next((name for name in archive.namelist() if name.endswith("/data.pkl")), None)
            return index is not None and all(marker in archive.read(index) for marker in markers)
    except (zipfile.BadZipFile, OSError):
        return False


@contextlib.contextmanager
def preserve_global_state():
    """Undo a library's process-wide settings: torch's default dtype and e3nn's optimisation defaults.
    nequip's ``set_global_state`` switches both (float64, TorchScript), which would otherwise leak into every
    model built afterwards (a MACE built then cannot even be pickled)."""
    import torch

    dtype = torch.get_default_dtype()
    try:
        import e3nn
    except ImportError:
        e3nn = None
    e3nn_defaults = e3nn.get_optimization_defaults() if e3nn is not None else None
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        if e3nn is not None:
            e3nn.set_optimization_defaults(**e3nn_defaults)


class ModelFamily(abc.ABC):
    #: short name used in the registry and in fine-tuned manifests ("sevennet", "mace", ...)
    name: str
    #: pip distribution that must be importable ("sevenn", "mace-torch", ...)
    package: str

    @abc.abstractmethod
    def load(self, checkpoint: str | Path | None, device: str, **options: Any) -> "Calculator":
        """Return an ASE calculator. ``checkpoint`` is a file, or None for weights the package ships."""

    @abc.abstractmethod
    def build_tiny(self, path: str | Path, elements: Sequence[str], seed: int = 0) -> Path:
        """Write a tiny, randomly initialised model of this architecture to ``path``; return the file that
        ``load`` (and so ``load_calculator``) accepts."""

    def torch_module(self, calc: "Calculator") -> "torch.nn.Module":
        """The trainable torch module behind ``calc`` (used by the fine-tuning engine)."""
        raise NotImplementedError(f"{self.name}: torch_module is not implemented")

    def supported_elements(self, calc: "Calculator") -> set[str] | None:
        """Chemical symbols the model covers, or None if it covers every element."""
        return None

    def recognises(self, path: Path) -> bool:
        """True if ``path`` looks like a checkpoint of this family (used when no family is named)."""
        return False
