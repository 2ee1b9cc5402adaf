"""MedDEL near-duplicate removal and NormDEL tooling on real PneumoniaMNIST images (the shipped subset)
with exact and near-duplicates planted in them, embedded with the training-free intensity encoder."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_diet.cli.main import main
from nnunet_diet.core.errors import DietError
from nnunet_diet.core.meddel import dedup, dedup_to_fraction, l2_normalise, own, probe_clusters, similarities
from nnunet_diet.embed.cluster import kmeans
from nnunet_diet.embed.store import Embeddings, load_embeddings
from nnunet_diet.embed.table import run_meddel
from nnunet_diet.nnunet.splits import keep_fold

SUBSET = Path(__file__).resolve().parent.parent / "nnunet_diet" / "examples" / "pneumoniamnist_subset.npz"
N_REAL = 300


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """300 real images + 10 exact copies + 10 noisy copies (sigma 3 grey levels) + 10 with contrast
    and brightness changed, embedded through the CLI. Returns (folder, copy row -> original row)."""
    tmp = tmp_path_factory.mktemp("planted")
    images = np.load(SUBSET)["train_images"]
    rng = np.random.default_rng(0)
    noisy = np.clip(images[10:20] + rng.normal(0, 3, images[10:20].shape), 0, 255).astype(np.uint8)
    contrast = np.clip(0.8 * images[20:30].astype(float) + 20, 0, 255).astype(np.uint8)
    allimages = np.concatenate([images, images[:10], noisy, contrast])
    np.savez(tmp / "planted.npz", train_images=allimages)
    assert main(["embed", "--npz", str(tmp / "planted.npz"), "-o", str(tmp / "emb"), "--no-progress"]) == 0
    copies = {N_REAL + i: i for i in range(30)}
    return tmp / "emb", copies


def _unit(emb: Embeddings) -> np.ndarray:
    return l2_normalise(emb.vectors)


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_planted_duplicates_are_removed_and_distinct_images_kept(planted, tmp_path, backend):
    folder, copies = planted
    out = tmp_path / "keep.csv"
    assert main(["meddel", str(folder), "--eta", "0.98", "--clusters", "8", "--kmeans", backend, "-o", str(out)]) == 0
    table = pd.read_csv(out, dtype={"id": str, "duplicate_of": str})
    keep = table.set_index("id")["keep"]
    for copy, original in copies.items():  # exactly one of each planted pair survives, and it names the other
        assert keep[str(copy)] + keep[str(original)] == 1
        removed = str(copy) if keep[str(original)] else str(original)
        assert table.set_index("id").loc[removed, "duplicate_of"] == (str(original) if removed == str(copy)
                                                                      else str(copy))
    assert keep.sum() == N_REAL  # every distinct real image is kept
    assert set(table.loc[table["keep"] == 0, "reason"]) == {"duplicate"}
    assert (table.loc[table["keep"] == 0, "max_similarity"] > 0.98).all()
    assert (table.loc[table["keep"] == 1, "max_similarity"].dropna() <= 0.98).all()


def test_greedy_matches_a_brute_force_reference_for_any_block_and_visit_order(planted):
    x = _unit(load_embeddings(planted[0]))
    labels, centroids = kmeans(x, 5, seed=1)
    for visit in ("closest", "farthest"):
        ref = dedup(x, labels, centroids, 0.9, epsilon=None, visit=visit, block=1024)
        dist = ref.distance if visit == "closest" else -ref.distance
        expect = np.zeros(len(x), bool)
        for k in range(5):
            kept = []
            for i in np.flatnonzero(labels == k)[np.argsort(dist[labels == k], kind="stable")]:
                if not kept or (x[kept] @ x[i]).max() <= 0.9:
                    kept.append(i)
            expect[kept] = True
        np.testing.assert_array_equal(ref.keep, expect)
        small = dedup(x, labels, centroids, 0.9, epsilon=None, visit=visit, block=7)
        np.testing.assert_array_equal(small.keep, expect)
        np.testing.assert_allclose(small.max_similarity, ref.max_similarity, atol=1e-5)


def _probe_reference(x, labels, near, eta, distance, epsilon=None, sims=None):
    """One greedy pass in the global order (clusters in turn, closest first): a sample goes when an
    earlier kept one it may be compared with (either's cluster among the other's probes) exceeds eta,
    or when it is farther than epsilon from its centroid. ``sims``: pair similarities (default x @ x.T)."""
    sims = x @ x.T if sims is None else sims
    order = np.lexsort((np.arange(len(x)), distance, labels))
    kept = []
    for i in order:
        if epsilon is not None and distance[i] > epsilon:
            continue
        ok = [j for j in kept if labels[j] in near[i] or labels[i] in near[j]]
        if not ok or sims[ok, i].max() <= eta:
            kept.append(i)
    keep = np.zeros(len(x), bool)
    keep[kept] = True
    return keep


def test_probes_match_a_brute_force_reference_and_one_probe_is_the_paper(planted):
    x = _unit(load_embeddings(planted[0]))
    labels, centroids = kmeans(x, 12, seed=2)
    paper = dedup(x, labels, centroids, 0.9, epsilon=None)
    np.testing.assert_array_equal(dedup(x, labels, centroids, 0.9, epsilon=None, probes=1).keep, paper.keep)
    for probes in (2, 3):
        near = probe_clusters(x, labels, centroids, probes)
        assert (near[:, 0] == labels).all() and all(len(set(r)) == probes for r in near)
        expect = _probe_reference(x, labels, near, 0.9, paper.distance)
        for block in (1024, 7):
            result = dedup(x, labels, centroids, 0.9, epsilon=None, probes=probes, block=block)
            np.testing.assert_array_equal(result.keep, expect)
            assert result.probes == probes
            gone = np.flatnonzero(~result.keep)  # every removed sample names a kept one above eta
            assert result.keep[result.duplicate_of[gone]].all()
            np.testing.assert_array_less(0.9, np.einsum("ij,ij->i", x[gone], x[result.duplicate_of[gone]]) + 1e-6)
        assert expect.sum() < paper.keep.sum()  # more pairs compared: more removed at the same eta
        far = np.quantile(paper.distance, 0.8)  # with the epsilon filter removing a fifth
        result = dedup(x, labels, centroids, 0.9, epsilon=far, probes=probes)
        np.testing.assert_array_equal(result.keep, _probe_reference(x, labels, near, 0.9, paper.distance, far))
        assert (result.reason[paper.distance > far] == "epsilon").all()


def test_probes_find_pairs_that_kmeans_split(planted):
    """Each planted copy moved to the cluster of its second-nearest centroid: one cluster per sample
    (the paper) keeps both members of every such pair; two probes remove one of each."""
    x = _unit(load_embeddings(planted[0]))
    labels, centroids = kmeans(x, 8, seed=0)
    copies = planted[1]
    for copy in copies:
        labels[copy] = probe_clusters(x[[copy]], labels[[copy]], centroids, 2)[0, 1]
    paper = dedup(x, labels, centroids, 0.98, epsilon=None)
    probed = dedup(x, labels, centroids, 0.98, epsilon=None, probes=2)
    for copy, original in copies.items():
        assert paper.keep[copy] and paper.keep[original]
        assert probed.keep[copy] + probed.keep[original] == 1
        assert {int(probed.duplicate_of[copy if not probed.keep[copy] else original])} <= {copy, original}
    assert probed.keep.sum() == N_REAL
    fraction = dedup_to_fraction(x, labels, centroids, N_REAL / len(x), epsilon=None, probes=2, tolerance=0.001)
    assert fraction.probes == 2 and abs(fraction.fraction - N_REAL / len(x)) <= 1 / len(x)


def test_views_match_a_brute_force_max_over_views_reference():
    """Samples with views (N x V x d): a pair's similarity is the best match of a view of either with the
    other's own vector (view 0); dedup with and without probes, any block, equals the global greedy pass
    on that explicit similarity matrix, and one view is the plain embedding."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5, 6)).astype(np.float32)
    x[45:, 2] = x[:45, 0] + rng.normal(0, 0.05, (45, 6))  # view 2 of the second half ~ the first half's own
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    n, v = x.shape[:2]
    sims = np.array([[max(max(x[i, a] @ x[j, 0], x[i, 0] @ x[j, a]) for a in range(v)) for j in range(n)]
                     for i in range(n)])
    np.testing.assert_allclose(similarities(x, x), np.minimum(sims, 1), atol=1e-6)
    labels, centroids = kmeans(own(x).copy(), 4, seed=0)
    distance = dedup(x, labels, centroids, 0.9, epsilon=None).distance
    for probes in (1, 2, 4):
        near = probe_clusters(own(x), labels, centroids, probes)
        expect = _probe_reference(own(x), labels, near, 0.9, distance, sims=sims)
        for block in (1024, 7):
            np.testing.assert_array_equal(dedup(x, labels, centroids, 0.9, epsilon=None, probes=probes,
                                                block=block).keep, expect)
    found = dedup(x, labels, centroids, 0.9, epsilon=None, probes=4).keep  # the planted view pairs: one of each
    assert np.mean(found[:45] ^ found[45:]) >= 0.75  # measured 0.80; own vectors alone: 0.27
    plain = dedup(own(x).copy(), labels, centroids, 0.9, epsilon=None, probes=4).keep
    assert np.mean(plain[:45] ^ plain[45:]) < 0.4
    flat = own(x).copy()
    np.testing.assert_array_equal(dedup(flat[:, None], labels, centroids, 0.5, probes=2).keep,
                                  dedup(flat, labels, centroids, 0.5, probes=2).keep)


