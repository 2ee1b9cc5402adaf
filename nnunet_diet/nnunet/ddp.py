"""DDP: every rank adds every rank's per-case sums, so all ranks record the same values and take
the same stop decision (a decision that differed between ranks would hang nnU-Net's collectives)."""

from __future__ import annotations

import torch.distributed as dist

from ..core.accumulator import EpochAccumulator


def all_gather_sums(acc: EpochAccumulator) -> EpochAccumulator:
    """The sum of ``acc`` over all ranks (``acc`` itself when not running distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return acc
    gathered: list[EpochAccumulator | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, acc)
    merged = EpochAccumulator()
    merged.merge(gathered)
    return merged
