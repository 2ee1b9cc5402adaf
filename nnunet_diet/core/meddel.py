"""MedDEL near-duplicate removal (Yang et al., ACM MM 2024, paper 002: the MedDEL method and its
pseudocode; built on SemDeDup, Abbas et al. 2023).

The paper's pipeline: embed every image, k-means the embeddings, then inside each cluster (1) drop
members farther than epsilon from the centroid and (2) for every pair whose cosine similarity exceeds
eta drop one of the two; eta sets the retained fraction (0.9 / 0.85 / 0.8 / 0.75 / 0.7 kept 49.3 /
32.1 / 19.0 / 10.3 / 5.05 % in the paper). This module is the part after k-means, numpy only:

- :func:`l2_normalise`: unit rows (cosine similarity = dot product), as SemDeDup does.
- :func:`dedup`: the per-cluster greedy pass at one eta. Members are visited closest-to-centroid first
  (the paper's prose keeps the member nearer the centroid; ``visit="farthest"`` is its pseudocode's
  choice); a member is removed when its cosine similarity to an already kept member of its cluster
  exceeds eta. Similarities are computed in ``block x block`` tiles, so memory stays bounded for any
  cluster size.
- :func:`dedup_to_fraction`: bisection on eta until the kept fraction is within a tolerance of a target
  (the paper's 5 / 10 / 20 / 33 / 50 %). k-means runs once outside; only the greedy pass is repeated.

Option ``probes = P > 1`` (not in the paper; default 1 = the paper): k-means splits some near-duplicate
pairs across a cluster boundary, and the within-cluster pass never compares them. As in an inverted-file
index searched with several probes (Jegou et al., PAMI 2011, IVFADC; faiss ``nprobe``), each sample
is also compared with the kept members of the clusters of its ``P - 1`` next-nearest centroids, and
(symmetrically) with kept members that have its cluster among theirs. The pass stays one greedy pass
in one global order (clusters in turn, members in visit order); with P = 1 it is the paper's.

Option ``views`` (not in the paper; rows of shape ``N x V x d``): each sample also carries ``V - 1``
transformed views of itself (zoomed-in crops), view 0 being its own vector. A pair's similarity is the
highest cosine between one sample's view and the other's own vector, either way round, so a zoomed copy
matches the crop of its original it shows: copy detection by search over the transformation instead of
an invariant descriptor (as in template matching over scales, e.g. Lowe's scale search; here over the
crop). k-means, centroid distances and probes use view 0.

Distances to the centroid are cosine distances ``1 - cos(x, c)`` in [0, 2] (the paper names no
distance; with unit embeddings this is half the squared Euclidean distance to the unit centroid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DietError

__all__ = ["VISITS", "MedDELResult", "l2_normalise", "check_embeddings", "centroid_distances", "probe_clusters",
           "dedup", "dedup_to_fraction", "own", "similarities"]

VISITS = ("closest", "farthest")
ROW_BLOCK = 65536  # rows per block of the row-wise passes: bounded temporary memory on large embedding files


@dataclass(frozen=True)
class MedDELResult:
    """Per-sample outcome of one MedDEL pass (arrays aligned with the embedding rows).

    ``reason`` is ``kept``, ``duplicate`` (similarity to a kept member > eta) or ``epsilon`` (farther
    than epsilon from its centroid). ``max_similarity`` is the largest cosine similarity to a kept
    member visited earlier in the same cluster (with ``probes > 1``: or in a probed neighbouring cluster;
    NaN for the first kept member of a cluster and for epsilon-removed members); ``duplicate_of`` is the
    row of that member (-1 when none).
    """

    keep: np.ndarray
    cluster: np.ndarray
    distance: np.ndarray
    max_similarity: np.ndarray
    duplicate_of: np.ndarray
    reason: np.ndarray
    eta: float
    epsilon: float | None
    n_clusters: int
    target: float | None = None
    passes: int = 1
    probes: int = 1

    @property
    def n_kept(self) -> int:
        return int(self.keep.sum())

    @property
    def fraction(self) -> float:
        return self.n_kept / len(self.keep)


def check_embeddings(x: np.ndarray, source: str = "embeddings") -> np.ndarray:
    """Return ``x`` as a 2-D float array; raise :class:`DietError` naming ``source`` when it is empty,
    not 2-D or holds NaN / inf."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise DietError(f"{source}: expected a non-empty samples x dimensions matrix, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise DietError(f"{source}: embeddings must be floating point, got dtype {x.dtype}")
    for start in range(0, len(x), ROW_BLOCK):
        bad = ~np.isfinite(x[start : start + ROW_BLOCK]).all(axis=1)
        if bad.any():
            raise DietError(f"{source}: row {start + int(np.flatnonzero(bad)[0])} has NaN or infinite values "
                            f"({int(bad.sum())} such rows in this block); re-embed those samples")
    return x


