"""DDP: per-case sums added over 2 gloo processes on CPU give every rank the same records and the
same stop decision as one process that saw all patches."""

import json

import numpy as np
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunet_diet.core.dad import dad_trajectory
from nnunet_diet.core.store import DynamicsStore
from nnunet_diet.nnunet.recorder import SERIES, case_values
from nnunet_diet.recording import EpochAccumulator
from conftest import free_port

CASES = [f"case_{i}" for i in range(8)]
EPOCHS = 40


def _patches(rank: int, epoch: int):
    """Patch sums one rank draws in one epoch: cases drawn with replacement, skill grows per case."""
    rng = np.random.default_rng(1000 * epoch + rank)
    ids = list(rng.choice(CASES, size=5))
    skill = np.array([(int(i[-1]) + 1) / 9 for i in ids]) * (1 - np.exp(-epoch / 4))
    fg = rng.integers(50, 100, size=5).astype(float)
    tp = np.round(fg * skill)
    sums = {"tp": tp[:, None], "fp": np.round(fg * (1 - skill) / 4)[:, None], "fn": (fg - tp)[:, None],
            "el2n_sum": fg * (1 - skill), "n_voxels": np.full(5, 1000.0), "el2nx_sum": fg * (1 - skill),
            "n_foreground": fg}
    return ids, sums


def _run_epochs(ranks):
    store, acc = DynamicsStore(CASES, SERIES), EpochAccumulator(CASES)
    for epoch in range(EPOCHS):
        for rank in ranks:
            acc.update(*_patches(rank, epoch))
        ids, sums, _ = acc.aggregate()  # under DDP: the sum over every rank
        store.record(epoch, ids, case_values(sums))
        acc.reset()
    traj = dad_trajectory(store["dice"], 5)
    return store, traj


def _worker(rank: int, world: int, port: int, out: str):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        store, traj = _run_epochs([rank])
        with open(f"{out}/rank{rank}.json", "w") as fh:
            json.dump({"dice": np.nan_to_num(store["dice"], nan=-1).tolist(), "stop": traj.stop_epoch,
                       "L": np.nan_to_num(traj.moving_distance, nan=-1).tolist()}, fh)
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_record_the_same_values_and_stop_together(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1
    store, traj = _run_epochs([0, 1])  # one process seeing both ranks' patches
    np.testing.assert_allclose(np.array(r0["dice"]), np.nan_to_num(store["dice"], nan=-1), rtol=1e-6)
    assert r0["stop"] == traj.stop_epoch and r0["stop"] is not None
