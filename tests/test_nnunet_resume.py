"""What ``nnUNetTrainerDAD`` takes over when ``--c`` resumes it: the records up to the checkpoint (merged with
this run's series) and the stop only when the checkpoint has reached it. The trainer's own method on real
files; the end-to-end kill and ``--c`` are in test_nnunet_e2e.py."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from nnunet_diet.core.errors import DietError
from nnunet_diet.core.store import DynamicsStore
from nnunet_diet.nnunet.trainer import nnUNetTrainerDAD

IDS = ["case_a", "case_b", "case_c"]


def _resume(tmp_path, checkpoint_epoch: int, stop: int | None, series=("dice", "el2n", "el2nx"), ids=IDS):
    saved = DynamicsStore(IDS, ["dice", "el2n", "el2nx"])
    for epoch in range(8):
        saved.record(epoch, IDS, {n: np.full(3, epoch / 10) for n in ("dice", "el2n", "el2nx")})
    saved.save(tmp_path / "dynamics.npz")
    (tmp_path / "state.json").write_text(json.dumps({"stop_epoch": stop, "recorded_epochs": 8}))
    log = []
    trainer = SimpleNamespace(current_epoch=checkpoint_epoch, fold=0, _state_file=lambda: tmp_path / "state.json",
                              print_to_log_file=lambda *a, **k: log.append(" ".join(map(str, a))))
    fresh = DynamicsStore(ids, list(series), metadata={"num_epochs": 20})
    store, kept_stop = nnUNetTrainerDAD._resumed_records(trainer, tmp_path / "dynamics.npz", fresh)
    return store, kept_stop, log


def test_a_stop_the_checkpoint_has_reached_is_kept(tmp_path):
    # stop at epoch 7, checkpoint_final of epoch 7 (current_epoch 8): --c ends at once
    store, stop, log = _resume(tmp_path, 8, 7)
    assert stop == 7 and store.n_epochs == 8 and not log


def test_a_stop_past_the_checkpoint_is_dropped_and_its_records_cut(tmp_path):
    # killed after the stop of epoch 7 was saved, before its checkpoint: checkpoint_latest of epoch 6
    store, stop, log = _resume(tmp_path, 7, 7)
    assert stop is None and store.n_epochs == 7
    assert "the stop at epoch 7 is past the checkpoint (epoch 7)" in log[0]
    np.testing.assert_array_equal(store["dice"][:, 6], 0.6)


def test_resume_merges_into_this_runs_series(tmp_path):
    # exact mode switched on for the continued run: its series start empty, the old ones are kept
    store, _, _ = _resume(tmp_path, 5, None, series=("dice", "el2n", "el2nx", "dice_exact"))
    assert set(store.names) == {"dice", "el2n", "el2nx", "dice_exact"} and store.n_epochs == 5
    assert np.isnan(store["dice_exact"]).all() and store.metadata["num_epochs"] == 20
    np.testing.assert_array_equal(store["el2n"][:, 4], 0.4)
    store.record(5, IDS, {"dice": [1, 1, 1], "dice_exact": [0.5, 0.5, 0.5]})  # and records on


def test_resume_refuses_other_cases(tmp_path):
    with pytest.raises(DietError, match="recorded cases differ"):
        _resume(tmp_path, 5, None, ids=["case_a", "case_b", "case_x"])
