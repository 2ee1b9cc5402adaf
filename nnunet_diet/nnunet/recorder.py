"""Per-patch sums for DAD, EL2N and EL2Nx from nnU-Net's training outputs (torch side).

:func:`patch_sums` works on the highest-resolution output the trainer already computed for its
loss (no extra forward pass) and treats labels, regions and the ignore label exactly as
``nnUNetTrainer.validation_step`` does. The sums are pooled per case over an epoch by
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
        output = output.float()
        axes = tuple(range(2, output.ndim))
        if label_manager.has_regions:
            if label_manager.has_ignore_label:
                valid = (1 - target[:, -1:].float()) if target.dtype != torch.bool else (~target[:, -1:]).float()
                target = target[:, :-1]
            else:
                valid = None
            probs = torch.sigmoid(output)
            pred_onehot = (probs > 0.5).float()
            target_onehot = target.float()
            foreground = target_onehot.amax(1, keepdim=True)
        else:
            if label_manager.has_ignore_label:
                valid = (target != label_manager.ignore_label).float()
                target = torch.where(target == label_manager.ignore_label, torch.zeros_like(target), target)
            else:
                valid = None
            probs = torch.softmax(output, 1)
            pred_onehot = torch.zeros_like(output).scatter_(1, output.argmax(1, keepdim=True), 1)
            target_onehot = torch.zeros_like(output).scatter_(1, target.long(), 1)
            foreground = (target > 0).float()
        tp, fp, fn, _ = get_tp_fp_fn_tn(pred_onehot, target_onehot, axes=axes, mask=valid)
        if not label_manager.has_regions:  # drop background, as validation_step does
            tp, fp, fn = tp[:, 1:], fp[:, 1:], fn[:, 1:]
        norm = torch.linalg.vector_norm(probs - target_onehot, dim=1, keepdim=True)
        if valid is None:
            valid = torch.ones_like(norm)
        foreground = foreground * valid
        per_class = {"tp": tp, "fp": fp, "fn": fn}
        per_patch = {
            "el2n_sum": (norm * valid).sum(axes), "n_voxels": valid.sum(axes),
            "el2nx_sum": (norm * foreground).sum(axes), "n_foreground": foreground.sum(axes),
        }
        out = {k: v.cpu().numpy().astype(np.float64) for k, v in per_class.items()}
        out.update({k: v.reshape(-1).cpu().numpy().astype(np.float64) for k, v in per_patch.items()})
        return out


def case_values(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-case foreground Dice (TP/FP/FN pooled over patches and foreground classes), EL2N, EL2Nx."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "dice": foreground_dice(sums["tp"].sum(axis=1), sums["fp"].sum(axis=1), sums["fn"].sum(axis=1)),
            "el2n": np.where(sums["n_voxels"] > 0, sums["el2n_sum"] / sums["n_voxels"], np.nan),
            "el2nx": np.where(sums["n_foreground"] > 0, sums["el2nx_sum"] / sums["n_foreground"], np.nan),
        }
