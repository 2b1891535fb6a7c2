"""Where the shipped data and the committed results are, in a checkout and in an installed package.

``data_path("ymno3", "ymno3_vasp_200.xyz")`` looks in, first to last:

1. ``$UMLIP_DATA_DIR``, when set (your own copy of ``data/``, e.g. on a cluster's shared file system);
2. the checkout's ``data/`` (an editable install, ``make setup``);
3. the copy installed with the package (``pip install .`` ships ``data/`` as ``umlip_helpers/shipped_data``).

``results_path(...)`` is ``$UMLIP_RESULTS_DIR`` or the checkout's ``benchmarks/results`` (not shipped: the
committed results belong to the book, not to the package).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .errors import UmlipError

#: the checkout this module sits in, when it sits in one (its pyproject.toml beside umlip_helpers/)
CHECKOUT = Path(__file__).resolve().parents[1]
DATA_ENV = "UMLIP_DATA_DIR"
RESULTS_ENV = "UMLIP_RESULTS_DIR"


def _in_checkout(*parts: str) -> Path | None:
    path = CHECKOUT.joinpath(*parts)
    return path if (CHECKOUT / "pyproject.toml").is_file() and path.is_dir() else None


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UmlipError(f"${name}={value} is not a folder")
    return path


def data_dir() -> Path:
    """The folder that holds the shipped data (see the module's docstring for the order searched)."""
    found = _from_env(DATA_ENV) or _in_checkout("data")
    if found:
        return found
    installed = Path(str(resources.files("umlip_helpers") / "shipped_data"))
    if installed.is_dir():
        return installed
    raise UmlipError(f"no shipped data: set ${DATA_ENV} to a copy of the repository's data/ folder, or "
                     "install the package from a checkout (pip install .)")


def data_path(*parts: str) -> Path:
    """A file or folder of the shipped data, e.g. ``data_path("ni", "ni_fcc_vasp.xyz")``."""
    return data_dir().joinpath(*parts)


def results_path(*parts: str) -> Path:
    """A file or folder of the committed benchmark results, e.g. ``results_path("finetune_ymno3.json")``."""
    return (_from_env(RESULTS_ENV) or CHECKOUT / "benchmarks" / "results").joinpath(*parts)
