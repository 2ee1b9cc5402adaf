"""Per-patch sums for DAD, EL2N and EL2Nx from nnU-Net's training outputs (torch side).

:func:`patch_sums` works on the highest-resolution output the trainer already computed for its
loss (no extra forward pass) and treats labels, regions and the ignore label exactly as
``nnUNetTrainer.validation_step`` does (counts equal to nnU-Net's ``get_tp_fp_fn_tn``; tested). The
sums are pooled per case over an epoch by
:class:`~nnunet_diet.core.accumulator.EpochAccumulator` and turned into per-case values by
:func:`case_values`.
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn

from ..core.segmentation import foreground_dice

SERIES = ("dice", "el2n", "el2nx")


def patch_sums(output: torch.Tensor, target: torch.Tensor, label_manager) -> dict[str, np.ndarray]:
    """Sums of one batch, one row per patch.

    Args:
        output: logits, ``(b, c, *spatial)``.
        target: ``(b, 1, *spatial)`` label map, or ``(b, c[+1], *spatial)`` region maps (the last
            channel being the ignore mask when the dataset has an ignore label).
        label_manager: the trainer's ``LabelManager``.

    Returns:
        ``tp``, ``fp``, ``fn`` (b x foreground classes or regions), ``el2n_sum`` and ``n_voxels``
        (voxel-wise ||p - y||_2 summed over valid voxels), ``el2nx_sum`` and ``n_foreground`` (the
        same over foreground voxels).
    """
    with torch.no_grad():
        if label_manager.has_regions:
            return _region_sums(output.float(), target, label_manager)
        return _label_sums(output.float(), target, label_manager)


def _label_sums(output: torch.Tensor, target: torch.Tensor, label_manager) -> dict[str, np.ndarray]:
    """Labels: the same counts as ``get_tp_fp_fn_tn`` on the one-hot argmax (background dropped, ignore
    label masked), from one per-patch confusion matrix (``bincount``) instead of four one-hot products,
    and ``||p - onehot(y)||_2`` without building the one-hot target."""
    b, c = output.shape[:2]
    target = target[:, 0].long()
    valid = (target != label_manager.ignore_label) if label_manager.has_ignore_label else None
    if valid is not None:
        target = torch.where(valid, target, torch.zeros_like(target))
    pred = output.max(1).indices  # = argmax(1) (first maximum), several times faster on CPU
    cell = target * c + pred + (torch.arange(b, device=output.device) * c * c).view(b, *[1] * (pred.ndim - 1))
    if valid is not None:
        cell = torch.where(valid, cell, torch.full_like(cell, b * c * c))  # masked voxels: one spare bin
    confusion = torch.bincount(cell.reshape(-1), minlength=b * c * c + 1)[: b * c * c].view(b, c, c).double()
    tp = confusion.diagonal(dim1=1, dim2=2)
    fp = confusion.sum(1) - tp   # predicted c, reference another class
    fn = confusion.sum(2) - tp   # reference c, predicted another class
    probs = torch.softmax(output, 1)
    minus_one = torch.full_like(target, -1, dtype=probs.dtype).unsqueeze(1)
    error = probs.scatter_add_(1, target.unsqueeze(1), minus_one)  # p - onehot(y), in place
    norm = torch.einsum("bc...,bc...->b...", error, error).sqrt()  # faster than vector_norm over dim 1 on CPU
    valid = torch.ones_like(norm) if valid is None else valid.float()
    foreground = (target > 0).float() * valid
    axes = tuple(range(1, norm.ndim))
    out = {"tp": tp[:, 1:], "fp": fp[:, 1:], "fn": fn[:, 1:],
           "el2n_sum": (norm * valid).sum(axes), "n_voxels": valid.sum(axes),
           "el2nx_sum": (norm * foreground).sum(axes), "n_foreground": foreground.sum(axes)}
    return {k: v.cpu().numpy().astype(np.float64) for k, v in out.items()}


def _region_sums(output: torch.Tensor, target: torch.Tensor, label_manager) -> dict[str, np.ndarray]:
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
    norm = torch.linalg.vector_norm(probs - target_onehot, dim=1, keepdim=True)
    if valid is None:
        valid = torch.ones_like(norm)
    foreground = target_onehot.amax(1, keepdim=True) * valid
    out = {"tp": tp, "fp": fp, "fn": fn,
           "el2n_sum": (norm * valid).sum(axes).reshape(-1), "n_voxels": valid.sum(axes).reshape(-1),
           "el2nx_sum": (norm * foreground).sum(axes).reshape(-1),
           "n_foreground": foreground.sum(axes).reshape(-1)}
    return {k: v.cpu().numpy().astype(np.float64) for k, v in out.items()}


def case_values(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-case foreground Dice (TP/FP/FN pooled over patches and foreground classes), EL2N, EL2Nx."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "dice": foreground_dice(sums["tp"].sum(axis=1), sums["fp"].sum(axis=1), sums["fn"].sum(axis=1)),
            "el2n": np.where(sums["n_voxels"] > 0, sums["el2n_sum"] / sums["n_voxels"], np.nan),
            "el2nx": np.where(sums["n_foreground"] > 0, sums["el2nx_sum"] / sums["n_foreground"], np.nan),
        }
