"""What every benchmark prints first: how fast this machine's cores are today (its speed varies
from day to day, so figures compare across runs by steps and beside this ceiling)."""

from __future__ import annotations

import time

import torch


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """float32 matmul throughput of the torch threads, GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9
