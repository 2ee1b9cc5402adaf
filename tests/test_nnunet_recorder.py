"""Per-case aggregation of nnUNetTrainerDAD against nnU-Net's own get_tp_fp_fn_tn, on hand-made batches."""

import numpy as np
import pytest
import torch
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_diet.core.segmentation import error_norms
from nnunet_diet.nnunet.recorder import case_values, patch_sums
from nnunet_diet.recording import EpochAccumulator

AXES = (2, 3, 4)


def _onehot(index: torch.Tensor, channels: int) -> torch.Tensor:
    return torch.zeros(index.shape[0], channels, *index.shape[2:]).scatter_(1, index.long(), 1)


def test_labels_match_nnunet_and_the_numpy_reference():
    g = torch.Generator().manual_seed(0)
    lm = LabelManager({"background": 0, "anterior": 1, "posterior": 2}, None)
    output = torch.randn(3, 3, 4, 5, 6, generator=g) * 3
    target = torch.randint(0, 3, (3, 1, 4, 5, 6), generator=g)
    target[2] = 0                       # a patch with no foreground at all ...
    output[2, 0] = 10                   # ... predicted as background: TP = FP = FN = 0
    sums = patch_sums(output, target, lm)
    tp, fp, fn, _ = get_tp_fp_fn_tn(_onehot(output.argmax(1, keepdim=True), 3), target, axes=AXES)
    np.testing.assert_allclose(sums["tp"], tp[:, 1:].numpy())
    np.testing.assert_allclose(sums["fp"], fp[:, 1:].numpy())
    np.testing.assert_allclose(sums["fn"], fn[:, 1:].numpy())
    el2n, el2nx = error_norms(torch.softmax(output, 1).numpy(), target[:, 0].numpy())
    values = case_values(sums)
    np.testing.assert_allclose(values["el2n"], el2n, rtol=1e-5)
    np.testing.assert_allclose(values["el2nx"][:2], el2nx[:2], rtol=1e-5)
    assert np.isnan(values["el2nx"][2]) and np.isnan(values["dice"][2])  # empty foreground: NaN, not 0
    t, f, n = (a[:2].sum(axis=1) for a in (tp[:, 1:].numpy(), fp[:, 1:].numpy(), fn[:, 1:].numpy()))
    np.testing.assert_allclose(values["dice"][:2], 2 * t / (2 * t + f + n), rtol=1e-6)


def test_ignore_label_is_masked_as_in_validation_step():
    g = torch.Generator().manual_seed(1)
    lm = LabelManager({"background": 0, "lesion": 1, "ignore": 2}, None)
    assert lm.has_ignore_label and lm.ignore_label == 2
    output = torch.randn(2, 2, 4, 4, 4, generator=g) * 3
    target = torch.randint(0, 3, (2, 1, 4, 4, 4), generator=g)
    original = target.clone()
    sums = patch_sums(output, target, lm)
    assert torch.equal(target, original)  # the loss's target is not modified
    mask = (target != 2).float()
    clean = torch.where(target == 2, 0, target)
    tp, fp, fn, _ = get_tp_fp_fn_tn(_onehot(output.argmax(1, keepdim=True), 2), clean, axes=AXES, mask=mask)
    np.testing.assert_allclose(sums["tp"], tp[:, 1:].numpy())
    np.testing.assert_allclose(sums["fp"], fp[:, 1:].numpy())
    np.testing.assert_allclose(sums["fn"], fn[:, 1:].numpy())
    assert np.array_equal(sums["n_voxels"], mask.sum(AXES).reshape(-1).numpy())
    norm = torch.linalg.vector_norm(torch.softmax(output, 1) - _onehot(clean, 2), dim=1, keepdim=True)
    np.testing.assert_allclose(sums["el2n_sum"], (norm * mask).sum(AXES).reshape(-1).numpy(), rtol=1e-5)
    fg = (clean > 0).float() * mask
    np.testing.assert_allclose(sums["el2nx_sum"], (norm * fg).sum(AXES).reshape(-1).numpy(), rtol=1e-5)


