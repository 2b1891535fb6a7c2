"""Exceptions with messages that name the file, frame and field at fault."""

from __future__ import annotations


class UmlipError(Exception):
    """Base class of every error umlip_helpers raises on purpose."""


class ModelUnavailable(UmlipError):
    """A model's weights or its Python package are not on this machine."""


class UnknownModel(UmlipError, KeyError):
    """A model name that is neither in the registry nor a path."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnsupportedElements(UmlipError, ValueError):
    """A structure holds elements the model was not trained on."""


class DataValidationError(UmlipError, ValueError):
    """Input data (DFT frames, structures, reference tables) failed validation; ``problems`` lists every
    (file, frame, field, message)."""

    def __init__(self, problems: list[tuple[str, int | None, str, str]]):
        self.problems = problems
        lines = [
            f"{source}: frame {frame if frame is not None else '-'}: {field}: {message}"
            for source, frame, field, message in problems[:20]
        ]
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} problem(s) in the input data:\n" + "\n".join(lines) + more)


class UnstableStructure(UmlipError, RuntimeError):
    """Atoms overlap, positions are not finite, or a simulation blew up."""
