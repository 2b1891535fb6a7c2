"""umlip_helpers: benchmark and fine-tune universal ML interatomic potentials against DFT.

Every model is an ASE calculator (:func:`umlip_helpers.models.load_calculator`); every property
function takes ``Atoms`` and a calculator and returns a frozen result dataclass with units in its
field names and a provenance record.
"""

from .errors import DataValidationError, ModelUnavailable, UnknownModel, UnsupportedElements, UmlipError
from .models import DEFAULT_MODEL, load_calculator

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL", "DataValidationError", "ModelUnavailable", "UmlipError", "UnknownModel",
           "UnsupportedElements", "load_calculator", "__version__"]
