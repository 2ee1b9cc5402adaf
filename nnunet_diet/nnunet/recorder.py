"""Per-patch sums for DAD, EL2N and EL2Nx from nnU-Net's training outputs (torch side).

:func:`patch_sums` works on the highest-resolution output the trainer already computed for its
loss (no extra forward pass) and treats labels, regions and the ignore label exactly as
``nnUNetTrainer.validation_step`` does (counts equal to nnU-Net's ``get_tp_fp_fn_tn``; tested). The
sums stay on the device, are pooled per case over an epoch by
:class:`~nnunet_diet.recording.EpochAccumulator` and turned into per-case values by
:func:`case_values`.
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn

from ..core.segmentation import foreground_dice
from .config import SERIES

__all__ = ["SERIES", "patch_sums", "case_values"]

def patch_sums(output: torch.Tensor, target: torch.Tensor, label_manager, *,
               error_norms: bool = True) -> dict[str, torch.Tensor]:
    """Sums of one batch, one row per patch, in fp32 whatever the autocast state (the trainer calls
    this inside nnU-Net's CUDA autocast, where ``einsum`` / ``matmul``-like ops would run in fp16).

    Args:
        output: logits, ``(b, c, *spatial)``.
        target: ``(b, 1, *spatial)`` label map, or ``(b, c[+1], *spatial)`` region maps (the last
            channel being the ignore mask when the dataset has an ignore label).
        label_manager: the trainer's ``LabelManager``.
        error_norms: also the EL2N / EL2Nx sums (softmax or sigmoid and the voxel-wise error norm);
            False records what DAD needs only, the confusion counts.

    Returns:
        float64 tensors on the output's device: ``tp``, ``fp``, ``fn`` (b x foreground classes or regions) and, with ``error_norms``,
        ``el2n_sum`` and ``n_voxels`` (voxel-wise ||p - y||_2 summed over valid voxels),
        ``el2nx_sum`` and ``n_foreground`` (the same over foreground voxels).
    """
    with torch.no_grad(), torch.autocast(output.device.type, enabled=False):
        if label_manager.has_regions:
            out = _region_sums(output.float(), target, label_manager, error_norms)
        else:
            out = _label_sums(output.float(), target, label_manager, error_norms)
    return {k: v.double() for k, v in out.items()}


def _first_max(output: torch.Tensor) -> torch.Tensor:
    """``argmax(1)`` (the first maximum). Up to 8 classes: pairwise comparisons in uint8 arithmetic
    (``index = index * (1 - higher) + k * higher``, with ``higher = x_k > max(x_0..x_k-1)`` so that ties
    keep the first class), several times faster on CPU than ``max(1)`` (a reduction over a strided axis)
    or ``torch.where`` / ``masked_fill_`` (not vectorised for bool masks); ``max(1).indices`` beyond."""
    c = output.shape[1]
    if c > 8:
        return output.max(1).indices  # = argmax(1), several times faster on CPU
    best, index = output[:, 0], torch.zeros(output[:, 0].shape, dtype=torch.uint8, device=output.device)
    for k in range(1, c):
        higher = (output[:, k] > best).view(torch.uint8)  # a bool tensor's bytes are 0 / 1
        index.mul_(1 - higher).add_(higher, alpha=k)
        best = torch.maximum(best, output[:, k])
    return index


def _label_sums(output: torch.Tensor, target: torch.Tensor, label_manager,
                error_norms: bool) -> dict[str, torch.Tensor]:
    """Labels: the same counts as ``get_tp_fp_fn_tn`` on the one-hot argmax (background dropped, ignore
    label masked), from one per-patch confusion matrix (``bincount`` of ``b * c * c`` cells, in int16
    where they fit) instead of four one-hot products, and ``||p - onehot(y)||_2`` without building the
    one-hot target (its voxel counts are the confusion matrix's rows)."""
    b, c = output.shape[:2]
    spare = b * c * c  # masked voxels' bin
    dtype = torch.int16 if spare < torch.iinfo(torch.int16).max else torch.long
    labels = target[:, 0].to(dtype, copy=True)
    valid = (labels != label_manager.ignore_label) if label_manager.has_ignore_label else None
    if valid is not None:
        labels.mul_(valid)  # masked voxels count as background in the error norms (and not at all below)
    offset = (torch.arange(b, device=output.device, dtype=dtype) * c * c).view(b, *[1] * (labels.ndim - 1))
    cell = (labels * c).add_(offset).add_(_first_max(output))
    if valid is not None:
        cell = torch.where(valid, cell, torch.full_like(cell, spare))
    confusion = torch.bincount(cell.reshape(-1), minlength=spare + 1)[:spare].view(b, c, c).double()
    tp = confusion.diagonal(dim1=1, dim2=2)
    fp = confusion.sum(1) - tp   # predicted c, reference another class
    fn = confusion.sum(2) - tp   # reference c, predicted another class
    out = {"tp": tp[:, 1:], "fp": fp[:, 1:], "fn": fn[:, 1:]}
    if not error_norms:
        return out
    error = torch.softmax(output, 1).scatter_(1, labels.long().unsqueeze(1), -1.0, reduce="add")  # p - onehot(y)
    norm = error.square_().sum(1).sqrt_()  # 15x faster than einsum or vector_norm over dim 1 on CPU
    if valid is not None:
        norm.mul_(valid)
    axes = tuple(range(1, norm.ndim))
    out.update(el2n_sum=norm.sum(axes), n_voxels=confusion.sum((1, 2)),
               el2nx_sum=(norm * (labels > 0)).sum(axes), n_foreground=confusion[:, 1:].sum((1, 2)))
    return out


def _region_sums(output: torch.Tensor, target: torch.Tensor, label_manager,
                 error_norms: bool) -> dict[str, torch.Tensor]:
    """Regions (sigmoid > 0.5 per region, ignore mask = last target channel), with ``get_tp_fp_fn_tn``."""
    axes = tuple(range(2, output.ndim))
    if label_manager.has_ignore_label:
        valid = (1 - target[:, -1:].float()) if target.dtype != torch.bool else (~target[:, -1:]).float()
        target = target[:, :-1]
    else:
        valid = None
    probs = torch.sigmoid(output)
    target_onehot = target.float()
    tp, fp, fn, _ = get_tp_fp_fn_tn((probs > 0.5).float(), target_onehot, axes=axes, mask=valid)
    out = {"tp": tp, "fp": fp, "fn": fn}
    if not error_norms:
        return out
    norm = (probs - target_onehot).square_().sum(1, keepdim=True).sqrt_()
    if valid is None:
        valid = torch.ones_like(norm)
    foreground = target_onehot.amax(1, keepdim=True) * valid
    out.update(el2n_sum=(norm * valid).sum(axes).reshape(-1), n_voxels=valid.sum(axes).reshape(-1),
               el2nx_sum=(norm * foreground).sum(axes).reshape(-1), n_foreground=foreground.sum(axes).reshape(-1))
    return out


def case_values(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-case foreground Dice (TP/FP/FN pooled over patches and foreground classes) and, when the
    sums hold error norms, EL2N and EL2Nx."""
    sums = {k: np.asarray(v, dtype=np.float64) for k, v in sums.items()}
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"dice": foreground_dice(sums["tp"].sum(axis=1), sums["fp"].sum(axis=1), sums["fn"].sum(axis=1))}
        if "el2n_sum" in sums:
            out["el2n"] = np.where(sums["n_voxels"] > 0, sums["el2n_sum"] / sums["n_voxels"], np.nan)
            out["el2nx"] = np.where(sums["n_foreground"] > 0, sums["el2nx_sum"] / sums["n_foreground"], np.nan)
    return out
