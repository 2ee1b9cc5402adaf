"""The shared epoch accumulator: pooled sums per sample, padding rows left out, wrong input refused."""

import numpy as np
import pytest
import torch

from nnunet_diet.core.errors import DietError
from nnunet_diet.recording import EpochAccumulator


def test_sums_pool_by_sample_and_padding_is_left_out():
    acc = EpochAccumulator([10, 11, 12])
    acc.update(torch.tensor([0, 2, -1]), {"v": torch.tensor([1.0, 2.0, 100.0]), "w": torch.ones(3, 2)})
    acc.update(torch.tensor([2]), {"v": torch.tensor([3.0]), "w": torch.ones(1, 2)})
    ids, sums, counts = acc.aggregate()
    assert ids == [10, 12]                              # sample 11 never seen: no value
    np.testing.assert_array_equal(sums["v"], [1.0, 5.0])
    np.testing.assert_array_equal(sums["w"], [[1, 1], [2, 2]])
    np.testing.assert_array_equal(counts, [1, 2])
    acc.reset()
    assert acc.aggregate()[0] == []


def test_ids_map_to_positions_and_unknown_ones_are_refused():
    acc = EpochAccumulator(["a", "b"])
    acc.update(["b", "b"], {"v": np.array([1.0, 2.0])})
    assert acc.aggregate()[:2][0] == ["b"]
    with pytest.raises(DietError, match="sample c is not one of the 2"):
        acc.update(["c"], {"v": np.array([1.0])})


def test_quantities_must_stay_the_same_within_an_epoch():
    acc = EpochAccumulator(["a"])
    acc.update(["a"], {"v": np.array([1.0])})
    with pytest.raises(DietError, match="expected"):
        acc.update(["a"], {"u": np.array([1.0])})
    with pytest.raises(DietError, match="2 rows for 1 samples"):
        acc.update(["a"], {"v": np.array([1.0, 2.0])})
