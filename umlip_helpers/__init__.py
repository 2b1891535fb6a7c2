"""umlip_helpers: benchmark and fine-tune universal ML interatomic potentials against DFT.

Every model is an ASE calculator (:func:`load_calculator`: a registered name, a checkpoint file or a fine-tuned
directory), and what it is can be read with :func:`model_info`; every property function takes ``Atoms`` and a
calculator and returns a frozen result dataclass with units in its field names and a provenance record.
"""

from .errors import DataValidationError, ModelUnavailable, UmlipError, UnknownModel, UnsupportedElements
from .io import ModelInfo, model_info
from .models import DEFAULT_MODEL, load_calculator

__version__ = "0.1.0"
__all__ = ["DEFAULT_MODEL", "DataValidationError", "ModelInfo", "ModelUnavailable", "UmlipError", "UnknownModel",
           "UnsupportedElements", "load_calculator", "model_info", "__version__"]
