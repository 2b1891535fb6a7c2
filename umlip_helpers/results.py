"""The contract of every property result: a frozen dataclass with units in its field names."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from .io import atomic_write_json, to_jsonable


@dataclasses.dataclass(frozen=True)
class Result:
    """Base class. Subclasses add fields such as ``a0_angstrom`` and implement ``plot``.

    ``provenance`` (from :func:`umlip_helpers.io.provenance`) is always the last field.
    Arrays belong in fields too; ``to_dict`` turns them into lists.
    """

    summary_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def summary(self) -> dict[str, Any]:
        """The scalar headline numbers (``summary_fields``, or every scalar field)."""
        names = self.summary_fields or tuple(
            f.name for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), (int, float, str, bool)) and f.name != "provenance"
        )
        return {name: to_jsonable(getattr(self, name)) for name in names}

    def save_json(self, path: str | Path) -> Path:
        return atomic_write_json(path, {"type": type(self).__name__, **self.to_dict()})

    def plot(self, ax=None):  # pragma: no cover - overridden
        raise NotImplementedError(f"{type(self).__name__} has no plot")
