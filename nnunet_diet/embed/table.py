"""MedDEL end to end on stored embeddings: normalise, k-means once, dedup at eta or to a target
fraction, and the per-case keep / remove table that ``nnunet-diet prune --keep-list`` and the MedMNIST
coreset path read."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.errors import DietError
from ..core.meddel import MedDELResult, check_embeddings, dedup, dedup_to_fraction, l2_normalise, own
from .cluster import default_clusters, kmeans
from .store import Embeddings

__all__ = ["unit_views", "run_meddel", "keep_table", "centre_summary"]


def unit_views(emb: Embeddings) -> np.ndarray:
    """Unit rows ``N x d``; for an embedding of ``views`` (meta ``views = V``, :mod:`~nnunet_diet.embed.views`)
    ``N x V x d / V`` with every view unit-length (a constant crop stays zero: similarity 0)."""
    v = int(emb.meta.get("views", 1))
    # l2_normalise checks the matrix itself: one scan of it, not two
    x = l2_normalise(emb.vectors, str(emb.path)) if v == 1 else check_embeddings(emb.vectors, str(emb.path))
    d = emb.meta.get("d")
    if d is not None and d != x.shape[1]:
        raise DietError(f"{emb.path}: meta.json says {d}-d embeddings, the matrix has {x.shape[1]} columns")
    if v == 1:
        return x
    if x.shape[1] % v:
        raise DietError(f"{emb.path}: meta.json says {v} views, which do not divide {x.shape[1]} columns")
    x = np.asarray(x, dtype=np.float32).reshape(len(x), v, -1)
    l2_normalise(x[:, 0], str(emb.path))  # a sample's own vector must have a direction
    norms = np.linalg.norm(x, axis=2, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def run_meddel(emb: Embeddings, *, fraction: float | None = None, eta: float | None = None,
               clusters: int | None = None, epsilon: float | None = 0.9, visit: str = "closest",
               tolerance: float = 0.005, seed: int = 0, block: int = 1024,
               backend: str | None = None, probes: int = 1) -> MedDELResult:
    """MedDEL on ``emb``: exactly one of ``fraction`` (target kept fraction, eta by bisection) or ``eta``;
    ``backend``: k-means backend (see :func:`~nnunet_diet.embed.cluster.kmeans`); ``probes``: clusters
    each sample is compared in (1: its own, the paper; see :func:`~nnunet_diet.core.meddel.dedup`)."""
    if (fraction is None) == (eta is None):
        raise DietError("give either a target fraction or a fixed eta, not both / neither")
    x = unit_views(emb)
    labels, centroids = kmeans(own(x), default_clusters(len(x)) if clusters is None else clusters, seed=seed,
                               backend=backend)
    common = dict(epsilon=epsilon, visit=visit, block=block, probes=probes)
    if fraction is not None:
        return dedup_to_fraction(x, labels, centroids, fraction, tolerance=tolerance, **common)
    return dedup(x, labels, centroids, eta, **common)


def keep_table(result: MedDELResult, ids: np.ndarray, centres: np.ndarray | None = None) -> pd.DataFrame:
    """One row per sample: id, keep (1/0), reason, cluster, distance_to_centroid, max_similarity,
    duplicate_of (id of the kept member it duplicates), and centre when given."""
    ids = np.asarray(ids).astype(str)
    table = pd.DataFrame({
        "id": ids, "keep": result.keep.astype(int), "reason": result.reason, "cluster": result.cluster,
        "distance_to_centroid": result.distance, "max_similarity": result.max_similarity,
        "duplicate_of": np.where(result.duplicate_of >= 0, ids[np.maximum(result.duplicate_of, 0)], ""),
    })
    if centres is not None:
        table.insert(1, "centre", np.asarray(centres).astype(str))
    return table


def centre_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per centre (and in total): cases before, kept, removed as duplicates / by epsilon, fraction kept."""
    rows = []
    parts = [*table.groupby("centre", sort=True)] if "centre" in table.columns else []
    for name, part in [*parts, ("total", table)]:
        rows.append({"centre": name, "before": len(part), "kept": int(part["keep"].sum()),
                     "duplicates": int((part["reason"] == "duplicate").sum()),
                     "epsilon": int((part["reason"] == "epsilon").sum()),
                     "kept_fraction": part["keep"].mean()})
    return pd.DataFrame(rows)
