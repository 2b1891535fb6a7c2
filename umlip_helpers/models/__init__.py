"""Models: every foundation model, by name, checkpoint or fine-tuned directory, as an ASE calculator; one file per
family (``models/<family>.py``) behind one interface (:class:`ModelFamily`)."""

from .base import FamilyAdapter, ModelFamily, ReadoutEvaluation
from .finetuned import MANIFEST_NAME, read_manifest
from .loading import (FAMILY_NAMES, adapter_for, check_elements, family_of, get_family, load_calculator,
                      load_finetuned, model_status, resolve_device, set_threads, supported_elements)
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, get_spec, model_dirs
from .shifted import ShiftedCalculator, unshifted

__all__ = ["DEFAULT_MODEL", "FAMILY_NAMES", "FamilyAdapter", "MANIFEST_NAME", "MODELS", "ModelFamily", "ModelSpec",
           "ReadoutEvaluation", "ShiftedCalculator", "adapter_for", "check_elements", "family_of", "get_family",
           "get_spec", "load_calculator", "load_finetuned", "model_dirs", "model_status", "read_manifest",
           "resolve_device", "set_threads", "supported_elements", "unshifted"]
