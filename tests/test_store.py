import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnunet_diet.core.errors import DietError
from nnunet_diet.core.store import DynamicsStore


def _full_store(n, e, rng, names=("dice", "el2n")):
    store = DynamicsStore([f"case_{i:03d}" for i in range(n)], names, groups=[f"c{i % 2}" for i in range(n)])
    for _ in range(e):
        store.append_epoch({name: rng.random(n) for name in names})
    return store


def test_record_partial_epochs_leaves_nan_and_grows(rng):
    store = DynamicsStore(["a", "b", "c"], ["dice"], capacity=1)
    store.record(0, ["b"], {"dice": [0.5]})
    store.record(3, ["c", "a"], {"dice": [0.1, 0.2]})
    d = store["dice"]
    assert d.shape == (3, 4)
    assert d[1, 0] == 0.5 and d[2, 3] == pytest.approx(0.1) and d[0, 3] == pytest.approx(0.2)
    assert np.isnan(d[0, 0]) and np.isnan(d[:, 1:3]).all()


def test_save_load_roundtrip(tmp_path, rng):
    store = _full_store(7, 5, rng)
    store.metadata["source"] = "unit test"
    path = store.save(tmp_path / "dyn.npz")
    back = DynamicsStore.load(path)
    assert back.names == store.names and back.n_epochs == 5
    np.testing.assert_array_equal(back.ids, store.ids)
    np.testing.assert_array_equal(back.groups, store.groups)
    np.testing.assert_array_equal(back["el2n"], store["el2n"])
    assert back.metadata == {"source": "unit test"}
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temporary file


def test_float16_and_integer_ids_roundtrip(tmp_path):
    store = DynamicsStore(np.arange(5), ["error_norm"], dtype="float16")
    store.append_epoch({"error_norm": [0.1, 0.2, np.nan, 0.4, 0.5]})
    back = DynamicsStore.load(store.save(tmp_path / "s.npz"))
    assert back.dtype == "float16" and back.ids.dtype.kind == "i"
    np.testing.assert_array_equal(back["error_norm"], store["error_norm"])


def test_memory_stays_near_the_stored_matrix_when_loading_and_scoring(tmp_path):
    """1M samples x 200 epochs is 800 MB per float32 series only if no step makes a full copy in float64:
    measured here (tracemalloc sees numpy's buffers) on 50,000 x 100, scaled to the same per-entry bound."""
    import tracemalloc

    from nnunet_diet.core.scores import ScoreConfig, score_table

    n, e = 50_000, 100
    rng = np.random.default_rng(0)
    store = DynamicsStore(np.arange(n), ["dice", "el2n"], capacity=e)
    for _ in range(e):
        store.append_epoch({"dice": rng.random(n, dtype=np.float32), "el2n": rng.random(n, dtype=np.float32)})
    series_bytes = n * e * 4
    assert store.nbytes == 2 * series_bytes  # float32, no slack once full
    path = store.save(tmp_path / "big.npz")
    del store
    tracemalloc.start()
    try:
        back = DynamicsStore.load(path)
        load_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        score_table(back, ScoreConfig())
        score_extra = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert load_peak < 2.5 * back.nbytes  # the file's arrays and the store's: no third copy
    assert score_extra < 2 * series_bytes  # less than one float64 copy of a series


