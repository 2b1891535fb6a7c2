"""Frozen settings dataclasses built from keyword arguments: the one way every long workflow (``run_md``,
``relax_active``, the periodic and production workflows, ``distill``) turns keywords or a config file into its
settings object, with the same error for a misspelt keyword everywhere."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

S = TypeVar("S")


def settings_from(cls: type[S], settings: S | None, options: Mapping[str, Any], where: str) -> S:
    """``settings`` (or the defaults of ``cls``) with the keyword ``options`` put in; an option that is not a field
    of ``cls`` is a TypeError naming ``where``, as a misspelt keyword argument would be."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"{where}() got unexpected keyword arguments: {', '.join(unknown)} (settings fields: "
                        f"{', '.join(sorted(names))})")
    return dataclasses.replace(settings, **options) if settings is not None else cls(**options)


def check_choice(name: str, value: Any, choices: tuple, spelled: str) -> None:
    """ValueError ``"{name} must be {spelled}, not {value!r}"`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be {spelled}, not {value!r}")
