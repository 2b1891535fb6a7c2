"""Data-parallel fine-tuning over several processes (torch.distributed), launched by ``torchrun`` or ``srun``.

Every rank holds the whole model and draws the same shuffled order of frames (one seed for the run); each optimiser
step's global batch of ``batch_size`` frames is split across the ranks (rank r takes frames r, r+W, ...), each rank
backpropagates its frames' share of the batch's mean loss, and the gradients of the trainable parameters (only the
adapters for LoRA) are summed across ranks in one all-reduce. The update is therefore the single-process update of the
same global batch, up to the order of floating-point sums. Predictions (for the energy shifts and the errors) and
validation losses are split the same way and gathered, so every rank fits the same shifts. Rank 0 writes checkpoints
and results (atomically); every rank resumes from them.

The backend is ``gloo`` on CPU and ``nccl`` on CUDA. Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) all
of this reduces to a single process and costs nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Any, Sequence

import torch


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def share(self, items: Sequence[Any]) -> list[Any]:
        """This rank's items: every ``world``-th one, from ``rank``."""
        return list(items[self.rank::self.world])

    def gather(self, mine: list[Any], total: int) -> list[Any]:
        """Every rank's :meth:`share` of a list of ``total`` items, back in the original order, on every rank."""
        if not self.parallel:
            return mine
        shares: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(shares, mine)
        merged: list[Any] = [None] * total
        for rank, share in enumerate(shares):
            merged[rank::self.world] = share
        return merged

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients of ``params`` over the ranks, in one all-reduce of one flat buffer."""
        if not self.parallel:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for param, grad in zip(params, grads):
            param.grad = flat[offset:offset + grad.numel()].view_as(param).clone()
            offset += grad.numel()

    def sum_counts(self, counts: Counter[str]) -> Counter[str]:
        """Each key's sum over the ranks (a rank may lack keys: one without frames this epoch)."""
        if not self.parallel:
            return counts
        every: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(every, dict(counts))
        total: Counter[str] = Counter()
        for share in every:
            total.update(share)
        return total

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Rank 0's values of every parameter and buffer (the same start everywhere, whatever each rank drew)."""
        if not self.parallel:
            return
        with torch.no_grad():
            for tensor in [*module.parameters(), *module.buffers()]:
                torch.distributed.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.parallel:
            torch.distributed.barrier()


def ranks(device: str = "cpu") -> Ranks:
    """The run's ranks: from torchrun's environment (initialising the process group once), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size())


def local_device(device: str) -> str:
    """Under torchrun on GPUs, each rank takes the GPU of its ``LOCAL_RANK``."""
    if device.startswith("cuda") and "LOCAL_RANK" in os.environ and ":" not in device:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device
