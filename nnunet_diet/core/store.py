"""Training-dynamics store: per-sample, per-epoch values of one or more named series.

Every score in nnunet-diet (DAD, EVA, EL2N, AUM, forgetting, ...) is a function of such a
``samples x epochs`` matrix. The store keeps one matrix per series (e.g. ``dice``, ``el2n``,
``el2nx`` for segmentation; ``error_norm``, ``p_true``, ``correct``, ``margin`` for
classification), NaN where a sample was not seen in an epoch, together with the sample ids,
optional group labels (centre, class) and free metadata.

Memory: values are stored as float32 (default) or float16, so 1M samples x 200 epochs of one
series take 800 MB (400 MB in float16). Scores upcast small row blocks only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .atomic import atomic_open
from .errors import DietError
from .meddel import ROW_BLOCK

__all__ = ["DynamicsStore"]

_FORMAT = "nnunet-diet-dynamics/1"
_DTYPES = {"float32": np.float32, "float16": np.float16}
_CONFLICTS = ("error", "mean", "last")
# series whose values are fractions: Dice scores, a probability, a 0/1 flag
_UNIT_INTERVAL = ("dice", "dice_exact", "p_true", "correct")


def _as_ids(ids: Iterable) -> np.ndarray:
    arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if arr.ndim != 1:
        raise DietError(f"ids must be one-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind in "US" or arr.dtype == object:
        return arr.astype(str)
    raise DietError(f"ids must be integers or strings, got dtype {arr.dtype}")


class DynamicsStore:
    """Samples x epochs matrices of per-epoch values, one per named series.

    Args:
        ids: unique sample ids (strings such as nnU-Net case ids, or integer dataset indices).
        series: names of the series to record.
        groups: optional group label per sample (e.g. centre or class), aligned with ``ids``.
        dtype: ``"float32"`` (default) or ``"float16"``.
        metadata: JSON-serialisable dict saved with the store (run settings, source, ...).
        capacity: epochs to allocate up front (the store grows by doubling beyond it).
    """

    def __init__(
        self,
        ids: Iterable,
        series: Sequence[str] = ("dice",),
        *,
        groups: Iterable | None = None,
        dtype: str = "float32",
        metadata: Mapping | None = None,
        capacity: int = 16,
    ) -> None:
        self._ids = _as_ids(ids)
        n = len(self._ids)
        self._order = np.argsort(self._ids, kind="stable")
        sorted_ids = self._ids[self._order]
        if n > 1 and np.any(sorted_ids[1:] == sorted_ids[:-1]):
            dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][:5]
            raise DietError(f"duplicate sample ids: {', '.join(map(str, dup))}")
        self._sorted_ids = sorted_ids
        if groups is not None:
            groups = np.asarray(list(groups) if not isinstance(groups, np.ndarray) else groups).astype(str)
            if groups.shape != (n,):
                raise DietError(f"groups has {groups.shape[0] if groups.ndim else 0} entries for {n} ids")
        self._groups = groups
        if dtype not in _DTYPES:
            raise DietError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        self._dtype = _DTYPES[dtype]
        names = list(series)
        if not names or len(set(names)) != len(names) or not all(isinstance(s, str) and s for s in names):
            raise DietError(f"series must be distinct non-empty names, got {names!r}")
        self.metadata: dict = dict(metadata or {})
        self._n_epochs = 0
        cap = max(int(capacity), 1)
        self._data = {name: np.full((n, cap), np.nan, dtype=self._dtype) for name in names}

    # ------------------------------------------------------------------ properties
    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def groups(self) -> np.ndarray | None:
        return self._groups

    @property
    def names(self) -> list[str]:
        return list(self._data)

    @property
    def n_samples(self) -> int:
        return len(self._ids)

    @property
    def n_epochs(self) -> int:
        return self._n_epochs

    @property
    def dtype(self) -> str:
        return np.dtype(self._dtype).name

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._data.values())

    def __repr__(self) -> str:
        return (f"DynamicsStore({self.n_samples} samples x {self.n_epochs} epochs, "
                f"series={self.names}, dtype={self.dtype})")

    def series(self, name: str) -> np.ndarray:
        """View (samples x recorded epochs) of one series; NaN where a sample was not seen."""
        if name not in self._data:
            raise DietError(f"no series {name!r} in this store (it has: {', '.join(self.names)})")
        return self._data[name][:, : self._n_epochs]

    __getitem__ = series

    def __contains__(self, name: object) -> bool:
        return name in self._data

    # ------------------------------------------------------------------ recording
    def index_of(self, ids: Iterable) -> np.ndarray:
        """Row indices of ``ids``; raises :class:`DietError` naming ids that are not in the store."""
        query = _as_ids(ids)
        if query.dtype.kind != self._ids.dtype.kind:
            raise DietError(f"ids of type {query.dtype} do not match the store's {self._ids.dtype} ids")
        pos = np.searchsorted(self._sorted_ids, query)
        pos_clipped = np.minimum(pos, max(self.n_samples - 1, 0))
        found = (pos < self.n_samples) & (self._sorted_ids[pos_clipped] == query) if self.n_samples else \
            np.zeros(len(query), bool)
        if not found.all():
            missing = query[~found][:5]
            raise DietError(f"{int((~found).sum())} id(s) not in the store, e.g. {', '.join(map(str, missing))}")
        return self._order[pos_clipped]

    def _ensure_capacity(self, n_epochs: int) -> None:
        cap = next(iter(self._data.values())).shape[1]
        if n_epochs <= cap:
            return
        new_cap = max(n_epochs, 2 * cap)
        for name, arr in self._data.items():
            grown = np.full((arr.shape[0], new_cap), np.nan, dtype=self._dtype)
            grown[:, : self._n_epochs] = arr[:, : self._n_epochs]
            self._data[name] = grown

    def record(self, epoch: int, ids: Iterable | None, values: Mapping[str, Sequence[float]]) -> None:
        """Write the values of ``ids`` at ``epoch`` (0-based) for each named series.

        Each id may appear once per call (pool repeated draws of a case before recording);
        ``ids=None`` means every sample in store order. Epochs beyond the last recorded one extend
        the store; skipped epochs stay NaN.
        """
        epoch = int(epoch)
        if epoch < 0:
            raise DietError(f"epoch must be >= 0, got {epoch}")
        if ids is None:
            rows: np.ndarray | slice = slice(None)
            n_rows = self.n_samples
        else:
            rows = self.index_of(ids)
            n_rows = len(rows)
            if len(np.unique(rows)) != n_rows:
                raise DietError(f"epoch {epoch}: an id appears more than once in one record call")
        unknown = set(values) - set(self._data)
        if unknown:
            raise DietError(f"unknown series {sorted(unknown)}; this store records {self.names}")
        arrays = {}
        for name, vals in values.items():
            v = np.asarray(vals, dtype=self._dtype).reshape(-1)
            if v.shape != (n_rows,):
                raise DietError(f"series {name!r}: {v.shape[0]} values for {n_rows} ids at epoch {epoch}")
            arrays[name] = v
        self._ensure_capacity(epoch + 1)
        for name, v in arrays.items():
            self._data[name][rows, epoch] = v
        self._n_epochs = max(self._n_epochs, epoch + 1)

    def append_epoch(self, values: Mapping[str, Sequence[float]]) -> int:
        """Append one epoch holding a value for every sample, in store order (NaN allowed); return its index."""
        epoch = self._n_epochs
        self.record(epoch, None, values)
        return epoch

    def truncate(self, n_epochs: int) -> None:
        """Forget epochs >= ``n_epochs`` (e.g. records written after the checkpoint a run resumes from)."""
        n_epochs = int(n_epochs)
        if n_epochs < 0:
            raise DietError(f"n_epochs must be >= 0, got {n_epochs}")
        for arr in self._data.values():
            arr[:, n_epochs : self._n_epochs] = np.nan
        self._n_epochs = min(self._n_epochs, n_epochs)

    # ------------------------------------------------------------------ merge
    @classmethod
    def merge(cls, stores: Sequence[DynamicsStore], on_conflict: str = "error") -> DynamicsStore:
        """Combine partial records (several ranks, resumed runs) into one store.

        Ids and series are united; each entry takes the value of whichever store recorded it.
        Where several stores recorded the same (sample, epoch, series) with different values,
        ``on_conflict`` decides: ``"error"`` (default) raises, ``"mean"`` averages them (order-free),
        ``"last"`` keeps the value of the later store in ``stores``.
        """
        stores = list(stores)
        if not stores:
            raise DietError("merge needs at least one store")
        if on_conflict not in _CONFLICTS:
            raise DietError(f"on_conflict must be one of {_CONFLICTS}, got {on_conflict!r}")
        kinds = {s.ids.dtype.kind for s in stores}
        if len(kinds) > 1:
            raise DietError("cannot merge stores with integer ids and stores with string ids")
        all_ids = np.concatenate([s.ids for s in stores])
        _, first = np.unique(all_ids, return_index=True)
        union_ids = all_ids[np.sort(first)]
        names = list(dict.fromkeys(n for s in stores for n in s.names))
        n_epochs = max(s.n_epochs for s in stores)
        groups = None
        if any(s.groups is not None for s in stores):
            groups = np.full(len(union_ids), "", dtype=object)
        dtype = "float32" if any(s.dtype == "float32" for s in stores) else "float16"
        metadata: dict = {}
        for s in stores:
            metadata.update(s.metadata)
        out = cls(union_ids, names, dtype=dtype, metadata=metadata, capacity=max(n_epochs, 1))
        out._n_epochs = n_epochs
        count = {n: np.zeros((len(union_ids), n_epochs), np.uint16) for n in names}
        total = {n: np.zeros((len(union_ids), n_epochs), np.float64) for n in names} if on_conflict == "mean" else {}
        for s in stores:
            rows = out.index_of(s.ids)
            if groups is not None and s.groups is not None:
                prev = groups[rows]
                clash = (prev != "") & (prev != s.groups)
                if clash.any():
                    i = int(np.flatnonzero(clash)[0])
                    raise DietError(f"sample '{s.ids[i]}' has group '{prev[i]}' in one store and "
                                    f"'{s.groups[i]}' in another")
                groups[rows] = s.groups
            for name in s.names:
                src = s.series(name).astype(out._dtype)
                seen = np.isfinite(src)
                dst = out._data[name][rows, : s.n_epochs]
                cnt = count[name][rows, : s.n_epochs]
                if on_conflict == "error":
                    clash = seen & (cnt > 0) & (dst != src)
                    if clash.any():
                        r, e = np.argwhere(clash)[0]
                        raise DietError(f"conflicting records for sample '{s.ids[r]}', epoch {e}, series "
                                        f"{name!r}; pass on_conflict='mean' or 'last' to combine them")
                if on_conflict == "mean":
                    tot = total[name][rows, : s.n_epochs]
                    tot[seen] += src[seen]
                    total[name][rows, : s.n_epochs] = tot
                dst[seen] = src[seen]
                cnt[seen] += 1
                out._data[name][rows, : s.n_epochs] = dst
                count[name][rows, : s.n_epochs] = cnt
        if on_conflict == "mean":
            for name in names:
                cnt = count[name]
                seen = cnt > 0
                out._data[name][:, :n_epochs][seen] = total[name][seen] / cnt[seen]
        if groups is not None:
            out._groups = groups.astype(str)
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the store to ``path`` (``.npz``) atomically: a crash never leaves a half-written file."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT),
            "ids": self._ids,
            "series_names": np.array(self.names, dtype=str),
            "metadata": np.array(json.dumps(self.metadata, default=str)),
        }
        if self._groups is not None:
            arrays["groups"] = self._groups
        for i, name in enumerate(self.names):
            arrays[f"series_{i}"] = self.series(name)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> DynamicsStore:
        """Read a store written by :meth:`save`; errors name the file and what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise DietError(f"{path}: no such dynamics file")
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                need = {"format", "ids", "series_names", "metadata"}
                if not need <= files:
                    raise DietError(f"{path}: not an nnunet-diet dynamics file (missing {sorted(need - files)})")
                if str(z["format"]) != _FORMAT:
                    raise DietError(f"{path}: unsupported format {str(z['format'])!r} (expected {_FORMAT!r})")
                ids = z["ids"]
                names = [str(n) for n in z["series_names"]]
                data = []
                for i, name in enumerate(names):
                    key = f"series_{i}"
                    if key not in files:
                        raise DietError(f"{path}: series {name!r} is listed but its values are missing")
                    data.append(z[key])
                groups = z["groups"] if "groups" in files else None
                metadata = json.loads(str(z["metadata"]))
        except DietError:
            raise
        except Exception as exc:  # zip/pickle/json errors from a damaged or foreign file
            raise DietError(f"{path}: cannot read dynamics file ({type(exc).__name__}: {exc})") from None
        shapes = {a.shape for a in data}
        if len(shapes) > 1 or any(a.ndim != 2 or a.shape[0] != len(ids) for a in data):
            raise DietError(f"{path}: series shapes {sorted(shapes)} do not match {len(ids)} ids")
        for name, arr in zip(names, data):
            _check_values(path, name, arr, ids)
        n_epochs = data[0].shape[1] if data else 0
        dtype = "float16" if data and all(a.dtype == np.float16 for a in data) else "float32"
        try:
            store = cls(ids, names, groups=groups, dtype=dtype, metadata=metadata, capacity=max(n_epochs, 1))
        except DietError as exc:
            raise DietError(f"{path}: {exc}") from None
        for name, arr in zip(names, data):
            store._data[name][:, :n_epochs] = arr
        store._n_epochs = n_epochs
        return store


def _check_values(path: Path, name: str, values: np.ndarray, ids: np.ndarray, block: int = ROW_BLOCK) -> None:
    """A recorded value is a finite number (NaN marks "not seen"); Dice, probabilities and 0/1 flags lie in
    [0, 1]. Checked in row blocks, so a large store needs no second copy."""
    if values.dtype.kind != "f":
        raise DietError(f"{path}: series {name!r} holds {values.dtype} values, not floats")
    low, high = (0.0, 1.0) if name in _UNIT_INTERVAL else (-np.inf, np.inf)
    for start in range(0, len(values), block):
        part = values[start : start + block]
        bad = np.isinf(part) | (part < low) | (part > high)
        if bad.any():
            r, e = np.argwhere(bad)[0]
            rule = "finite" if np.isinf(part[r, e]) else "in [0, 1]"
            raise DietError(f"{path}: series {name!r} holds values that are not {rule}, e.g. "
                            f"{float(part[r, e])} for sample {ids[start + r]!s} at epoch {e}")
