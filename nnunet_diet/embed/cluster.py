"""k-means of unit embeddings for MedDEL: faiss when importable, scikit-learn otherwise, fixed seed.

The paper (002) clusters ViT embeddings with k-means and states no K; SemDeDup runs spherical k-means
in faiss. Here: fit on at most ``sample_per_cluster * K`` rows drawn with the seed (faiss's own default
sampling cap is 256 per centroid), then assign every row to the centroid of highest cosine similarity
(spherical assignment, so the reported centroid distance ``1 - cos`` is the one that defined the
cluster). scikit-learn's ``KMeans`` runs Lloyd from one random initialisation, like faiss: k-means++
seeding costs O(sample x K x log K) distance evaluations and dominated the run time (4.7 s of 5 s at
K = 100 on the development machine), and MedDEL only needs a partition that keeps near-duplicates together.
"""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import DietError

__all__ = ["default_clusters", "kmeans", "available_backend"]


BACKENDS = ("faiss", "sklearn")


def available_backend() -> str:
    """``faiss`` when ``import faiss`` works, else ``sklearn``."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "sklearn"
    return "faiss"


def default_clusters(n: int) -> int:
    """ceil(sqrt(N)): balances k-means cost (N x K) against the per-cluster pairs (N^2 / K)."""
    return max(1, math.ceil(math.sqrt(n)))


def _fit(sample: np.ndarray, k: int, seed: int, iterations: int, backend: str) -> np.ndarray:
    if backend == "faiss":
        import faiss

        # faiss.Kmeans without its wrapper: Kmeans.train reads the centroids through faiss's SWIG
        # std::vector<float> proxy, which SimpleITK (imported by nnU-Net) re-registers as its own
        # VectorFloat when imported after faiss, and the read then fails; the index holds the same
        # final centroids. min_points_per_centroid=1: faiss would print (from C++, to stderr) a warning
        # for every small cluster count; MedDEL asks for K = sqrt(N) clusters of a few points on purpose
        params = faiss.ClusteringParameters()
        params.niter, params.seed, params.spherical = iterations, seed, True
        params.max_points_per_centroid, params.min_points_per_centroid = len(sample), 1
        index = faiss.IndexFlatIP(sample.shape[1])
        faiss.Clustering(sample.shape[1], k, params).train(np.ascontiguousarray(sample, dtype=np.float32), index)
        return index.reconstruct_n(0, k)
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, init="random", n_init=1, max_iter=iterations, random_state=seed)
    return model.fit(sample).cluster_centers_.astype(np.float32)


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iterations: int = 20, sample_per_cluster: int = 64,
           block: int = 16384, backend: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cluster unit rows ``x`` into ``k`` clusters; returns (labels, unit centroids).

    ``backend``: ``faiss``, ``sklearn`` or None (faiss when installed). Deterministic for a given seed and
    backend. Clusters left empty by the assignment are kept as centroids with no members (MedDEL skips them).
    """
    available = available_backend()
    backend = backend or available
    if backend not in BACKENDS:
        raise DietError(f"k-means backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "faiss" and available != "faiss":
        raise DietError("k-means backend 'faiss' asked for but faiss is not installed (pip install faiss-cpu)")
    n = len(x)
    if not 1 <= k <= n:
        raise DietError(f"number of clusters must be in [1, {n}] for {n} embeddings, got {k}")
    rng = np.random.default_rng(seed)
    cap = max(k, sample_per_cluster * k)
    rows = np.sort(rng.choice(n, size=cap, replace=False)) if n > cap else np.arange(n)
    centroids = _fit(np.asarray(x[rows], dtype=np.float32), k, seed, iterations, backend)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    labels = np.empty(n, dtype=np.int64)
    for start in range(0, n, block):
        labels[start : start + block] = (x[start : start + block] @ centroids.T).argmax(axis=1)
    return labels, centroids
