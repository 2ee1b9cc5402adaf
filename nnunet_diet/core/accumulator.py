"""Pool per-sample sums over an epoch: the update / aggregate / reset object trainers share.

A segmentation trainer sees a case several times per epoch (random patches, drawn with
replacement) or not at all; it adds each patch's sums (TP, FP, FN, error-norm sums, voxel counts)
under the case id and, at the end of the epoch, turns the pooled sums into one value per case.
Under DDP the sums of every rank are added (:meth:`merge`) before any value is computed, so all
ranks hold the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .errors import DietError

__all__ = ["EpochAccumulator"]


class EpochAccumulator:
    """Per-id running sums of named quantities (each a scalar or a fixed-length vector per id)."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, np.ndarray]] = {}
        self._names: tuple[str, ...] | None = None

    def update(self, ids: Iterable, sums: Mapping[str, np.ndarray]) -> None:
        """Add ``sums[name][k]`` to the running sum of ``ids[k]`` for each name (ids may repeat)."""
        ids = [str(i) for i in ids]
        names = tuple(sorted(sums))
        if self._names is None:
            self._names = names
        elif names != self._names:
            raise DietError(f"accumulator got quantities {names}, expected {self._names}")
        arrays = {n: np.asarray(sums[n], dtype=np.float64) for n in names}
        for n, a in arrays.items():
            if a.shape[0] != len(ids):
                raise DietError(f"{n!r}: {a.shape[0]} rows for {len(ids)} ids")
        for k, i in enumerate(ids):
            entry = self._sums.get(i)
            if entry is None:
                self._sums[i] = {n: arrays[n][k].copy() for n in names}
            else:
                for n in names:
                    entry[n] += arrays[n][k]

    def merge(self, others: Iterable[EpochAccumulator]) -> None:
        """Add the sums of other accumulators (e.g. gathered from every DDP rank) to this one."""
        for other in others:
            for i, entry in other._sums.items():
                self.update([i], {n: v[None] for n, v in entry.items()})

    def aggregate(self) -> tuple[list[str], dict[str, np.ndarray]]:
        """``(ids, sums)`` with ids sorted and each quantity stacked (ids x ...)."""
        ids = sorted(self._sums)
        if not ids:
            return [], {}
        return ids, {n: np.stack([self._sums[i][n] for i in ids]) for n in self._names or ()}

    def reset(self) -> None:
        self._sums.clear()
        self._names = None

    def __len__(self) -> int:
        return len(self._sums)