def test_truncate_forgets_later_epochs(rng):
    store = _full_store(4, 6, rng)
    store.truncate(3)
    assert store.n_epochs == 3
    store.append_epoch({"dice": np.ones(4)})
    assert store.n_epochs == 4 and np.isnan(store["el2n"][:, 3]).all()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), e=st.integers(1, 8), k=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_merge_of_disjoint_parts_is_order_independent(n, e, k, seed):
    rng = np.random.default_rng(seed)
    full = _full_store(n, e, rng)
    owner = rng.integers(0, k, size=(n, e))  # which part records each (sample, epoch)
    parts = []
    for p in range(k):
        rows = rng.permutation(n)  # each part lists the ids in its own order
        part = DynamicsStore(full.ids[rows], full.names, groups=full.groups[rows])
        for epoch in range(e):
            sel = rows[owner[rows, epoch] == p]
            if len(sel):
                part.record(epoch, full.ids[sel], {m: full[m][sel, epoch] for m in full.names})
        parts.append(part)
    for perm in (list(range(k)), list(rng.permutation(k))):
        merged = DynamicsStore.merge([parts[i] for i in perm])
        rows = merged.index_of(full.ids)
        for name in full.names:
            recorded_epochs = merged.n_epochs
            np.testing.assert_array_equal(merged[name][rows], full[name][:, :recorded_epochs])
        np.testing.assert_array_equal(merged.groups[rows], full.groups)


def test_merge_conflicts():
    a = DynamicsStore(["x", "y"], ["dice"])
    b = DynamicsStore(["y", "z"], ["dice"])
    a.record(0, ["x", "y"], {"dice": [0.1, 0.2]})
    b.record(0, ["y", "z"], {"dice": [0.4, 0.9]})
    with pytest.raises(DietError, match="conflicting records for sample 'y', epoch 0"):
        DynamicsStore.merge([a, b])
    for order in ([a, b], [b, a]):
        m = DynamicsStore.merge(order, on_conflict="mean")
        assert m["dice"][m.index_of(["y"])[0], 0] == pytest.approx(0.3)
    last = DynamicsStore.merge([a, b], on_conflict="last")
    assert last["dice"][last.index_of(["y"])[0], 0] == pytest.approx(0.4)
    assert sorted(last.ids) == ["x", "y", "z"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: DynamicsStore(["a", "a"], ["dice"]), "duplicate sample ids: a"),
        (lambda: DynamicsStore(["a"], ["dice"], groups=["g1", "g2"]), "groups has 2 entries for 1 ids"),
        (lambda: DynamicsStore(["a"], ["dice"], dtype="float64"), "dtype must be one of"),
        (lambda: DynamicsStore(["a"], []), "series must be distinct non-empty names"),
        (lambda: DynamicsStore(["a"], ["dice"]).record(0, ["b"], {"dice": [1.0]}), "not in the store, e.g. b"),
        (lambda: DynamicsStore(["a"], ["dice"]).record(0, ["a"], {"p": [1.0]}), "unknown series"),
        (lambda: DynamicsStore(["a", "b"], ["dice"]).record(0, ["a", "a"], {"dice": [1, 2]}), "more than once"),
        (lambda: DynamicsStore(["a", "b"], ["dice"]).record(0, ["a", "b"], {"dice": [1.0]}), "1 values for 2 ids"),
        (lambda: DynamicsStore(["a"], ["dice"]).series("el2n"), "no series 'el2n'"),
        (lambda: DynamicsStore.merge([DynamicsStore(["a"]), DynamicsStore([1])]), "integer ids and stores with string"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(DietError, match=message):
        call()


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(DietError, match="nope.npz: no such dynamics file"):
        DynamicsStore.load(missing)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(DietError, match="junk.npz: cannot read dynamics file"):
        DynamicsStore.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(DietError, match="other.npz: not an nnunet-diet dynamics file"):
        DynamicsStore.load(other)


def test_wait_until_returns_once_ready_and_gives_up_on_a_writer_that_stopped(tmp_path):
    import threading

    from nnunet_diet.core.atomic import wait_until

    watched = tmp_path / "state.json"
    threading.Timer(0.2, lambda: watched.write_text("done")).start()
    assert wait_until(lambda: watched.read_text() if watched.is_file() else None, watched, "it",
                      poll=0.05, stall=5) == "done"
    watched.write_text("stuck")  # written once, then never again
    with pytest.raises(DietError, match=rf"{watched}: no progress for 0 s while waiting for rank 0"):
        wait_until(lambda: None, watched, "rank 0", poll=0.05, stall=0.3)
