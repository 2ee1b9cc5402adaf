"""Per-sample training dynamics from the training forward pass, kept on the device, one store row per sample.

For each sample of a batch, from the logits the loss uses (train mode, before the optimiser step,
as in the EVA code): ``error_norm`` = ||softmax - onehot(y)||_2 (EVA Eq. 3, EL2N), ``p_true`` = the
softmax probability of the true class, ``correct`` = 1 if the argmax is the label, ``margin`` =
``p_true`` - the largest other probability (AUM's margin on probabilities, as in the CCS code).
Values stay on the device until the epoch ends; then every rank's rows are gathered and written to
the :class:`~nnunet_diet.core.store.DynamicsStore` under their dataset indices. The final partial
batch is recorded like any other; rows that DDP's padding repeats carry id -1 and are dropped.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..core.errors import DietError
from ..core.store import DynamicsStore

__all__ = ["SERIES", "batch_dynamics", "EpochRecorder", "epoch_order"]

SERIES = ("error_norm", "p_true", "correct", "margin")


@torch.no_grad()
def batch_dynamics(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``B x 4`` float32 tensor of the :data:`SERIES` for logits ``B x K`` and labels ``B``."""
    prob = torch.softmax(logits.detach().float(), 1)
    target = labels[:, None]
    p_true = prob.gather(1, target)[:, 0]
    error = prob.scatter_add(1, target, -torch.ones_like(p_true)[:, None])  # softmax - onehot
    other = prob.scatter(1, target, -1.0).amax(1)
    return torch.stack([torch.linalg.vector_norm(error, dim=1), p_true,
                        (prob.argmax(1) == labels).float(), p_true - other], dim=1)


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


def _all_gather(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` (same shape on every rank) over ranks; ``t`` itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t)
    return torch.cat(parts)


class EpochRecorder:
    """Collects one epoch of :func:`batch_dynamics` rows on the device; :meth:`flush` writes the store.

    Args:
        store: the store to write (ids = dataset indices, series :data:`SERIES`).
        n_local: rows this rank sees per epoch (padding included), equal on every rank.
        device: where the buffers live (the training device).
    """

    def __init__(self, store: DynamicsStore, n_local: int, device: torch.device) -> None:
        self.store = store
        self._ids = torch.full((n_local,), -1, dtype=torch.int64, device=device)
        self._values = torch.full((n_local, len(SERIES)), torch.nan, device=device)
        self._pos = 0

    def add(self, ids: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Keep the batch's rows; ``ids`` are dataset indices, -1 for padded rows."""
        end = self._pos + len(ids)
        self._ids[self._pos : end] = ids
        self._values[self._pos : end] = batch_dynamics(logits, labels)
        self._pos = end

    def flush(self, epoch: int) -> None:
        """Gather every rank's rows of ``epoch`` and record them (each sample exactly once)."""
        if self._pos != len(self._ids):
            raise DietError(f"epoch {epoch}: recorded {self._pos} of {len(self._ids)} rows of this rank")
        ids = _all_gather(self._ids).cpu().numpy()
        values = _all_gather(self._values).cpu().numpy()
        real = ids >= 0
        self.store.record(epoch, ids[real], {name: values[real, k] for k, name in enumerate(SERIES)})
        self._ids.fill_(-1)
        self._values.fill_(torch.nan)
        self._pos = 0
