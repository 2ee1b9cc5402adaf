"""Exact mode's fixed patches: foreground-centred crops with padding, and nnU-Net's training targets."""

from types import SimpleNamespace

import numpy as np

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


def test_target_maps_outside_mask_to_background_and_builds_regions():
    seg = np.array([[[-1, 0, 1, 2, 3]]], np.int16)
    labels = SimpleNamespace(has_regions=False, has_ignore_label=False)
    np.testing.assert_array_equal(target_for(seg, labels), [[[0, 0, 1, 2, 3]]])
    regions = SimpleNamespace(has_regions=True, has_ignore_label=True, ignore_label=3,
                              foreground_regions=[(1, 2), 2])
    out = target_for(seg, regions)
    np.testing.assert_array_equal(out, [[[0, 0, 1, 1, 0]], [[0, 0, 0, 1, 0]], [[0, 0, 0, 0, 1]]])


def test_2d_configuration_takes_the_slice_with_most_foreground():
    seg = np.zeros((1, 5, 12, 12), np.int16)
    seg[0, 1, 2:4, 2:4] = 1      # 4 voxels
    seg[0, 3, 6:10, 5:11] = 2    # 24 voxels: this slice, box centre (7, 7)
    data = np.arange(5 * 144, dtype=np.float32).reshape(1, 5, 12, 12)
    dataset = SimpleNamespace(load_case=lambda identifier: (data, seg))
    labels = SimpleNamespace(has_regions=False, has_ignore_label=False)
    assert foreground_slice(seg) == 3 and foreground_slice(np.zeros((1, 4, 3, 3))) == 2
    image, target = ExactEvaluator(dataset, ["a"], (6, 6), labels)._patch("a")
    assert image.shape == (1, 6, 6) and target.shape == (1, 6, 6)
    np.testing.assert_array_equal(image[0], data[0, 3, 4:10, 4:10])
    np.testing.assert_array_equal(target[0], seg[0, 3, 4:10, 4:10])
    volume, _ = ExactEvaluator(dataset, ["a"], (4, 6, 6), labels)._patch("a")  # 3D: no slicing
    assert volume.shape == (1, 4, 6, 6)