def l2_normalise(x: np.ndarray, source: str = "embeddings", block: int = ROW_BLOCK) -> np.ndarray:
    """Unit-length float32 rows (computed in row blocks); zero rows are an error (no direction)."""
    x = check_embeddings(x, source)
    out = np.empty(x.shape, dtype=np.float32)
    for start in range(0, len(x), block):
        part = np.asarray(x[start : start + block], dtype=np.float32)
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        if (norms == 0).any():
            raise DietError(f"{source}: row {start + int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros; "
                            "a zero embedding has no cosine similarity")
        out[start : start + block] = part / norms
    return out


VIEW_ROWS = 64  # samples per chunk of the view search (chunk x views x others floats at a time)


def own(x: np.ndarray) -> np.ndarray:
    """Each sample's own vector: ``x`` itself (``N x d``) or view 0 of ``N x V x d`` views."""
    return x if x.ndim == 2 else x[:, 0]


def similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarities ``len(a) x len(b)`` of unit rows, capped at 1 (rounding: exact copies give
    1 + 1e-7). With views (``N x V x d``): ``max(max_v <a_v, b_0>, max_v <a_0, b_v>)``, the best match of
    a view of either sample with the other's own vector (module docstring)."""
    if a.ndim == 2:
        return np.minimum(a @ b.T, 1.0)
    out = np.empty((len(a), len(b)), dtype=np.float32)
    a0, b0, (v, d) = a[:, 0], b[:, 0], a.shape[1:]
    for s in range(0, len(a), VIEW_ROWS):
        part = slice(s, s + VIEW_ROWS)
        out[part] = (a[part].reshape(-1, d) @ b0.T).reshape(-1, v, len(b)).max(axis=1)
    for s in range(0, len(b), VIEW_ROWS):
        part = slice(s, s + VIEW_ROWS)
        out[:, part] = np.maximum(out[:, part], (b[part].reshape(-1, d) @ a0.T).reshape(-1, v, len(a)).max(axis=1).T)
    return np.minimum(out, 1.0)


