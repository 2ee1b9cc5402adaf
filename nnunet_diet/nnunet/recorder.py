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
    """``argmax(1)`` (the first maximum): pairwise comparisons for up to 8 classes, faster than
    ``max(1)`` there on CPU (a reduction over a strided axis), ``max(1).indices`` beyond."""
    c = output.shape[1]
    if c > 8:
        return output.max(1).indices  # = argmax(1), several times faster on CPU
    best, index = output[:, 0], torch.zeros(output[:, 0].shape, dtype=torch.long, device=output.device)
    for k in range(1, c):
        higher = output[:, k] > best
        index = torch.where(higher, k, index)
        best = torch.maximum(best, output[:, k])
    return index


def _label_sums(output: torch.Tensor, target: torch.Tensor, label_manager,
                error_norms: bool) -> dict[str, torch.Tensor]:
    """Labels: the same counts as ``get_tp_fp_fn_tn`` on the one-hot argmax (background dropped, ignore
    label masked), from one per-patch confusion matrix (``bincount``) instead of four one-hot products,
    and ``||p - onehot(y)||_2`` without building the one-hot target."""
    b, c = output.shape[:2]
    target = target[:, 0].long()
    valid = (target != label_manager.ignore_label) if label_manager.has_ignore_label else None
    if valid is not None:
        target = torch.where(valid, target, torch.zeros_like(target))
    pred = _first_max(output)
    cell = target * c + pred + (torch.arange(b, device=output.device) * c * c).view(b, *[1] * (pred.ndim - 1))
    if valid is not None:
        cell = torch.where(valid, cell, torch.full_like(cell, b * c * c))  # masked voxels: one spare bin
    confusion = torch.bincount(cell.reshape(-1), minlength=b * c * c + 1)[: b * c * c].view(b, c, c).double()
    tp = confusion.diagonal(dim1=1, dim2=2)
    fp = confusion.sum(1) - tp   # predicted c, reference another class
    fn = confusion.sum(2) - tp   # reference c, predicted another class
    out = {"tp": tp[:, 1:], "fp": fp[:, 1:], "fn": fn[:, 1:]}
    if not error_norms:
        return out
    probs = torch.softmax(output, 1)
    minus_one = torch.full_like(target, -1, dtype=probs.dtype).unsqueeze(1)
    error = probs.scatter_add_(1, target.unsqueeze(1), minus_one)  # p - onehot(y), in place
    norm = error.square_().sum(1).sqrt_()  # 15x faster than einsum or vector_norm over dim 1 on CPU
    valid = torch.ones_like(norm) if valid is None else valid.float()
    foreground = (target > 0).float() * valid
    axes = tuple(range(1, norm.ndim))
    out.update(el2n_sum=(norm * valid).sum(axes), n_voxels=valid.sum(axes),
               el2nx_sum=(norm * foreground).sum(axes), n_foreground=foreground.sum(axes))
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
