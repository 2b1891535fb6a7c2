"""Which parameters train: ``full`` (all), ``head`` (the family's readout block) or ``lora`` (peft adapters on
nn.Linear and, through :mod:`umlip_helpers.models.lora_e3nn`, on e3nn o3.Linear) -- and how the trained weights
are saved (:mod:`umlip_helpers.models.finetuned` reads them back)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_write_bytes, atomic_write_text
from ..models.base import FamilyAdapter
from ..models.finetuned import (ADAPTER_CONFIG_FILE, EXTRA_PREFIX, WEIGHTS_FILE, Strategy, lora_config_for,
                                lora_extra_parameters)

STRATEGIES: tuple[str, ...] = ("lora", "head", "full")


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


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


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