def centroid_distances(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - cos(x_i, c_{label_i})`` of every unit row to its own centroid."""
    c = np.asarray(centroids, dtype=np.float32)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    out = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), ROW_BLOCK):
        rows = slice(start, start + ROW_BLOCK)
        out[rows] = 1.0 - np.einsum("ij,ij->i", x[rows], c[labels[rows]])
    return out


def probe_clusters(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, probes: int) -> np.ndarray:
    """``N x probes`` cluster indices: each row's own cluster, then the ``probes - 1`` other centroids of
    highest cosine similarity (nearest first)."""
    c = np.asarray(centroids, dtype=np.float32)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    out = np.empty((len(x), probes), dtype=np.int64)
    for start in range(0, len(x), ROW_BLOCK):
        rows = slice(start, start + ROW_BLOCK)
        sims = x[rows] @ c.T
        sims[np.arange(len(sims)), labels[rows]] = np.inf  # own cluster first
        out[rows] = np.argsort(-sims, axis=1, kind="stable")[:, :probes]
    return out


def _check_inputs(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, visit: str, block: int,
                  probes: int = 1) -> None:
    if x.ndim not in (2, 3) or x.shape[0] == 0:
        raise DietError(f"MedDEL needs a non-empty samples x dimensions matrix (or samples x views x dimensions), "
                        f"got shape {x.shape}")
    if labels.shape != (len(x),):
        raise DietError(f"{labels.shape[0] if labels.ndim else 0} cluster labels for {len(x)} embeddings")
    if centroids.ndim != 2 or centroids.shape[1] != x.shape[-1]:
        raise DietError(f"centroids have dimension {centroids.shape[-1]}, embeddings {x.shape[-1]}")
    if labels.min() < 0 or labels.max() >= len(centroids):
        raise DietError(f"cluster labels must be in [0, {len(centroids)}), got [{labels.min()}, {labels.max()}]")
    if visit not in VISITS:
        raise DietError(f"visit must be one of {', '.join(VISITS)}, got {visit!r}")
    if block < 1:
        raise DietError(f"block must be >= 1, got {block}")
    if not 1 <= probes <= len(centroids):
        raise DietError(f"probes must be in [1, {len(centroids)}] (the number of clusters), got {probes}")


def _improve(best: np.ndarray, arg: np.ndarray, sims: np.ndarray, cols: np.ndarray) -> None:
    """In place: where a row's largest similarity in ``sims`` (rows x candidates, first maximum) beats
    ``best``, take it, and the candidate's index from ``cols`` into ``arg``."""
    j = sims.argmax(axis=1)
    top = sims[np.arange(len(sims)), j]
    better = top > best
    best[better], arg[better] = top[better], cols[j[better]]


def _greedy_cluster(xs: np.ndarray, eta: float, block: int, first_tile: np.ndarray | None = None,
                    prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Greedy pass over the rows of ``xs`` in order: a row is kept unless its similarity to an earlier
    kept row exceeds ``eta`` (or ``prior``, its largest similarity to kept rows outside ``xs``, does).
    Returns (keep, max similarity to an earlier kept row, that row or -1 (also when the maximum is the
    prior's), the similarity tile of the first block, which does not depend on eta and may be passed back in)."""
    n = len(xs)
    keep = np.zeros(n, dtype=bool)
    best = np.full(n, -np.inf, dtype=np.float32) if prior is None else prior.astype(np.float32, copy=True)
    arg = np.full(n, -1, dtype=np.int64)
    kept = np.empty(n, dtype=np.int64)  # kept rows so far, in visit order
    n_kept = 0
    for start in range(0, n, block):
        xb = xs[start : start + block]
        m = len(xb)
        cur_best, cur_arg = best[start : start + m], arg[start : start + m]
        for t in range(0, n_kept, block):  # earlier blocks' kept members, one tile at a time
            rows = kept[t : min(t + block, n_kept)]
            _improve(cur_best, cur_arg, similarities(xb, xs[rows]), rows)
        alive = cur_best <= eta
        tile = first_tile if start == 0 and first_tile is not None else similarities(xb, xb)
        if start == 0:
            first_tile = tile
        local = []
        for i in range(m):  # sequential greedy inside the block: one vector update per kept member
            if alive[i]:
                local.append(i)
                alive[i + 1 :] &= tile[i, i + 1 :] <= eta
        local = np.asarray(local, dtype=np.int64)
        if not len(local):
            continue
        sims = np.where(np.arange(m)[None, :] > local[:, None], tile[local], -np.inf)
        _improve(cur_best, cur_arg, sims.T, start + local)
        keep[start + local] = True
        kept[n_kept : n_kept + len(local)] = start + local
        n_kept += len(local)
    best = np.where(np.isfinite(best), best, np.nan).astype(np.float32)
    return keep, best, arg, first_tile


def dedup(
    x: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    eta: float,
    *,
    epsilon: float | None = 0.9,
    visit: str = "closest",
    block: int = 1024,
    probes: int = 1,
) -> MedDELResult:
    """MedDEL at a fixed similarity threshold ``eta`` (paper 002, MedDEL step 2-3).

    Args:
        x: unit-length embeddings (:func:`l2_normalise`), samples x d; or samples x views x d, unit
            views, view 0 the sample's own vector: pairs are compared by :func:`similarities`.
        labels: k-means cluster of each row; ``centroids``: one row per cluster.
        eta: cosine-similarity threshold in [-1, 1]; a member more similar than eta to a kept one goes
            (similarities are capped at 1, so eta = 1 keeps everything, exact copies included).
        epsilon: drop members whose cosine distance to the centroid exceeds epsilon (the paper's 0.9);
            None turns the filter off.
        visit: ``closest`` (default, the paper's prose: the member nearer the centroid survives) or
            ``farthest`` (the paper's pseudocode).
        block: tile size of the similarity computation (memory ~ 4 * block^2 bytes per tile).
        probes: 1 (the paper: pairs are compared inside a cluster only) or P > 1: also with the kept
            members of the clusters of the P - 1 next-nearest centroids, and of members that probe this
            cluster (module docstring).
    """
    labels = np.asarray(labels, dtype=np.int64)
    _check_inputs(x, labels, np.asarray(centroids), visit, block, probes)
    if not -1.0 <= eta <= 1.0:
        raise DietError(f"eta is a cosine similarity threshold in [-1, 1], got {eta}")
    return _run(x, labels, centroids, float(eta), epsilon, visit, block,
                _plan(x, labels, centroids, epsilon, visit, probes))


def _plan(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, epsilon: float | None,
          visit: str, probes: int = 1) -> tuple:
    """eta-independent part: distances, per cluster the surviving members in visit order, the epsilon
    survivors and, with ``probes > 1``, each row's probed clusters and per cluster the survivors of
    other clusters that probe it."""
    if epsilon is not None and not 0.0 <= epsilon <= 2.0:
        raise DietError(f"epsilon is a cosine distance in [0, 2] (or None: off), got {epsilon}")
    distance = centroid_distances(own(x), labels, centroids)
    within = np.ones(len(x), bool) if epsilon is None else distance <= epsilon
    key = distance if visit == "closest" else -distance
    order = np.lexsort((np.arange(len(x)), key, labels))  # by cluster, then visit order, then row
    order = order[within[order]]
    bounds = np.searchsorted(labels[order], np.arange(len(centroids) + 1))
    members = [order[bounds[k] : bounds[k + 1]] for k in range(len(centroids))]
    members = [m for m in members if len(m)]
    if probes == 1:
        return distance, members, within, None, None
    near = probe_clusters(own(x), labels, centroids, probes)
    live = np.flatnonzero(within)
    rows, cols = np.repeat(live, probes - 1), near[live, 1:].ravel()
    by_cluster = np.argsort(cols, kind="stable")
    cuts = np.searchsorted(cols[by_cluster], np.arange(len(centroids) + 1))
    incoming = [rows[by_cluster[cuts[k] : cuts[k + 1]]] for k in range(len(centroids))]
    return distance, members, within, near, incoming


def _prior(x: np.ndarray, rows: np.ndarray, cluster: int, keep: np.ndarray, labels: np.ndarray,
           near: np.ndarray, incoming: list[np.ndarray], block: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest similarity of each of ``rows`` (one cluster) to a kept member of an earlier cluster it may
    be compared with (that member's cluster among its probes, or this cluster among the member's), and
    that member's row (-1 when none)."""
    best = np.full(len(rows), -np.inf, dtype=np.float32)
    arg = np.full(len(rows), -1, dtype=np.int64)
    probed = np.unique(near[rows, 1:])
    cand = np.union1d(np.flatnonzero(keep & np.isin(labels, probed)), incoming[cluster][keep[incoming[cluster]]])
    if not len(cand):
        return best, arg
    into = np.isin(cand, incoming[cluster])  # these probe this cluster: comparable with every member
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        for t in range(0, len(cand), block):
            other = cand[t : t + block]
            allowed = into[t : t + block][None, :] | (near[part, 1:, None] == labels[other][None, None, :]).any(1)
            sims = np.where(allowed, similarities(x[part], x[other]), -np.inf)
            _improve(best[start : start + len(part)], arg[start : start + len(part)], sims, other)
    return best, arg


def _run(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, eta: float, epsilon: float | None, visit: str,
         block: int, plan: tuple, limits: tuple[float, float] = (np.inf, np.inf), cache: dict | None = None,
         cache_bytes: int = 0) -> MedDELResult | str:
    """One greedy pass at ``eta``. ``limits = (kept, removed)``: stop as soon as more samples than
    these are kept (returns ``"high"``) or removed (``"low"``): the bisection then knows the direction.
    ``cache`` keeps each cluster's first similarity tile between passes, up to ``cache_bytes`` in all."""
    distance, members, within, near, incoming = plan
    n = len(x)
    keep = np.zeros(n, dtype=bool)
    max_sim = np.full(n, np.nan, dtype=np.float32)
    dup_of = np.full(n, -1, dtype=np.int64)
    n_kept, n_removed = 0, int(n - within.sum())
    cached = sum(t.nbytes for t in cache.values()) if cache is not None else 0
    for c, rows in enumerate(members):
        prior, prior_arg = (None, None) if near is None else \
            _prior(x, rows, int(labels[rows[0]]), keep, labels, near, incoming, block)
        k, sim, arg, tile = _greedy_cluster(np.ascontiguousarray(x[rows], dtype=np.float32), eta, block,
                                            None if cache is None else cache.get(c), prior)
        if cache is not None and c not in cache and cached + tile.nbytes <= cache_bytes:
            cache[c] = tile
            cached += tile.nbytes
        keep[rows] = k
        max_sim[rows] = sim
        dup_of[rows] = np.where(arg >= 0, rows[np.maximum(arg, 0)], -1 if prior_arg is None else prior_arg)
        n_kept += int(k.sum())
        n_removed += int(len(k) - k.sum())
        if n_kept > limits[0] or n_removed > limits[1]:
            return "high" if n_kept > limits[0] else "low"
    reason = np.where(keep, "kept", np.where(within, "duplicate", "epsilon"))
    return MedDELResult(keep, labels, distance, max_sim, dup_of, reason, eta, epsilon, len(centroids),
                        probes=1 if near is None else near.shape[1])


def dedup_to_fraction(
    x: np.ndarray,
    labels: np.ndarray,
    centroids: np.ndarray,
    fraction: float,
    *,
    tolerance: float = 0.005,
    epsilon: float | None = 0.9,
    visit: str = "closest",
    block: int = 1024,
    max_passes: int = 40,
    cache_mb: float = 1024,
    probes: int = 1,
) -> MedDELResult:
    """MedDEL at the eta whose kept fraction is within ``tolerance`` of ``fraction`` (bisection).

    The kept fraction grows with eta (all survivors of the epsilon filter at eta = 1, about one member
    per cluster at eta = -1). Bisection stops when ``|kept / N - fraction| <= max(tolerance, 1 / N)``
    or after ``max_passes`` greedy passes, returning the pass closest to the target (its ``fraction``
    says how close; the greedy count is not strictly monotone in eta, so an exact hit is not guaranteed).
    A pass is abandoned as soon as its kept or removed count leaves the tolerance band, so passes far
    from the target cost a fraction of a full one, and each cluster's first ``block x block`` similarity
    tile (independent of eta) is kept between passes up to ``cache_mb`` megabytes. ``probes``: as :func:`dedup`.
    """
    labels = np.asarray(labels, dtype=np.int64)
    _check_inputs(x, labels, np.asarray(centroids), visit, block, probes)
    if not 0.0 < fraction <= 1.0 or not np.isfinite(fraction):
        raise DietError(f"target fraction must be in (0, 1], got {fraction}")
    if not 0.0 < tolerance < 1.0:
        raise DietError(f"tolerance must be in (0, 1), got {tolerance}")
    plan = _plan(x, labels, centroids, epsilon, visit, probes)
    n = len(x)
    ceiling = int(plan[2].sum()) / n
    if ceiling < fraction - max(tolerance, 1.0 / n):
        raise DietError(f"the epsilon filter (cosine distance > {epsilon}) alone leaves {100 * ceiling:.1f} % of "
                        f"the data, below the target {100 * fraction:g} %; raise --epsilon or turn it off")
    tol = max(tolerance, 1.0 / n)
    floor = len(plan[1]) / n
    if fraction < floor - tol:
        raise DietError(f"target {100 * fraction:g} % is below one sample per cluster ({len(plan[1])} clusters "
                        f"= {100 * floor:.2f} %); use fewer clusters")
    # a pass that overshoots the tolerance band is stopped early (only its direction is needed)
    limits = (fraction * n + tol * n, n - (fraction * n - tol * n))
    lo, hi = -1.0, 1.0
    best: MedDELResult | None = None
    passes, cache, cache_bytes = 0, {}, int(cache_mb * 2**20)
    while passes < max_passes:
        passes += 1
        eta = 1.0 if ceiling <= fraction + tol else (lo + hi) / 2  # eta = 1 keeps every survivor of epsilon
        result = _run(x, labels, centroids, eta, epsilon, visit, block, plan, limits, cache, cache_bytes)
        if isinstance(result, str):
            lo, hi = (eta, hi) if result == "low" else (lo, eta)
            continue
        if best is None or abs(result.fraction - fraction) < abs(best.fraction - fraction):
            best = result
        if abs(result.fraction - fraction) <= tol:
            break
        lo, hi = (eta, hi) if result.fraction < fraction else (lo, eta)
    if best is None:  # every pass overshot: report the last bracket's midpoint in full
        best = _run(x, labels, centroids, (lo + hi) / 2, epsilon, visit, block, plan, cache=cache,
                    cache_bytes=cache_bytes)
        passes += 1
    return MedDELResult(best.keep, best.cluster, best.distance, best.max_similarity, best.duplicate_of,
                        best.reason, best.eta, epsilon, best.n_clusters, fraction, passes, best.probes)
