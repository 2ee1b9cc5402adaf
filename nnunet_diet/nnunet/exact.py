"""Exact mode: every k epochs, each training case on one fixed foreground-centred patch.

Online recording (the default, the DAD paper's) sees each case on randomly placed, augmented
patches, and only when the sampler draws it. Exact mode adds a deterministic measurement: the
network in eval mode, no augmentation, on the patch of the configured size centred on the centre of
the case's foreground bounding box (zero-padded where the image is smaller), so that every case
has a value at every evaluation. For a 2D configuration (a 2D patch of ``(c, z, y, x)`` data) the
patch lies in the slice with the most foreground, as 2D training draws slices of the volume. Sums
come from the same :func:`~.recorder.patch_sums` as online recording; under DDP each rank evaluates
every ``world``-th case and the accumulator adds the ranks' sums.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..recording import EpochAccumulator
from .recorder import patch_sums


def foreground_centre(seg: np.ndarray) -> tuple[int, ...]:
    """Centre of the bounding box of ``seg > 0`` (``seg``: ``(1, *spatial)``); the image centre when
    the case has no foreground."""
    fg = np.argwhere(np.asarray(seg[0]) > 0)
    if len(fg) == 0:
        return tuple(s // 2 for s in seg.shape[1:])
    return tuple(int(c) for c in (fg.min(0) + fg.max(0)) // 2)


def foreground_slice(seg: np.ndarray) -> int:
    """The slice along the first spatial axis of ``seg`` (``(1, z, y, x)``) with the most foreground
    voxels; the middle slice when the case has no foreground."""
    counts = (np.asarray(seg[0]) > 0).reshape(seg.shape[1], -1).sum(1)
    return int(counts.argmax()) if counts.any() else seg.shape[1] // 2


def fixed_patch(array: np.ndarray, centre: Sequence[int], patch_size: Sequence[int], fill: float = 0) -> np.ndarray:
    """The ``patch_size`` crop of ``array`` (``(c, *spatial)``, numpy or blosc2) centred on ``centre``,
    padded with ``fill``."""
    out = np.full((array.shape[0], *patch_size), fill, dtype=array.dtype)
    src, dst = [slice(None)], [slice(None)]
    for c, p, s in zip(centre, patch_size, array.shape[1:]):
        lo = c - p // 2
        a, b = max(lo, 0), min(lo + p, s)
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = array[tuple(src)]
    return out


def target_for(seg: np.ndarray, label_manager) -> np.ndarray:
    """The training target nnU-Net's transforms make from a preprocessed label patch: labels with the
    -1 outside the nonzero mask mapped to 0; for region datasets one channel per region plus, with an
    ignore label, the ignore mask as the last channel."""
    seg = np.where(seg < 0, 0, seg)
    if not label_manager.has_regions:
        return seg
    channels = [np.isin(seg[0], np.atleast_1d(r)) for r in label_manager.foreground_regions]
    if label_manager.has_ignore_label:
        channels.append(seg[0] == label_manager.ignore_label)
    return np.stack(channels).astype(np.int16)


class ExactEvaluator:
    """Evaluates a network on each training case's fixed patch; patches are cut once and cached on
    the CPU when they fit ``cache_bytes``, else re-read each evaluation."""

    def __init__(self, dataset, identifiers: Sequence[str], patch_size: Sequence[int], label_manager,
                 *, batch_size: int = 2, cache_bytes: int = 2 * 1024**3, error_norms: bool = True) -> None:
        self.dataset = dataset
        self.identifiers = [str(i) for i in identifiers]
        self.patch_size = tuple(int(p) for p in patch_size)
        self.label_manager = label_manager
        self.batch_size = max(1, int(batch_size))
        self.error_norms = error_norms
        self._centres: dict[str, tuple[int | None, tuple[int, ...]]] = {}  # (2D slice, centre)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_left = cache_bytes  # bytes the cache may still take

    def _patch(self, identifier: str) -> tuple[np.ndarray, np.ndarray]:
        if identifier in self._cache:
            return self._cache[identifier]
        data, seg = self.dataset.load_case(identifier)[:2]
        if identifier not in self._centres:
            z = foreground_slice(seg) if len(self.patch_size) == seg.ndim - 2 else None
            self._centres[identifier] = z, foreground_centre(seg if z is None else seg[:, z])
        z, centre = self._centres[identifier]
        if z is not None:  # 2D configuration: one slice of the volume
            data, seg = data[:, z], seg[:, z]
        # slice before converting: nnU-Net's blosc2 arrays decompress only the slice
        pair = (fixed_patch(data, centre, self.patch_size).astype(np.float32),
                target_for(fixed_patch(seg, centre, self.patch_size), self.label_manager))
        size = pair[0].nbytes + pair[1].nbytes
        if size <= self._cache_left:
            self._cache[identifier] = pair
            self._cache_left -= size
        return pair

    @torch.no_grad()
    def evaluate(self, network: torch.nn.Module, device: torch.device, *, rank: int = 0,
                 world_size: int = 1) -> EpochAccumulator:
        """Per-case sums of this rank's share of the cases (every ``world_size``-th from ``rank``); its
        :meth:`~nnunet_diet.recording.EpochAccumulator.aggregate` adds every rank's share."""
        acc = EpochAccumulator(self.identifiers, device)
        mine = self.identifiers[rank::world_size]
        was_training = network.training
        network.eval()
        try:
            for start in range(0, len(mine), self.batch_size):
                ids = mine[start:start + self.batch_size]
                pairs = [self._patch(i) for i in ids]
                x = torch.from_numpy(np.stack([p[0] for p in pairs])).to(device)
                y = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
                with torch.autocast(device.type, enabled=device.type == "cuda"):  # as validation_step
                    out = network(x)
                acc.update(ids, patch_sums(out[0] if isinstance(out, (list, tuple)) else out, y,
                                           self.label_manager, error_norms=self.error_norms))
        finally:
            network.train(was_training)
        return acc
