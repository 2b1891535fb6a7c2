"""Models: every foundation model, by name or path, as an ASE calculator."""

from .base import ModelFamily
from .loading import (MANIFEST_NAME, check_elements, get_family, load_calculator, model_status, resolve_device,
                      set_threads, supported_elements)
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, get_spec, model_dirs

__all__ = ["DEFAULT_MODEL", "MANIFEST_NAME", "MODELS", "ModelFamily", "ModelSpec", "check_elements", "get_family",
           "get_spec", "load_calculator", "model_dirs", "model_status", "resolve_device", "set_threads",
           "supported_elements"]
