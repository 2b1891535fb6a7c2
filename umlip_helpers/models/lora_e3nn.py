"""An equivariance-preserving LoRA layer for e3nn ``o3.Linear``, registered with peft as a custom module.

``o3.Linear`` mixes multiplicities inside each irrep block: for every instruction (i_in -> i_out with the same
irrep) it holds a weight ``W`` of shape ``(mul_in, mul_out)`` that acts identically on all ``2l+1`` components.
Any change to ``W`` therefore keeps the layer equivariant. The adapter here learns, per instruction, a low-rank
update ``delta W = scaling * (B @ A).T`` with ``A: (r, mul_in)`` and ``B: (mul_out, r)`` (B starts at zero) and
runs the base layer's own compiled code with ``W + delta W``. Merging adds ``delta W`` into the base weight, so
a merged model costs exactly what the base model costs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from e3nn import o3
from peft import LoraConfig
from peft.tuners.lora.layer import LoraLayer
from peft.tuners.tuners_utils import check_adapters_to_merge
from torch import nn


def weight_instructions(layer: o3.Linear) -> list[tuple[slice, tuple[int, int]]]:
    """(slice into the flat weight, (mul_in, mul_out)) for each multiplicity-mixing instruction of ``layer``."""
    blocks, offset = [], 0
    for ins in layer.instructions:
        if ins.i_in == -1:  # bias instructions live in layer.bias, not in layer.weight
            continue
        size = math.prod(ins.path_shape)
        blocks.append((slice(offset, offset + size), tuple(ins.path_shape)))
        offset += size
    return blocks


class E3nnLinearLora(nn.Module, LoraLayer):
    """peft LoRA layer for ``e3nn.o3.Linear`` (shared, internal weights). Use :func:`lora_config` to register it."""

    def __init__(self, base_layer: o3.Linear, adapter_name: str, config: LoraConfig, r: int = 0,
                 lora_alpha: int = 1, **kwargs: Any) -> None:
        super().__init__()
        if not (base_layer.internal_weights and base_layer.shared_weights) or base_layer.weight.ndim != 1:
            raise ValueError(
                f"E3nnLinearLora needs an o3.Linear with its own shared weights; {base_layer!r} takes external or "
                "per-sample weights (target the layer that produces them instead)"
            )
        LoraLayer.__init__(self, base_layer, **kwargs)
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, **kwargs)

    @property
    def irreps_in(self) -> o3.Irreps:  # models read these off their linears
        return self.get_base_layer().irreps_in

    @property
    def irreps_out(self) -> o3.Irreps:
        return self.get_base_layer().irreps_out

    def _get_in_out_features(self, module: nn.Module) -> tuple[int, int]:
        return module.irreps_in.dim, module.irreps_out.dim

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config: LoraConfig, **kwargs: Any) -> None:
        if r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r}")
        if config.lora_dropout:
            raise ValueError("E3nnLinearLora applies its update in weight space; set lora_dropout=0")
        if config.use_dora or config.lora_bias:
            raise ValueError("E3nnLinearLora supports plain LoRA only (no DoRA, no lora_bias)")
        base = self.get_base_layer()
        weight = base.weight
        a_blocks, b_blocks = nn.ParameterList(), nn.ParameterList()
        for _, (mul_in, mul_out) in weight_instructions(base):
            rank = min(r, mul_in, mul_out)
            a = torch.empty(rank, mul_in, dtype=weight.dtype, device=weight.device)
            if config.init_lora_weights is False:  # peft's convention: False means random B as well (for tests)
                nn.init.normal_(a, std=1.0 / math.sqrt(mul_in))
                b = torch.randn(mul_out, rank, dtype=weight.dtype, device=weight.device) / math.sqrt(rank)
            else:
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
                b = torch.zeros(mul_out, rank, dtype=weight.dtype, device=weight.device)
            a_blocks.append(nn.Parameter(a))
            b_blocks.append(nn.Parameter(b))
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        self.scaling[adapter_name] = lora_alpha / math.sqrt(r) if config.use_rslora else lora_alpha / r
        self.use_rslora[adapter_name] = config.use_rslora
        self.use_dora[adapter_name] = False
        self.lora_bias[adapter_name] = False
        self.lora_dropout[adapter_name] = nn.Identity()
        self.lora_A[adapter_name] = a_blocks
        self.lora_B[adapter_name] = b_blocks
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def get_delta_weight(self, adapter: str) -> torch.Tensor:
        """The flat update to ``base_layer.weight``: one low-rank block per instruction, zero elsewhere."""
        base = self.get_base_layer()
        pieces = []
        for (_, (mul_in, mul_out)), a, b in zip(weight_instructions(base), self.lora_A[adapter],
                                                self.lora_B[adapter]):
            pieces.append((b @ a).transpose(0, 1).reshape(mul_in * mul_out))
        delta = torch.cat(pieces) if pieces else base.weight.new_zeros(0)
        return delta * self.scaling[adapter]

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        for adapter in check_adapters_to_merge(self, adapter_names):
            if adapter not in self.lora_A:
                continue
            weight = self.get_base_layer().weight
            merged = weight.data + self.get_delta_weight(adapter).to(weight.dtype)
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"NaNs detected in the merged weights of adapter {adapter!r}")
            weight.data = merged
            self.merged_adapters.append(adapter)

    def unmerge(self) -> None:
        while self.merged_adapters:
            adapter = self.merged_adapters.pop()
            if adapter in self.lora_A:
                weight = self.get_base_layer().weight
                weight.data -= self.get_delta_weight(adapter).to(weight.dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        base = self.get_base_layer()
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return base(x, *args, **kwargs)
        active = [a for a in self.active_adapters if a in self.lora_A]
        if self.merged or not active:
            return base(x, *args, **kwargs)
        weight = base.weight
        for adapter in active:
            weight = weight + self.get_delta_weight(adapter)
        return base(x, weight, *args, **kwargs)

    def __repr__(self) -> str:
        return "lora." + super().__repr__()


def lora_config(target_modules: list[str] | str, r: int = 8, lora_alpha: int | None = None, **kwargs: Any
                ) -> LoraConfig:
    """A peft ``LoraConfig`` whose targets may include e3nn ``o3.Linear`` layers (through :class:`E3nnLinearLora`)."""
    config = LoraConfig(target_modules=target_modules, r=r, lora_alpha=lora_alpha if lora_alpha is not None else r,
                        lora_dropout=0.0, bias="none", **kwargs)
    config._register_custom_module({o3.Linear: E3nnLinearLora})
    return config
