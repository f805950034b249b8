"""Data-parallel training across processes (``torchrun``), on CPUs (gloo) or GPUs (NCCL).

Every process draws the same global batch from the same seeded generators and trains on its own
contiguous slice of it; DistributedDataParallel averages the gradients. The update therefore
equals the single-process update on the whole batch (up to floating-point summation order), and
the random streams, checkpoints and exact resume stay those of a single process. Drawing the whole
batch on every rank costs a little data loading, which is cheap next to the model.

    torchrun --standalone --nproc_per_node 8 -m streamdit.train --profile gpu   # one machine
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 \\
             --rdzv_backend c10d --rdzv_endpoint host0:29500 -m streamdit.train --profile gpu

Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank among ``world`` processes, ``local`` rank on its machine."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and the final model."""
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """This rank's contiguous slice of a global batch of ``batch`` rows."""
        if batch % self.world:
            raise ValueError(
                f"train.batch_size={batch} must be divisible by the number of processes ({self.world})"
            )
        per_rank = batch // self.world
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over all ranks (every rank gets it)."""
        if self.world == 1:
            return float(value.detach())
        total = value.detach().float().reshape(1).clone()
        dist.all_reduce(total)
        return float(total) / self.world


def init_distributed(device: str) -> tuple[Ranks, str]:
    """Join the ``torchrun`` process group if there is one; returns the ranks and this rank's device.

    CUDA jobs use NCCL with one GPU per local rank (``cuda:<local rank>``); CPU jobs use gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), device
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))
    if device.startswith("cuda"):
        if ranks.local >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {ranks.local} has no GPU: this machine has {torch.cuda.device_count()}; "
                "start at most that many processes per node"
            )
        device = f"cuda:{ranks.local}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return ranks, device


def finish_distributed() -> None:
    """Leave the process group (after the last collective) so the processes exit cleanly."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
