"""Process group set-up for ``torchrun --nproc_per_node N`` (nccl on GPUs, gloo on CPU) and each rank's share of an epoch."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["Context", "setup", "teardown", "broadcast", "epoch_order"]


@dataclass(frozen=True)
class Context:
    """This process's rank, the world size and the device it trains on."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Context:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1),
    else run alone. ``device`` ``"cpu"`` / ``"cuda"`` overrides the default (CUDA when available)."""
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), dev)
    return Context(0, 1, dev)


def teardown() -> None:
    """Leave the process group (no-op when running alone)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(obj: object) -> object:
    """Rank 0's ``obj`` on every rank (``obj`` itself when running alone)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def epoch_order(n: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """This rank's positions (into the ``n`` training samples) for one shuffled epoch, and which are real.

    The permutation depends only on ``(seed, epoch)``, so every rank and a resumed run draw the same
    one. It is padded by wrapping to a multiple of ``world`` (as ``DistributedSampler`` does) and
    dealt out round-robin; padded positions are trained on but flagged ``False``: not recorded twice.
    """
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    padded = np.concatenate([perm, perm[: (-n) % world]])
    real = np.arange(len(padded)) < n
    return padded[rank::world], real[rank::world]
