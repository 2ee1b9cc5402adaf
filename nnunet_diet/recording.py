"""The one recorder of both adapters: per-sample sums pooled over an epoch on the training device.

A segmentation trainer sees a case several times per epoch (random patches, drawn with replacement)
or not at all; it adds each patch's sums (TP, FP, FN, error-norm sums, voxel counts) under the case
and, at the end of the epoch, turns the pooled sums into one value per case. A classifier sees each
sample once per epoch and adds its values (EVA's error norm, p_true, ...) the same way. Sums stay
on the device (``index_add_``, no host synchronisation per batch); :meth:`EpochAccumulator.aggregate`
adds every DDP rank's sums (one ``all_reduce`` per quantity) before anything is returned, so all
ranks hold the same numbers and take the same stop decision (a decision that differed between ranks
would hang the trainers' collectives). The update / aggregate / reset shape is MONAI's
``Cumulative`` / ``CumulativeIterationMetric``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .core.errors import DietError

__all__ = ["EpochAccumulator", "distributed"]


def distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class EpochAccumulator:
    """Running sums per sample of named quantities (each a scalar or a fixed-length vector per sample).

    Args:
        ids: the samples that can be recorded (training cases, dataset rows), in store order.
        device: where the sums live (the training device).
    """

    def __init__(self, ids: Sequence, device: torch.device | str = "cpu") -> None:
        self.ids = list(ids)
        self.device = torch.device(device)
        self._position = {str(i): k for k, i in enumerate(self.ids)}
        self._sums: dict[str, torch.Tensor] = {}
        # one spare row (index n) takes what is added under position -1 (DDP padding), without a
        # data-dependent mask that would synchronise with the host
        self._count = torch.zeros(len(self.ids) + 1, dtype=torch.float64, device=self.device)

    def positions(self, keys: Sequence) -> torch.Tensor:
        """Store positions of sample ids ``keys`` (on the device)."""
        try:
            return torch.tensor([self._position[str(k)] for k in keys], dtype=torch.long, device=self.device)
        except KeyError as missing:
            raise DietError(f"sample {missing.args[0]} is not one of the {len(self.ids)} recorded samples") from None

    def update(self, index: torch.Tensor | Sequence, sums: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        """Add ``sums[name][k]`` to the sums of sample ``index[k]`` (positions may repeat).

        ``index`` holds store positions (a long tensor; -1 for a row to leave out, e.g. DDP padding)
        or sample ids (mapped with :meth:`positions`).
        """
        index = index.to(self.device) if isinstance(index, torch.Tensor) else self.positions(index)
        index = torch.where(index >= 0, index, len(self.ids))
        if self._sums and set(sums) != set(self._sums):
            raise DietError(f"accumulator got quantities {sorted(sums)}, expected {sorted(self._sums)}")
        for name, value in sums.items():
            value = torch.as_tensor(value).to(self.device, torch.float64)
            if value.shape[0] != len(index):
                raise DietError(f"{name!r}: {value.shape[0]} rows for {len(index)} samples")
            if name not in self._sums:
                self._sums[name] = torch.zeros((len(self.ids) + 1, *value.shape[1:]), dtype=torch.float64,
                                               device=self.device)
            self._sums[name].index_add_(0, index, value)
        self._count.index_add_(0, index, torch.ones(len(index), dtype=torch.float64, device=self.device))

    def aggregate(self) -> tuple[list, dict[str, np.ndarray], np.ndarray]:
        """``(ids, sums, counts)`` of the samples added at least once on any rank, in store order.

        Under DDP this is a collective: every rank must call it; the sums of all ranks are added.
        """
        sums, count = self._reduced()
        seen = np.flatnonzero(count[:-1] > 0)
        return [self.ids[k] for k in seen], {n: v[seen] for n, v in sums.items()}, count[seen]

    def _reduced(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        sums, count = dict(self._sums), self._count
        if distributed():
            shapes: list[dict | None] = [None] * dist.get_world_size()
            dist.all_gather_object(shapes, {n: tuple(v.shape) for n, v in sums.items()})
            for name, shape in sorted({kv for s in shapes for kv in s.items()}):  # a rank that saw nothing
                if name not in sums:
                    sums[name] = torch.zeros(shape, dtype=torch.float64, device=self.device)
            count = count.clone()
            dist.all_reduce(count)
            for name in sorted(sums):
                sums[name] = sums[name].clone()
                dist.all_reduce(sums[name])
        return {n: v.cpu().numpy() for n, v in sums.items()}, count.cpu().numpy()

    def reset(self) -> None:
        """Start the next epoch."""
        self._sums.clear()
        self._count.zero_()
