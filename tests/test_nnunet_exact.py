"""Exact mode's fixed patches: foreground-centred crops with padding, and nnU-Net's training targets."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_diet.nnunet.exact import ExactEvaluator, fixed_patch, foreground_centre, foreground_slice, target_for


def test_patch_is_centred_on_the_foreground_box_and_padded():
    seg = np.zeros((1, 20, 30), np.int16)
    seg[0, 2:5, 24:29] = 1  # box centre (3, 26)
    assert foreground_centre(seg) == (3, 26)
    image = np.arange(600, dtype=np.float32).reshape(1, 20, 30)
    patch = fixed_patch(image, (3, 26), (8, 8), fill=-7)
    assert patch.shape == (1, 8, 8)
    # rows 3-4 .. 3+3 = -1..6 (row -1 padded), columns 26-4 .. 26+3 = 22..29
    np.testing.assert_array_equal(patch[0, 1:], image[0, 0:7, 22:30])
    assert (patch[0, 0] == -7).all()
    corner = fixed_patch(image, (19, 29), (4, 4))
    np.testing.assert_array_equal(corner[0, :3, :3], image[0, 17:20, 27:30])
    assert (corner[0, 3] == 0).all() and (corner[0, :, 3] == 0).all()
    assert foreground_centre(np.zeros((1, 9, 4))) == (4, 2)  # no foreground: the image centre


def _nnunet_target(seg: np.ndarray, labels: LabelManager) -> np.ndarray:
    """The target nnU-Net's own training transforms make from ``seg`` (nnUNetTrainer.get_training_transforms:
    -1 -> 0, then one channel per region plus the ignore label when the dataset has regions)."""
    steps = [RemoveLabelTansform(-1, 0)]
    if labels.has_regions:
        regions = list(labels.foreground_regions)
        steps.append(ConvertSegmentationToRegionsTransform(
            regions=regions + [labels.ignore_label] if labels.has_ignore_label else regions, channel_in_seg=0))
    out = ComposeTransforms(steps)(image=torch.zeros(1, *seg.shape[1:]), segmentation=torch.from_numpy(seg))
    return out["segmentation"].numpy().astype(np.int16)


@pytest.mark.parametrize("labels", [
    LabelManager({"background": 0, "a": 1, "b": 2, "c": 3}, regions_class_order=None),
    LabelManager({"background": 0, "a": 1, "b": 2, "ignore": 3}, regions_class_order=None),
    LabelManager({"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3}, regions_class_order=[1, 2, 3]),
    LabelManager({"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3, "ignore": 4},
                 regions_class_order=[1, 2, 3]),
], ids=["labels", "labels+ignore", "regions", "regions+ignore"])
def test_target_is_the_one_nnunets_training_transforms_make(labels):
    seg = np.random.default_rng(0).integers(-1, max(labels.all_labels) + 2 if labels.has_ignore_label else
                                            max(labels.all_labels) + 1, size=(1, 6, 7, 5)).astype(np.int16)
    np.testing.assert_array_equal(target_for(seg, labels), _nnunet_target(seg, labels))


def test_2d_configuration_takes_the_slice_with_most_foreground():
    seg = np.zeros((1, 5, 12, 12), np.int16)
    seg[0, 1, 2:4, 2:4] = 1      # 4 voxels
    seg[0, 3, 6:10, 5:11] = 2    # 24 voxels: this slice, box centre (7, 7)
    data = np.arange(5 * 144, dtype=np.float32).reshape(1, 5, 12, 12)
    dataset = SimpleNamespace(load_case=lambda identifier: (data, seg))
    labels = LabelManager({"background": 0, "a": 1, "b": 2}, regions_class_order=None)
    assert foreground_slice(seg) == 3 and foreground_slice(np.zeros((1, 4, 3, 3))) == 2
    image, target = ExactEvaluator(dataset, ["a"], (6, 6), labels)._patch("a")
    assert image.shape == (1, 6, 6) and target.shape == (1, 6, 6)
    np.testing.assert_array_equal(image[0], data[0, 3, 4:10, 4:10])
    np.testing.assert_array_equal(target[0], seg[0, 3, 4:10, 4:10])
    volume, _ = ExactEvaluator(dataset, ["a"], (4, 6, 6), labels)._patch("a")  # 3D: no slicing
    assert volume.shape == (1, 4, 6, 6)
