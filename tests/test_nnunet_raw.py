"""raw_cases: channels in one file per channel, or all in one file (an RGB PNG, as nnU-Net reads it)."""

import json

import numpy as np
import pytest
from PIL import Image

from nnunet_diet.core.errors import DietError
from nnunet_diet.nnunet.raw import raw_cases


def _dataset(root, files_per_case):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case, n_files in files_per_case.items():
        for k in range(n_files):
            rgb = np.full((8, 8, 3), 40 * k, np.uint8)
            Image.fromarray(rgb if n_files == 1 else rgb[..., 0]).save(root / "imagesTr" / f"{case}_{k:04d}.png")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "labelsTr" / f"{case}.png")
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                   "labels": {"background": 0, "polyp": 1},
                                                   "numTraining": len(files_per_case), "file_ending": ".png"}))
    return root


def test_one_rgb_file_per_case_is_three_channels(tmp_path):
    _, cases = raw_cases(_dataset(tmp_path / "rgb", {"a": 1, "b": 1}))
    assert sorted(cases) == ["a", "b"] and all(len(e["images"]) == 1 for e in cases.values())
    _, cases = raw_cases(_dataset(tmp_path / "split", {"a": 3, "b": 3}))
    assert all(len(e["images"]) == 3 for e in cases.values())


def test_cases_with_other_file_counts_are_refused(tmp_path):
    with pytest.raises(DietError, match=r"case a has 1 image file\(s\), dataset.json names 3 channel\(s\) "
                                        r"and other cases have 3"):
        raw_cases(_dataset(tmp_path / "mixed", {"a": 1, "b": 3}))
    with pytest.raises(DietError, match=r"case a has 2 image file\(s\), dataset.json names 3"):
        raw_cases(_dataset(tmp_path / "two", {"a": 2, "b": 2}))
