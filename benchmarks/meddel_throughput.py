"""MedDEL throughput: k-means + near-duplicate removal to a 20 % target on N x 768 synthetic embeddings.

Each (N, kind) runs in a fresh process (peak RSS is that process's ``ru_maxrss``); kinds: ``random``
(isotropic Gaussian, no duplicates: the worst case for the greedy pass) and ``clustered`` (N / 100
centres, members at cosine ~0.7 to their centre, 10 % of rows near-copies of another row). Synthetic
embeddings are for timing only; the generation is not timed. Prints a markdown table, plus the 1M
extrapolation (time ~ N^1.5 with K = ceil(sqrt(N)) clusters: k-means N K, greedy pass N^2 / K; memory ~ N).

    OMP_NUM_THREADS=2 python benchmarks/meddel_throughput.py --sizes 10000 50000 200000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

D = 768


def synthetic(n: int, kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((n, D), dtype=np.float32)
    centres = rng.standard_normal((max(1, n // 100), D), dtype=np.float32)
    x = centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, D), dtype=np.float32)
    copies = rng.choice(n, n // 10, replace=False)
    x[copies] = x[rng.integers(0, n, len(copies))] + 0.05 * rng.standard_normal((len(copies), D), dtype=np.float32)
    return x


def one(n: int, kind: str, fraction: float) -> dict:
    from nnunet_diet.core.meddel import dedup_to_fraction, l2_normalise
    from nnunet_diet.embed.cluster import backend, default_clusters, kmeans

    if backend() == "sklearn":
        import sklearn.cluster  # noqa: F401  (import time, seconds on a busy machine, is not timed)
    raw = synthetic(n, kind)
    t0 = time.perf_counter()
    x = l2_normalise(raw)
    del raw
    t1 = time.perf_counter()
    labels, centroids = kmeans(x, default_clusters(n), seed=0)
    t2 = time.perf_counter()
    result = dedup_to_fraction(x, labels, centroids, fraction, epsilon=None)
    t3 = time.perf_counter()
    return {"n": n, "kind": kind, "clusters": result.n_clusters, "backend": backend(), "normalise_s": t1 - t0,
            "kmeans_s": t2 - t1, "dedup_s": t3 - t2, "passes": result.passes, "total_s": t3 - t0,
            "kept": result.fraction, "eta": result.eta,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000, 200000])
    p.add_argument("--kinds", nargs="+", default=["random", "clustered"])
    p.add_argument("--fraction", type=float, default=0.2)
    p.add_argument("--child", nargs=2, metavar=("N", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(one(int(args.child[0]), args.child[1], args.fraction)))
        return
    rows = []
    for kind in args.kinds:
        for n in args.sizes:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), kind, "--fraction", str(args.fraction)],
                                 capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print("| embeddings | N | K | k-means s | dedup s (passes) | total s | kept | eta | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['kind']} | {r['n']:,} | {r['clusters']} | {r['kmeans_s']:.1f} | {r['dedup_s']:.1f} "
              f"({r['passes']}) | {r['total_s']:.1f} | {100 * r['kept']:.1f} % | {r['eta']:.3f} | "
              f"{r['peak_rss_mb']:.0f} |")
    for kind in args.kinds:
        big = max((r for r in rows if r["kind"] == kind), key=lambda r: r["n"])
        scale = 1_000_000 / big["n"]
        print(f"\n{kind}: extrapolated to 1M from N = {big['n']:,}: {big['total_s'] * scale ** 1.5 / 60:.1f} min "
              f"(time ~ N^1.5), {big['peak_rss_mb'] * scale / 1024:.1f} GB (memory ~ N)")


if __name__ == "__main__":
    main()
