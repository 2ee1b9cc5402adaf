"""DDP: ``torchrun --nproc_per_node 2`` on CPU (gloo) records every sample exactly once per epoch into
one store, also when the training set does not split evenly over the ranks (padding is not recorded)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnunet_diet
from nnunet_diet.core.store import DynamicsStore
from nnunet_diet.medmnist.distributed import epoch_order
from nnunet_diet.medmnist.recorder import SERIES

SUBSET = Path(nnunet_diet.__file__).parent / "examples" / "pneumoniamnist_subset.npz"


@pytest.mark.parametrize("n, world", [(7, 2), (10, 3), (5, 1)])
def test_epoch_order_deals_every_sample_once_to_equal_shares(n, world):
    shares = [epoch_order(n, 3, 0, rank, world) for rank in range(world)]
    assert len({len(order) for order, _ in shares}) == 1
    real = np.concatenate([order[keep] for order, keep in shares])
    assert sorted(real) == list(range(n))
    np.testing.assert_array_equal(epoch_order(n, 3, 0)[0], np.random.default_rng([0, 3]).permutation(n))


def test_two_gloo_processes_gather_one_complete_store(tmp_path):
    with np.load(SUBSET) as z:  # 299 training images: the ranks' shares need one padded row
        arrays = {k: z[k][:299] if k.startswith("train") else z[k] for k in z.files}
    np.savez(tmp_path / "odd.npz", **arrays)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nnunet_diet.cli.main", "medmnist", "train", "--flag", "odd", "--root", str(tmp_path),
           "--device", "cpu", "--threads", "1", "--epochs", "3", "--batch-size", "64", "--width", "4",
           "--layers", "1", "1", "1", "1", "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = DynamicsStore.load(out / "dynamics.npz")
    assert (store.n_samples, store.n_epochs) == (299, 3)
    assert len(np.unique(store.ids)) == 299 and sorted(store.ids) == list(range(299))
    for name in SERIES:
        assert np.isfinite(store[name]).all(), name
    assert store.metadata["world_size"] == 2
    np.testing.assert_array_equal(store.groups, arrays["train_labels"].reshape(-1).astype(str))
    assert (out / "result.json").is_file() and (out / "train_probs.npy").is_file()
