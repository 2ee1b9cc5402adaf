"""Embeddings on disk: ``ids x d`` float16/float32, written in chunks, resumable, one shard per rank.

Layout of an embedding folder::

    OUT/embeddings.npy   merged ids x d matrix (np.load(..., mmap_mode="r") reads it without loading)
    OUT/ids.txt          one id per line, row order
    OUT/meta.json        extractor settings, n, d, dtype, world size
    OUT/shards/rank{r}-of-{w}.npy|.json   while extracting: rows ids[r::w] and how many are done

Each rank writes its shard as a memmap and, after every flushed batch, rewrites the shard's JSON with
the number of rows done (atomically), so an interrupted run continues where it stopped (the batch in
flight is recomputed). Rank 0 waits for every shard, merges them in id order and removes them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..core.atomic import atomic_open, atomic_write_text, wait_until
from ..core.errors import DietError
from ..core.meddel import ROW_BLOCK

__all__ = ["DTYPES", "Embeddings", "finished", "write_shard", "merge_shards", "load_embeddings"]

DTYPES = ("float16", "float32")
MATRIX, IDS, META, SHARDS = "embeddings.npy", "ids.txt", "meta.json", "shards"


@dataclass(frozen=True)
class Embeddings:
    """Ids, their vectors (possibly a read-only memmap) and the extraction settings."""

    path: Path
    ids: np.ndarray
    vectors: np.ndarray
    meta: dict


def finished(out: Path, ids: Sequence[str], signature: dict, dtype: str) -> bool:
    """True when ``out`` already holds the merged embedding of ``ids`` with these settings. A finished
    embedding of other images or other settings is refused: nothing of it is overwritten."""
    meta_path = out / META
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise DietError(f"{meta_path}: not JSON, so not an embedding of nnunet-diet; use another output folder") \
            from None
    old = {k: v for k, v in meta.items() if k not in ("n", "d", "dtype", "world_size")}
    new = json.loads(json.dumps(dict(signature)))
    if old != new or meta.get("dtype") != dtype:
        diff = sorted(k for k in {*old, *new} if old.get(k) != new.get(k)) + (["dtype"] if meta.get("dtype") != dtype
                                                                             else [])
        raise DietError(f"{out}: holds a finished embedding with other settings ({', '.join(diff)} differ); use "
                        "another output folder, or delete this one to replace it")
    old_ids = (out / IDS).read_text().split("\n")[:-1] if (out / IDS).is_file() else None
    if old_ids != [str(i) for i in ids]:
        raise DietError(f"{out}: holds a finished embedding of other images ({IDS} lists other ids); use another "
                        "output folder, or delete this one to replace it")
    return (out / MATRIX).is_file()


def _shard_paths(out: Path, rank: int, world: int) -> tuple[Path, Path]:
    stem = out / SHARDS / f"rank{rank}-of-{world}"
    return stem.with_suffix(".npy"), stem.with_suffix(".json")


def write_shard(out: Path, n: int, encode: Callable[[np.ndarray], np.ndarray], signature: dict, *,
                rank: int = 0, world: int = 1, batch_size: int = 64, dtype: str = "float16",
                resume: bool = True, progress: bool = True) -> Path:
    """Embed rows ``rank::world`` of ``n`` with ``encode(rows) -> len(rows) x d`` into this rank's shard."""
    if dtype not in DTYPES:
        raise DietError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if batch_size < 1:
        raise DietError(f"batch size must be >= 1, got {batch_size}")
    rows = np.arange(rank, n, world)
    matrix, state_path = _shard_paths(out, rank, world)
    expect = {"signature": signature, "n": n, "world": world, "dtype": dtype}
    done, store = 0, None
    if resume and state_path.is_file():
        state = json.loads(state_path.read_text())
        if {k: state.get(k) for k in expect} != expect:
            raise DietError(f"{state_path}: written with other settings ({state.get('signature')}); use another "
                            "output folder or --no-resume")
        done = state["done"]
        if done:
            store = np.lib.format.open_memmap(matrix, mode="r+")
    with tqdm(total=len(rows), initial=done, desc=f"embed rank {rank}", disable=not progress) as bar:
        for start in range(done, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            vectors = np.asarray(encode(batch), dtype=np.float32)
            if vectors.shape[0] != len(batch) or vectors.ndim != 2:
                raise DietError(f"the extractor returned shape {vectors.shape} for {len(batch)} samples")
            if store is None:
                matrix.parent.mkdir(parents=True, exist_ok=True)
                store = np.lib.format.open_memmap(matrix, mode="w+", dtype=dtype, shape=(len(rows), vectors.shape[1]))
            elif vectors.shape[1] != store.shape[1]:
                raise DietError(f"{matrix}: the extractor returned {vectors.shape[1]}-d vectors, the shard has "
                                f"{store.shape[1]}-d ones")
            store[start : start + len(batch)] = vectors
            store.flush()
            atomic_write_text(state_path, json.dumps(dict(expect, done=start + len(batch),
                                                          d=int(store.shape[1]), run=_run_id())))
            bar.update(len(batch))
    # always rewritten at the end: tells rank 0 that this run (not a stale one) finished the shard
    atomic_write_text(state_path, json.dumps(dict(expect, done=len(rows), run=_run_id(),
                                                  d=None if store is None else int(store.shape[1]))))
    return matrix


def _run_id() -> str:
    """torchrun's id of this launch (``TORCHELASTIC_RUN_ID``), ``local`` outside torchrun."""
    return os.environ.get("TORCHELASTIC_RUN_ID", "local")


def merge_shards(out: Path, ids: Sequence[str], signature: dict, world: int, *, dtype: str = "float16",
                 poll: float = 1.0, chunk: int = ROW_BLOCK) -> Path:
    """Wait until every rank's shard is complete (:func:`~nnunet_diet.core.atomic.wait_until`: an error when a
    rank's shard stops growing), then write ``embeddings.npy``, ``ids.txt`` and
    ``meta.json`` (each atomically) and remove the shards. Returns the folder."""
    n = len(ids)
    states = []
    for rank in range(world):
        _, state_path = _shard_paths(out, rank, world)
        want = len(range(rank, n, world))
        def complete() -> dict | None:
            state = json.loads(state_path.read_text()) if state_path.is_file() else {"done": -1}
            ok = state["done"] == want and state.get("signature") == signature and state.get("run") == _run_id()
            return state if ok else None
        states.append(wait_until(complete, state_path, f"rank {rank}'s embeddings", poll=poll))
    d = next(s["d"] for s in states if s["d"] is not None)
    with atomic_open(out / MATRIX, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": (n, d)})
        shards = [np.load(_shard_paths(out, r, world)[0], mmap_mode="r") if states[r]["done"] else None
                  for r in range(world)]
        for start in range(0, n, chunk):
            rows = np.arange(start, min(start + chunk, n))
            block = np.empty((len(rows), d), dtype=dtype)
            for r in range(world):
                mine = rows[rows % world == r]
                if len(mine):
                    block[mine - start] = shards[r][mine // world]
            fh.write(block.tobytes())
    atomic_write_text(out / IDS, "\n".join(map(str, ids)) + "\n")
    atomic_write_text(out / META, json.dumps(dict(signature, n=n, d=d, dtype=dtype, world_size=world), indent=2))
    shutil.rmtree(out / SHARDS, ignore_errors=True)
    return out


def load_embeddings(path: str | Path) -> Embeddings:
    """An embedding folder (above) or an ``.npz`` with ``ids`` and ``embeddings`` (user-made vectors)."""
    path = Path(path)
    if path.is_dir():
        if not (path / MATRIX).is_file() or not (path / IDS).is_file():
            raise DietError(f"{path}: not an embedding folder (needs {MATRIX} and {IDS}; an unfinished "
                            "'nnunet-diet embed' leaves only shards: run it again to resume)")
        vectors = np.load(path / MATRIX, mmap_mode="r")
        ids = np.array((path / IDS).read_text().split("\n")[:-1], dtype=str)
        meta = json.loads((path / META).read_text()) if (path / META).is_file() else {}
    elif path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "ids" not in z.files or "embeddings" not in z.files:
                    raise DietError(f"{path}: needs arrays 'ids' and 'embeddings' (found: {', '.join(z.files)})")
                ids, vectors = z["ids"].astype(str), z["embeddings"]
        except DietError:
            raise
        except Exception as exc:  # zip / format errors
            raise DietError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
        meta = {"source": "npz"}
    else:
        raise DietError(f"{path}: no such embedding folder or .npz file")
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise DietError(f"{path}: {len(ids)} ids for embeddings of shape {vectors.shape}")
    if len(np.unique(ids)) != len(ids):
        raise DietError(f"{path}: duplicate ids")
    return Embeddings(path, ids, vectors, meta)
