"""Embed every image of a source, sharded over ``torchrun`` processes (one shard file per rank).

Under ``torchrun --nproc_per_node N`` each rank (``RANK`` / ``WORLD_SIZE`` from the environment) embeds
ids ``rank::N`` into its own shard; rank 0 then waits for all shards and merges them (no process
group is needed: shards are plain files). A plain ``python`` run is rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DietError
from .selfsup import BadImage
from .store import finished, merge_shards, write_shard

__all__ = ["rank_and_world", "embed"]


def rank_and_world() -> tuple[int, int]:
    """``(RANK, WORLD_SIZE)`` as set by torchrun, ``(0, 1)`` otherwise."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= rank < world:
        raise DietError(f"RANK {rank} outside WORLD_SIZE {world}")
    return rank, world


def embed(source, encoder: Callable, out: str | Path, *, batch_size: int = 64, dtype: str = "float16",
          resume: bool = True, progress: bool = True) -> Path | None:
    """Embed ``source`` (ids + ``load(row)``) with ``encoder`` into the folder ``out``.

    Returns the merged folder on rank 0 and None on the other ranks. On CPU each rank uses
    ``cpu_count // world`` torch threads. A folder that already holds this embedding is left as it is
    (unless ``resume`` is False); one of other images or settings is refused.
    """
    rank, world = rank_and_world()
    out = Path(out)
    if world > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    signature = dict(encoder.signature, ids=len(source.ids))
    if finished(out, source.ids, signature, dtype) and resume:
        return out

    def encode(rows: np.ndarray) -> np.ndarray:
        try:
            return encoder([source.load(int(r)) for r in rows])
        except BadImage as exc:  # name the file of the image the encoder refused
            where = source.where(int(rows[exc.index])) if hasattr(source, "where") else f"row {rows[exc.index]}"
            raise DietError(f"{where}: {exc}") from None

    write_shard(out, len(source.ids), encode, signature, rank=rank, world=world, batch_size=batch_size,
                dtype=dtype, resume=resume, progress=progress)
    if rank != 0:
        return None
    return merge_shards(out, source.ids, signature, world, dtype=dtype)