def _zoom28(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A crop of 60-90 % of each side anywhere in a 28 x 28 image, resized back (as benchmarks/meddel_duplicates.py)."""
    from PIL import Image

    side = round(rng.uniform(0.6, 0.9) * 28)
    y, x = rng.integers(0, 28 - side + 1, size=2)
    return np.asarray(Image.fromarray(image[y:y + side, x:x + side]).resize((28, 28), Image.BILINEAR))


def test_views_find_planted_zoomed_crops_of_real_xrays(tmp_path):
    """60 real PneumoniaMNIST images + a zoomed crop of each + 60 unrelated ones: ``embed --source views``
    + MedDEL at 2/3 with one cluster removes one of >= 85 % of the pairs and <= 10 % of the unrelated
    images (chance 45 % / 33 %; measured 98 % / 2 %); the intensity embedding of the same set stays near
    chance (< 60 %; measured 47 % / 42 %)."""
    images = np.load(SUBSET)["train_images"]
    rng = np.random.default_rng(0)
    planted = np.concatenate([images[:60], np.stack([_zoom28(im, rng) for im in images[:60]]), images[60:120]])
    np.savez(tmp_path / "zoom.npz", train_images=planted)
    scores = {}
    for source in ("views", "intensities"):
        assert main(["embed", "--npz", str(tmp_path / "zoom.npz"), "--source", source, "--no-progress",
                     "-o", str(tmp_path / source)]) == 0
        assert main(["meddel", str(tmp_path / source), "--fraction", str(2 / 3), "--clusters", "1",
                     "--epsilon", "none", "-o", str(tmp_path / f"{source}.csv")]) == 0
        keep = pd.read_csv(tmp_path / f"{source}.csv").set_index("id")["keep"]
        scores[source] = (np.mean([keep[i] + keep[60 + i] == 1 for i in range(60)]),
                          np.mean([keep[120 + i] == 0 for i in range(60)]))
    assert load_embeddings(tmp_path / "views").meta["views"] == 491
    assert scores["views"][0] >= 0.85 and scores["views"][1] <= 0.10, scores
    assert scores["intensities"][0] < 0.6, scores


def test_bad_inputs_of_the_views_embedding(tmp_path, capsys):
    hippo = SUBSET.parent / "hippocampus40"
    assert main(["embed", "--raw", str(hippo), "--source", "views", "--no-progress", "-o", str(tmp_path / "e")]) == 2
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 1 and "views takes 2D images; got 3 spatial axes" in line[0] and ".nii" in line[0]
    np.savez(tmp_path / "x.npz", train_images=np.load(SUBSET)["train_images"][:5])
    assert main(["embed", "--npz", str(tmp_path / "x.npz"), "--source", "views", "--views-grid", "1",
                 "--no-progress", "-o", str(tmp_path / "e2")]) == 2
    assert "views: need 2 <= grid <= base" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 1.0])
def test_target_fraction_lands_within_tolerance(planted, fraction, backend):
    emb = load_embeddings(planted[0])
    result = run_meddel(emb, fraction=fraction, clusters=8, tolerance=0.01, backend=backend)
    assert abs(result.fraction - fraction) <= 0.01
    assert result.target == fraction and -1 <= result.eta <= 1


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_results_are_deterministic_with_a_seed(planted, tmp_path, backend):
    outs = []
    for name in ("a.csv", "b.csv"):
        assert main(["meddel", str(planted[0]), "--fraction", "0.3", "--seed", "3", "--kmeans", backend,
                     "-o", str(tmp_path / name)]) == 0
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1]


def test_epsilon_filter_removes_far_members_first(planted):
    x = _unit(load_embeddings(planted[0]))
    labels, centroids = kmeans(x, 4, seed=0)
    result = dedup(x, labels, centroids, 1.0, epsilon=0.05)
    far = result.distance > 0.05
    assert far.any() and not result.keep[far].any() and set(result.reason[far]) == {"epsilon"}
    with pytest.raises(DietError, match="epsilon filter"):
        dedup_to_fraction(x, labels, centroids, 0.99, epsilon=0.05)


def test_clear_errors(planted, tmp_path, capsys):
    x = _unit(load_embeddings(planted[0]))
    labels, centroids = kmeans(x, 4, seed=0)
    with pytest.raises(DietError, match="non-empty"):
        l2_normalise(np.zeros((0, 8), np.float32), "empty.npz")
    bad = x.copy()
    bad[5, 3] = np.nan
    with pytest.raises(DietError, match="row 5 has NaN"):
        l2_normalise(bad, "nan.npz")
    with pytest.raises(DietError, match="dimension"):
        dedup(x, labels, centroids[:, :10], 0.9)
    with pytest.raises(DietError, match="backend must be one of faiss, sklearn"):
        kmeans(x, 4, backend="cuml")
    for fraction in (0.0, 1.5, -0.2):
        with pytest.raises(DietError, match=r"\(0, 1\]"):
            dedup_to_fraction(x, labels, centroids, fraction)
    for probes in (0, 5):
        with pytest.raises(DietError, match=r"probes must be in \[1, 4\]"):
            dedup(x, labels, centroids, 0.9, probes=probes)
    assert main(["meddel", str(planted[0]), "--fraction", "0.5", "--clusters", "4", "--probes", "0"]) == 2
    assert "probes must be in [1, 4]" in capsys.readouterr().err
    with pytest.raises(DietError, match="below one sample per cluster"):
        dedup_to_fraction(x, labels, centroids, 0.001, epsilon=None)
    np.savez(tmp_path / "nan.npz", ids=np.arange(3), embeddings=np.array([[1, 0], [np.nan, 1], [0, 1.0]]))
    assert main(["meddel", str(tmp_path / "nan.npz"), "--eta", "0.9"]) == 2
    assert "nan.npz: row 1 has NaN" in capsys.readouterr().err
    np.savez(tmp_path / "empty.npz", ids=np.arange(0), embeddings=np.zeros((0, 4)))
    assert main(["meddel", str(tmp_path / "empty.npz"), "--fraction", "0.5"]) == 2
    assert "empty.npz: expected a non-empty" in capsys.readouterr().err
    assert main(["meddel", str(planted[0]), "--fraction", "1.2"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    (planted[0] / "meta.json").write_text((planted[0] / "meta.json").read_text().replace('"d": 256', '"d": 768'))
    try:
        assert main(["meddel", str(planted[0]), "--fraction", "0.5"]) == 2
        assert "768-d" in capsys.readouterr().err
    finally:
        (planted[0] / "meta.json").write_text((planted[0] / "meta.json").read_text().replace('"d": 768', '"d": 256'))


def test_per_centre_view_and_keep_list_for_prune(planted, tmp_path, capsys):
    ids = load_embeddings(planted[0]).ids
    centres = tmp_path / "centres.csv"
    centres.write_text("id,centre\n" + "".join(f"{i},{'copies' if int(i) >= N_REAL else 'real'}\n" for i in ids))
    out = tmp_path / "keep.csv"
    assert main(["meddel", str(planted[0]), "--eta", "0.98", "--clusters", "8", "--centres", str(centres),
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "real" in printed and "copies" in printed and "kept_fraction" in printed
    table = pd.read_csv(out, dtype={"id": str})
    assert set(table["centre"]) == {"real", "copies"}
    train = [str(i) for i in range(0, N_REAL + 30, 3)]
    result = keep_fold(train, table)
    assert result.train == [i for i in train if table.set_index("id").loc[i, "keep"] == 1]
    assert sorted(result.train + result.removed) == sorted(train)
    with pytest.raises(DietError, match="not in the keep list"):
        keep_fold(train + ["no_such_case"], table)


def test_normdel_table_reproduces_the_papers_table_3(tmp_path, capsys):
    # Kvasir-SEG, paper 002 Table 3: mIoU and NormDEL x 100 at 5 / 10 / 20 / 33 / 50 / 100 % retained.
    rows = [(0.05, 75.45, 67.21), (0.10, 75.74, 66.49), (0.20, 76.37, 65.14), (0.33, 76.03, 63.33),
            (0.50, 76.77, 61.43), (1.00, 76.02, 56.95)]
    src = tmp_path / "results.csv"
    pd.DataFrame({"fraction": [r[0] for r in rows], "metric": [r[1] / 100 for r in rows]}).to_csv(src, index=False)
    assert main(["normdel-table", str(src), "-o", str(tmp_path / "out.csv")]) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(out["normdel"], [r[2] for r in rows], atol=0.006)
    pd.DataFrame({"fraction": [0.05], "metric": [75.45]}).to_csv(src, index=False)
    assert main(["normdel-table", str(src)]) == 2
    assert "results.csv: metric must be in [0, 1]" in capsys.readouterr().err


def test_faiss_kmeans_survives_simpleitk_imported_after_faiss():
    """SimpleITK (imported by nnU-Net) re-registers SWIG's std::vector<float> proxy; faiss.Kmeans then fails
    to read its centroids. Our k-means must give faiss.Kmeans's centroids whatever the import order."""
    pytest.importorskip("faiss")
    script = """
import numpy as np, faiss
x = np.random.default_rng(0).random((300, 16)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
ref = faiss.Kmeans(16, 6, niter=20, seed=2, spherical=True, max_points_per_centroid=300,
                   min_points_per_centroid=1)
ref.train(x)
import SimpleITK  # noqa: F401  (after faiss: the order that broke faiss.Kmeans)
from nnunet_diet.embed.cluster import kmeans
labels, centroids = kmeans(x, 6, seed=2, backend="faiss")
expect = ref.centroids / np.linalg.norm(ref.centroids, axis=1, keepdims=True)
np.testing.assert_allclose(centroids, expect, atol=1e-6)
np.testing.assert_array_equal(labels, (x @ expect.T).argmax(1))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
