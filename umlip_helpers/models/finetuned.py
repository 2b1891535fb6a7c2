"""The format of a saved fine-tuned model: a directory with ``umlip_model.json`` (the manifest) and the trained
weights; ``loading.load_calculator`` loads it back as an ASE calculator.

The manifest records the base model (name or checkpoint, sha256), the strategy, hyperparameters, data hashes and
the per-element energy shifts fitted on the training set; the calculator (:class:`~.shifted.ShiftedCalculator`)
adds those shifts back. The trainer (:mod:`umlip_helpers.finetune`) writes this format; the models layer reads it,
so that loading a model never needs the training code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..choices import Strategy
from ..errors import ModelUnavailable

if TYPE_CHECKING:
    import torch

    from .base import FamilyAdapter

#: File written into every fine-tuned or distilled model directory.
MANIFEST_NAME = "umlip_model.json"
MANIFEST_FORMAT = "umlip-finetuned/1"
WEIGHTS_FILE = {"lora": "adapter_model.safetensors", "head": "weights.safetensors", "full": "weights.safetensors"}
ADAPTER_CONFIG_FILE = "adapter_config.json"
#: key prefix, in the LoRA weights file, of the base parameters trained alongside the adapters
EXTRA_PREFIX = "umlip_lora_extra."


def is_e3nn_linear(layer: "torch.nn.Module") -> bool:
    """An e3nn o3.Linear, also the copies torch.package makes of the class inside packaged (NequIP) models."""
    cls = type(layer)
    return cls.__name__ == "Linear" and cls.__module__.endswith("e3nn.o3._linear")


def lora_target_names(module: "torch.nn.Module", adapter: "FamilyAdapter") -> list[str]:
    """Names of the linear layers (torch or e3nn) whose names match the family's LoRA pattern."""
    import torch

    names = [name for name, layer in module.named_modules()
             if (isinstance(layer, torch.nn.Linear) or is_e3nn_linear(layer))
             and re.fullmatch(adapter.lora_targets, name)]
    if not names:
        raise ValueError(f"{adapter.family}: no torch.nn.Linear or e3nn o3.Linear matches the LoRA targets "
                         f"{adapter.lora_targets!r}; this model cannot take LoRA adapters, use strategy='head' "
                         "or 'full'")
    return names


def lora_config_for(module: "torch.nn.Module", adapter: "FamilyAdapter", rank: int | None = None,
                    alpha: float | None = None):
    from .lora_e3nn import E3nnLinearLora, lora_config

    names = lora_target_names(module, adapter)
    config = lora_config(names, r=rank or adapter.lora_rank, lora_alpha=alpha)
    layers = dict(module.named_modules())
    config._register_custom_module({type(layers[n]): E3nnLinearLora for n in names if is_e3nn_linear(layers[n])})
    return config


def lora_extra_parameters(module: "torch.nn.Module", adapter: "FamilyAdapter") -> dict[str, "torch.nn.Parameter"]:
    """The few base parameters the family trains in full alongside its LoRA adapters (``adapter.lora_extra``)."""
    pattern = adapter.lora_extra
    if not pattern:
        return {}
    return {n: p for n, p in module.named_parameters() if "lora_" not in n and re.fullmatch(pattern, n)}


def load_trainable_state(module: "torch.nn.Module", state: dict[str, "torch.Tensor"]) -> None:
    import torch

    params = dict(module.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise KeyError(f"saved weights name parameters the model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def apply_saved_weights(module: "torch.nn.Module", adapter: "FamilyAdapter", out: Path, strategy: Strategy,
                        lora: dict | None = None) -> None:
    """Put the saved fine-tuned weights into ``module`` (LoRA adapters are merged: no inference overhead)."""
    from safetensors.torch import load_file

    tensors = load_file(str(out / WEIGHTS_FILE[strategy]))
    device = next(module.parameters()).device
    if strategy != "lora":
        load_trainable_state(module, {k: v.to(device) for k, v in tensors.items()})
        return
    import peft
    from peft import set_peft_model_state_dict

    lora = lora or {}
    extra = {k[len(EXTRA_PREFIX):]: tensors.pop(k) for k in list(tensors) if k.startswith(EXTRA_PREFIX)}
    peft_model = peft.get_peft_model(module, lora_config_for(module, adapter, lora.get("r"), lora.get("lora_alpha")))
    if extra:
        load_trainable_state(module, {k: v.to(device) for k, v in extra.items()})
    result = set_peft_model_state_dict(peft_model, tensors)
    if result.unexpected_keys:
        raise KeyError(f"{out}: adapter tensors the model does not have: {result.unexpected_keys[:5]}")
    peft_model.merge_and_unload()


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelUnavailable(f"{path} does not exist: {directory} is not a fine-tuned model directory") from None
    except json.JSONDecodeError as exc:
        raise ModelUnavailable(f"{path}: not valid JSON ({exc})") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelUnavailable(f"{path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    return manifest


def base_location(directory: Path, base_info: dict[str, Any]) -> str:
    """Where the base model is: as recorded, or relative to ``directory`` when both moved together."""
    load = base_info["load"]
    if base_info.get("load_relative") and not Path(load).exists():  # a path: a checkpoint or fine-tuned directory
        moved = (directory / base_info["load_relative"]).resolve()
        if not moved.exists():
            raise ModelUnavailable(f"{directory} was fine-tuned from {load}, which is missing (nor is it at {moved}, "
                                   "where it would be had both moved together); put it back at either place")
        return str(moved)  # the caller's sha256 check still applies
    return load