@pytest.mark.parametrize("with_ignore", [False, True])
def test_regions_use_sigmoid_and_keep_every_region(with_ignore):
    g = torch.Generator().manual_seed(2)
    labels = {"background": 0, "whole": (1, 2), "core": 2}
    if with_ignore:
        labels["ignore"] = 3
    lm = LabelManager(labels, regions_class_order=[1, 2])
    assert lm.has_regions
    output = torch.randn(2, 2, 4, 4, 4, generator=g) * 3
    regions = torch.randint(0, 2, (2, 2, 4, 4, 4), generator=g)
    ignore = torch.randint(0, 2, (2, 1, 4, 4, 4), generator=g)
    target = torch.cat([regions, ignore], 1) if with_ignore else regions
    sums = patch_sums(output, target, lm)
    mask = (1 - ignore).float() if with_ignore else None
    tp, fp, fn, _ = get_tp_fp_fn_tn((torch.sigmoid(output) > 0.5).float(), regions, axes=AXES, mask=mask)
    assert sums["tp"].shape == (2, 2)
    np.testing.assert_allclose(sums["tp"], tp.numpy())
    np.testing.assert_allclose(sums["fp"], fp.numpy())
    np.testing.assert_allclose(sums["fn"], fn.numpy())


def test_patches_of_one_case_are_pooled_before_dice():
    lm = LabelManager({"background": 0, "fg": 1}, None)
    target = torch.zeros(2, 1, 2, 2, 2, dtype=torch.int64)
    target[:, :, 0] = 1                                   # 4 foreground voxels per patch
    output = torch.zeros(2, 2, 2, 2, 2)
    output[0, 1] = 5                                      # patch 0: all foreground -> TP 4, FP 4
    output[1, 0] = 5                                      # patch 1: all background -> FN 4
    acc = EpochAccumulator(["case_a", "case_b"])
    acc.update(["case_a", "case_a"], patch_sums(output, target, lm))
    ids, sums, counts = acc.aggregate()
    assert ids == ["case_a"] and counts.tolist() == [2]  # case_b not drawn: no value
    # pooled: TP 4, FP 4, FN 4 -> 8 / 16; the mean of per-patch Dice would be (2/3 + 0) / 2
    assert case_values(sums)["dice"][0] == pytest.approx(0.5)


@pytest.mark.parametrize("classes", [2, 3, 8, 12, 200])  # 200: b * c * c cells beyond int16
def test_argmax_ties_take_the_first_class_as_nnunet(classes):
    g = torch.Generator().manual_seed(3)
    lm = LabelManager({"background": 0, **{f"c{k}": k for k in range(1, classes)}}, None)
    output = torch.randint(0, 3, (2, classes, 4, 5, 6), generator=g).float()  # many tied logits
    target = torch.randint(0, classes, (2, 1, 4, 5, 6), generator=g)
    sums = patch_sums(output, target, lm)
    tp, fp, fn, _ = get_tp_fp_fn_tn(_onehot(output.argmax(1, keepdim=True), classes), target, axes=AXES)
    for key, ref in (("tp", tp), ("fp", fp), ("fn", fn)):
        np.testing.assert_array_equal(sums[key], ref[:, 1:].numpy())


def test_dice_only_recording_gives_the_same_counts_and_no_error_norms():
    g = torch.Generator().manual_seed(4)
    lm = LabelManager({"background": 0, "anterior": 1, "posterior": 2}, None)
    output = torch.randn(2, 3, 6, 7, 8, generator=g) * 3
    target = torch.randint(0, 3, (2, 1, 6, 7, 8), generator=g)
    full, counts = patch_sums(output, target, lm), patch_sums(output, target, lm, error_norms=False)
    assert set(counts) == {"tp", "fp", "fn"}
    for key in counts:
        np.testing.assert_array_equal(counts[key], full[key])
    assert set(case_values(counts)) == {"dice"}
    np.testing.assert_array_equal(case_values(counts)["dice"], case_values(full)["dice"])


@pytest.mark.parametrize("regions", [False, True])
def test_sums_are_fp32_under_autocast(regions):
    # nnU-Net computes the loss (and so calls patch_sums) inside autocast; on CUDA the network output is
    # fp16 and reductions like einsum would run in half precision. CPU autocast (bf16) shows the same.
    g = torch.Generator().manual_seed(5)
    if regions:
        lm = LabelManager({"background": 0, "whole": (1, 2), "core": 2}, regions_class_order=[1, 2])
        target = torch.randint(0, 2, (2, 2, 8, 9, 10), generator=g)
    else:
        lm = LabelManager({"background": 0, "anterior": 1, "posterior": 2}, None)
        target = torch.randint(0, 3, (2, 1, 8, 9, 10), generator=g)
    output = torch.randn(2, 2 if regions else 3, 8, 9, 10, generator=g) * 3
    reference = patch_sums(output, target, lm)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = patch_sums(output, target, lm)
        half_output = patch_sums(output.bfloat16(), target, lm)  # what an autocast forward pass returns
    for key, value in reference.items():
        np.testing.assert_array_equal(inside[key], value)
    expected = patch_sums(output.bfloat16().float(), target, lm)
    for key, value in expected.items():
        np.testing.assert_array_equal(half_output[key], value)
