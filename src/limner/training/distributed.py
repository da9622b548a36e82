"""Data-parallel training under torchrun: one process per device, gradients averaged.

    torchrun --nproc-per-node 2 -m limner.cli train --preset shapes      # one machine
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 -m limner.cli train --preset emoji   # each node

Every process draws the same global batch from the same seeded sampler and keeps
its own slice, so N processes take the steps one process would take on the whole
batch; after each backward the gradients are averaged with all_reduce (gloo on CPU,
nccl on GPU) before the optimiser steps. The gradient penalty differentiates with
torch.autograd.grad, which DistributedDataParallel's gradient hooks do not support,
so the averaging is done here, between backward and step, as DDP does it. Only
rank 0 logs, validates and writes checkpoints; `train_batch_size` is the global
batch, so a run resumes into any number of processes that divides it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from limner.errors import ConfigError


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_environment(cls, device: str = "auto") -> "DistributedContext":
        """The process group torchrun describes in the environment (one process if none)."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for, but PyTorch sees no GPU")
        torch_device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(torch_device)
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        return cls(rank=dist.get_rank() if world_size > 1 else 0, world_size=world_size, device=torch_device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def part(self, global_batch: int) -> slice:
        """This process's slice of a global batch."""
        if global_batch % self.world_size:
            raise ConfigError(f"train_batch_size ({global_batch}) must be a multiple of the number of processes ({self.world_size})")
        size = global_batch // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def average_gradients(self, module: nn.Module) -> None:
        """Replace each gradient by its mean over the processes (one flattened all_reduce)."""
        if self.world_size == 1:
            return
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def any(self, flag: bool) -> bool:
        """True on every process if it is True on any (so all stop at the same step)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
