"""Per-case values a segmentation trainer records each epoch, defined on plain arrays.

The nnU-Net adapter computes the same quantities in torch on the training outputs; these numpy
versions are the reference definitions (and what tests compare against).
"""

from __future__ import annotations

import numpy as np

from .errors import DietError

__all__ = ["foreground_dice", "error_norms"]


def foreground_dice(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, empty: float = np.nan) -> np.ndarray:
    """Dice 2TP / (2TP + FP + FN) from counts pooled per case (and over foreground classes).

    A case with no foreground in either prediction or reference (TP + FP + FN = 0) gets ``empty``:
    NaN as in nnU-Net's evaluation (default), or 0 as the DAD code's ``+1e-7`` denominator gives.
    """
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    if not tp.shape == fp.shape == fn.shape:
        raise DietError(f"tp, fp, fn shapes differ: {tp.shape}, {fp.shape}, {fn.shape}")
    if np.any((tp < 0) | (fp < 0) | (fn < 0)):
        raise DietError("tp, fp, fn must be non-negative counts")
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / denom, empty)


def error_norms(probs: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-case EL2N and EL2Nx for one forward pass (DAD paper's segmentation baselines).

    Args:
        probs: cases x classes x spatial... softmax probabilities.
        target: cases x spatial... integer labels (0 = background).

    Returns:
        ``(el2n, el2nx)``: the voxel-wise ||p - onehot(y)||_2 averaged over all voxels, and over
        foreground voxels only (NaN for a case with no foreground).
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(target)
    if p.ndim < 3 or y.shape != (p.shape[0], *p.shape[2:]):
        raise DietError(f"probs must be cases x classes x spatial and target cases x spatial; "
                        f"got {p.shape} and {y.shape}")
    onehot = np.moveaxis(np.eye(p.shape[1])[y.astype(np.int64)], -1, 1)
    norm = np.sqrt(((p - onehot) ** 2).sum(axis=1)).reshape(p.shape[0], -1)
    fg = (y > 0).reshape(p.shape[0], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        el2nx = (norm * fg).sum(axis=1) / fg.sum(axis=1)
    return norm.mean(axis=1), el2nx
