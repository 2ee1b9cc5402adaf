"""Per-sample training dynamics from the training forward pass of a classifier (torch side).

For each sample of a batch, from the logits the loss uses (train mode, before the optimiser step,
as in the EVA code): ``error_norm`` = ||softmax - onehot(y)||_2 (EVA Eq. 3, EL2N), ``p_true`` = the
softmax probability of the true class, ``correct`` = 1 if the argmax is the label, ``margin`` =
``p_true`` - the largest other probability (AUM's margin on probabilities, as in the CCS code).
The trainer adds them to the :class:`~nnunet_diet.recording.EpochAccumulator` shared with the
nnU-Net trainer (values stay on the device until the epoch ends, then every rank's are added) and
records them in the :class:`~nnunet_diet.core.store.DynamicsStore` under their dataset indices.
"""

from __future__ import annotations

import torch

__all__ = ["SERIES", "batch_dynamics"]

SERIES = ("error_norm", "p_true", "correct", "margin")


@torch.no_grad()
def batch_dynamics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The :data:`SERIES` (one float32 value per sample) for logits ``B x K`` and labels ``B``."""
    prob = torch.softmax(logits.detach().float(), 1)
    target = labels[:, None]
    p_true = prob.gather(1, target)[:, 0]
    error = prob.scatter_add(1, target, -torch.ones_like(p_true)[:, None])  # softmax - onehot
    other = prob.scatter(1, target, -1.0).amax(1)
    return {"error_norm": torch.linalg.vector_norm(error, dim=1), "p_true": p_true,
            "correct": (prob.argmax(1) == labels).float(), "margin": p_true - other}
