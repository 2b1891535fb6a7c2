"""Which parameters train: ``full`` (all), ``head`` (the family's readout block) or ``lora`` (peft adapters on
nn.Linear and, through :mod:`.lora_e3nn`, on e3nn o3.Linear) -- and how the trained weights are saved and re-applied."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import torch

from ..io import atomic_write_bytes, atomic_write_text
from .adapters import FamilyAdapter

Strategy = Literal["lora", "head", "full"]
STRATEGIES: tuple[str, ...] = ("lora", "head", "full")
WEIGHTS_FILE = {"lora": "adapter_model.safetensors", "head": "weights.safetensors", "full": "weights.safetensors"}
ADAPTER_CONFIG_FILE = "adapter_config.json"
#: key prefix, in the LoRA weights file, of the base parameters trained alongside the adapters
EXTRA_PREFIX = "umlip_lora_extra."


def is_e3nn_linear(layer: torch.nn.Module) -> bool:
    """An e3nn o3.Linear, also the copies torch.package makes of the class inside packaged (NequIP) models."""
    cls = type(layer)
    return cls.__name__ == "Linear" and cls.__module__.endswith("e3nn.o3._linear")


def lora_target_names(module: torch.nn.Module, adapter: FamilyAdapter) -> list[str]:
    """Names of the linear layers (torch or e3nn) whose names match the family's LoRA pattern."""
    names = [name for name, layer in module.named_modules()
             if (isinstance(layer, torch.nn.Linear) or is_e3nn_linear(layer))
             and re.fullmatch(adapter.lora_targets, name)]
    if not names:
        raise ValueError(f"{adapter.family}: no torch.nn.Linear or e3nn o3.Linear matches the LoRA targets "
                         f"{adapter.lora_targets!r}; this model cannot take LoRA adapters, use strategy='head' "
                         "or 'full'")
    return names


def lora_config_for(module: torch.nn.Module, adapter: FamilyAdapter, rank: int | None = None,
                    alpha: float | None = None):
    from .lora_e3nn import E3nnLinearLora, lora_config

    names = lora_target_names(module, adapter)
    config = lora_config(names, r=rank or adapter.lora_rank, lora_alpha=alpha)
    layers = dict(module.named_modules())
    config._register_custom_module({type(layers[n]): E3nnLinearLora for n in names if is_e3nn_linear(layers[n])})
    return config


def apply_strategy(module: torch.nn.Module, adapter: FamilyAdapter, strategy: Strategy,
                   lora_rank: int | None = None, lora_alpha: float | None = None) -> Any:
    """Set ``requires_grad`` for ``strategy``; for LoRA inject adapters into ``module`` in place.

    Returns the peft model for ``lora`` (its ``base_model.model`` is ``module``), else None.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if strategy == "lora":
        import peft

        peft_model = peft.get_peft_model(module, lora_config_for(module, adapter, lora_rank, lora_alpha))
        for param in lora_extra_parameters(module, adapter).values():
            param.requires_grad_(True)
        return peft_model
    if strategy == "full":
        # parameters the family froze on purpose (normalisation constants) stay frozen
        return None
    names = [n for n, _ in module.named_parameters()]
    head = [n for n in names if set(n.split(".")) & set(adapter.head_modules)]
    if not head:
        raise ValueError(f"{adapter.family}: no parameters under the head modules {adapter.head_modules}")
    for name, param in module.named_parameters():
        param.requires_grad_(name in head)
    return None


def lora_extra_parameters(module: torch.nn.Module, adapter: FamilyAdapter) -> dict[str, torch.nn.Parameter]:
    """The few base parameters the family trains in full alongside its LoRA adapters (``adapter.lora_extra``)."""
    pattern = getattr(adapter, "lora_extra", None)
    if not pattern:
        return {}
    return {n: p for n, p in module.named_parameters() if "lora_" not in n and re.fullmatch(pattern, n)}


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise KeyError(f"saved weights name parameters the model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_weights(out: Path, module: torch.nn.Module, peft_model: Any, strategy: Strategy) -> Path:
    """Write the trained weights (LoRA adapters, or the trained tensors) as safetensors, atomically."""
    from safetensors.torch import save

    path = out / WEIGHTS_FILE[strategy]
    if strategy == "lora":
        from peft import get_peft_model_state_dict

        tensors = get_peft_model_state_dict(peft_model)
        tensors |= {EXTRA_PREFIX + n: p.detach() for n, p in module.named_parameters()
                    if p.requires_grad and "lora_" not in n}  # the family's lora_extra parameters
        config = peft_model.peft_config["default"].to_dict()
        config["target_modules"] = peft_model.peft_config["default"].target_modules
        atomic_write_text(out / ADAPTER_CONFIG_FILE, json.dumps(_jsonable(config), indent=2))
    else:
        tensors = trainable_state(module)
    atomic_write_bytes(path, save({k: v.contiguous().cpu() for k, v in tensors.items()}))
    return path


def apply_saved_weights(module: torch.nn.Module, adapter: FamilyAdapter, out: Path, strategy: Strategy,
                        lora: dict | None = None) -> None:
    """Put the saved fine-tuned weights into ``module`` (LoRA adapters are merged: no inference overhead)."""
    from safetensors.torch import load_file

    tensors = load_file(str(out / WEIGHTS_FILE[strategy]))
    if strategy == "lora":
        import peft
        from peft import set_peft_model_state_dict

        lora = lora or {}
        extra = {k[len(EXTRA_PREFIX):]: tensors.pop(k) for k in list(tensors) if k.startswith(EXTRA_PREFIX)}
        config = lora_config_for(module, adapter, lora.get("r"), lora.get("lora_alpha"))
        peft_model = peft.get_peft_model(module, config)
        if extra:
            load_trainable_state(module, {k: v.to(next(module.parameters()).device) for k, v in extra.items()})
        result = set_peft_model_state_dict(peft_model, tensors)
        if result.unexpected_keys:
            raise KeyError(f"{out}: adapter tensors the model does not have: {result.unexpected_keys[:5]}")
        peft_model.merge_and_unload()
    else:
        load_trainable_state(module, {k: v.to(next(module.parameters()).device) for k, v in tensors.items()})


def parameter_counts(module: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters; LoRA adapters count as trainable and not in the total."""
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    total = sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)
    return trainable, total


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
