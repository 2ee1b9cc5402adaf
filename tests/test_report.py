"""``nnunet-diet report`` on real data: a fold folder built from the shipped MONAI U-Net records of the 40
shipped hippocampus cases (no training), the shipped PneumoniaMNIST dynamics, real polyp images; and the
HTML rendered in headless Chromium."""

import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_diet.core.dad import dad_trajectory
from nnunet_diet.core.store import DynamicsStore
from nnunet_diet.nnunet.config import DADConfig
from nnunet_diet.nnunet.outputs import write_outputs
from nnunet_diet.report.thumbnails import OUTLINE_COLOURS, ImageFinder, mid_slice, thumbnail_png

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "nnunet_diet" / "examples"
SHARED = ROOT.parent / "shared" / "data"
CLI = str(Path(sys.executable).parent / "nnunet-diet")
CHROMIUM = Path("/usr/bin/chromium")
DATASET = "Dataset990_hippocampus40"
RUN = "nnUNetTrainerDAD__nnUNetPlans__3d_fullres"


def cli(*args, env=None, check=True):
    proc = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def inproc(capsys, monkeypatch, *args, env=None):
    """``nnunet-diet ARGS`` in this process (no start-up cost); ``env`` replaces the nnUNet_* variables."""
    from nnunet_diet.cli.main import main

    for key in [k for k in os.environ if k.startswith("nnUNet_")]:
        monkeypatch.delenv(key)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def md_table(markdown: str, caption_start: str) -> pd.DataFrame:
    """The markdown table that follows the line starting with ``caption_start``."""
    lines = markdown.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(caption_start))
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return pd.DataFrame(rows[2:], columns=rows[0])


@pytest.fixture(scope="module")
def nnunet(tmp_path_factory):
    """``nnUNet_results/<Dataset>/<run>/fold_0/dad/`` as nnUNetTrainerDAD leaves it when the stop rule ends the
    run, from the shipped real records; the raw dataset under a separate ``nnUNet_raw``; centres A / B."""
    root = tmp_path_factory.mktemp("nnunet")
    fold = root / "nnUNet_results" / DATASET / RUN / "fold_0"
    store = DynamicsStore.load(EXAMPLES / "hippocampus_dice.npz")
    config = DADConfig()
    stop = dad_trajectory(store["dice"], config.window).stop_epoch
    assert stop is not None and stop < store.n_epochs - 1
    store.truncate(stop + 1)  # the trainer stops after the epoch where the rule fired
    store.save(fold / "dad" / "dynamics.npz")
    write_outputs(store, config, fold / "dad", num_epochs=100, stop_epoch=stop)
    raw = root / "raw_elsewhere"
    raw.mkdir()
    (raw / DATASET).symlink_to(EXAMPLES / "hippocampus40", target_is_directory=True)
    ids = pd.read_csv(fold / "dad" / "scores.csv")["id"]
    centres = root / "centres.csv"
    centres.write_text("id,centre\n" + "".join(f"{i},{'A' if int(i[-3:]) < 30 else 'B'}\n" for i in ids))
    return {"root": root, "fold": fold, "raw": raw, "centres": centres, "stop": stop}


def meddel_keep_table(folder: Path) -> Path | None:
    """MedDEL's own commands (intensity embedding of the 40 shipped volumes, 60 % kept) -> its keep table;
    None when those commands are not available."""
    from nnunet_diet.cli.main import main

    emb, keep = folder / "emb", folder / "keep.csv"
    try:
        if main(["embed", "--raw", str(EXAMPLES / "hippocampus40"), "-o", str(emb), "--no-progress"]) != 0:
            return None
        if main(["meddel", str(emb), "--fraction", "0.6", "-o", str(keep)]) != 0:
            return None
    except SystemExit:  # argparse: no such command
        return None
    return keep


@pytest.fixture(scope="module")
def fold_report(nnunet):
    """The real console script on the fold: images through $nnUNet_raw, centres from a CSV, a MedDEL table."""
    out = nnunet["root"] / "out" / "report.html"
    keep = meddel_keep_table(nnunet["root"])
    proc = cli("report", nnunet["fold"], "--centres", nnunet["centres"], "-o", out,
               *(["--meddel", keep] if keep else []), env={"nnUNet_raw": str(nnunet["raw"])})
    return {"out": out, "stdout": proc.stdout, "html": out.read_text(), "md": out.with_suffix(".md").read_text(),
            "scores": pd.read_csv(nnunet["fold"] / "dad" / "scores.csv"), "keep": keep}


def test_fold_report_is_one_self_contained_file(fold_report):
    page = fold_report["html"]
    assert sorted(p.name for p in fold_report["out"].parent.iterdir()) == ["report.html", "report.md"]
    assert "images for all 12 cases shown" in fold_report["stdout"]
    assert not re.search(r"https?:", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    # 4 easiest, 4 most ambiguous, 4 hardest, and the first 8 of the label-audit queue
    assert page.count('<div class="thumb"><img') == 12 + 8
    assert len(sources) == 12 + 8 + 3  # + data map, moving distance, DAD over epochs
    # the data map's hover areas: one per case, linked to its table row
    assert page.count("<area ") == 40 and page.count('id="case-hippocampus_') == 40


def test_fold_report_shows_the_extreme_cases(fold_report):
    scores = fold_report["scores"].sort_values("dad")
    md = fold_report["md"]
    hardest = md.split("**hardest (4)**: ")[1].splitlines()[0]
    easiest = md.split("**easiest (4)**: ")[1].splitlines()[0]
    assert [c.split(" · ")[0] for c in hardest.split("; ")] == scores["id"].head(4).tolist()
    assert [c.split(" · ")[0] for c in easiest.split("; ")] == scores["id"].tail(4)[::-1].tolist()


def test_fold_report_agreement_tables(fold_report):
    scores = fold_report["scores"]
    cols = ["dad", "el2n", "el2nx"]
    rho = scores[cols].corr(method="spearman")
    table = md_table(fold_report["md"], "Spearman rank correlation").set_index("score")
    assert list(table.columns) == cols
    for a in cols:
        for b in cols:
            assert float(table.loc[a, b]) == pytest.approx(rho.loc[a, b], abs=6e-4)
    assert f"{rho.loc['dad', 'el2n']:.3f}" in fold_report["html"]
    k = 16  # 40 % of 40
    hard = {"dad": set(scores.nsmallest(k, "dad")["id"]), "el2n": set(scores.nlargest(k, "el2n")["id"]),
            "el2nx": set(scores.nlargest(k, "el2nx")["id"])}
    overlap = md_table(fold_report["md"], "Top-k overlap").set_index("score")
    for a in cols:
        for b in cols:
            assert float(overlap.loc[a, b]) == pytest.approx(len(hard[a] & hard[b]) / k, abs=6e-4)


def test_fold_report_per_centre_table(fold_report):
    scores = fold_report["scores"]
    centre = np.where(scores["id"].str[-3:].astype(int) < 30, "A", "B")
    table = md_table(fold_report["md"], "Cases per centre").set_index("centre")
    assert list(table.index) == ["A", "B", "all"]
    ranked = scores.assign(centre=centre).sort_values("dad", kind="stable")
    tails = pd.concat([ranked.head(8), ranked.tail(8)])  # keep ambiguous at rate 0.4: 8 + 8 removed
    for c in ("A", "B"):
        part = scores[centre == c]
        row = table.loc[c]
        assert int(row["cases"]) == len(part)
        assert float(row["mean DAD"]) == pytest.approx(part["dad"].mean(), abs=6e-4)
        assert float(row["hard %"]) == pytest.approx(100 * (part["region"] == "hard").mean(), abs=0.06)
        assert int(row["keep ambiguous: removed"]) == int((tails["centre"] == c).sum())
        assert int(row["keep easy: removed"]) == int((ranked.head(16)["centre"] == c).sum())
        assert int(row["keep hard: removed"]) == int((ranked.tail(16)["centre"] == c).sum())
    assert int(table.loc["all", "keep ambiguous: removed"]) == 16


def test_fold_report_meddel_table(fold_report):
    if fold_report["keep"] is None:
        pytest.skip("MedDEL commands (nnunet-diet embed / meddel) unavailable")
    table = md_table(fold_report["md"], "MedDEL keep table").set_index("score")
    keep = pd.read_csv(fold_report["keep"], dtype={"id": str})
    removed = set(keep.loc[keep["keep"] == 0, "id"])
    assert list(table.index) == ["dad", "el2n", "el2nx"] and (table["MedDEL removed"].astype(int) == len(removed)).all()
    scores = fold_report["scores"]
    hard = set(scores.nsmallest(16, "dad")["id"])
    assert float(table.loc["dad", "share in hard top-k"]) == pytest.approx(len(removed & hard) / len(removed), abs=6e-4)


def test_fold_report_with_explicit_raw(nnunet, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.html"
    rc, stdout, _ = inproc(capsys, monkeypatch, "report", nnunet["fold"], "--raw", EXAMPLES / "hippocampus40",
                           "--thumbs", 1, "--rate", 0.2, "-o", out)
    assert rc == 0 and "images for all 3 cases shown" in stdout
    assert out.read_text().count('<div class="thumb"><img') == 3 + 2  # + the first 2 of the label-audit queue
    total = md_table(out.with_suffix(".md").read_text(), "Cases per centre").set_index("centre").loc["all"]
    assert (total["easy %"], total["hard %"], total["keep ambiguous: removed"]) == ("10.0", "10.0", "8")


def test_fold_report_without_images_says_where_it_looked(nnunet, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r.html"
    rc, stdout, _ = inproc(capsys, monkeypatch, "report", nnunet["fold"] / "dad", "-o", out)
    assert rc == 0 and "images for 0 of 12 cases" in stdout
    page = out.read_text()
    assert page.count('<div class="missing">no image</div>') == 12 + 8  # + the first 8 of the label-audit queue
    assert "Looked in: " + str(nnunet["root"] / "nnUNet_raw" / DATASET) in html.unescape(page)
    assert "No centre per case" in page


def test_report_bad_input_is_one_line(nnunet, tmp_path, capsys, monkeypatch):
    rc, _, err = inproc(capsys, monkeypatch, "report", tmp_path / "nothing")
    assert rc == 2 and "no such folder" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "keep.csv"
    bad.write_text("id,cluster\nhippocampus_001,3\n")
    rc, _, err = inproc(capsys, monkeypatch, "report", nnunet["fold"], "--meddel", bad)
    assert rc == 2 and "missing column(s) keep" in err
    assert not list(tmp_path.glob("*.html")) and not (nnunet["fold"] / "dad" / "report.html").exists()


def test_3d_slice_goes_through_the_label():
    case = ImageFinder([EXAMPLES / "hippocampus40"]).find("hippocampus_001")
    assert case is not None and case.nifti and case.image.shape == case.label.shape
    img2, lab2, _, where = mid_slice(case.image, case.label, case.spacing)
    fg = case.label > 0
    com = np.rint(np.argwhere(fg).mean(0)).astype(int)
    best = max(fg.take(com[a], axis=a).sum() for a in range(3))
    assert lab2 is not None and (lab2 > 0).sum() == best and where.startswith("axis ")
    png, _ = thumbnail_png(case)
    assert png.startswith(b"\x89PNG")


@pytest.mark.skipif(not (SHARED / "polyp" / "Kvasir-SEG").is_dir(), reason="../shared/data/polyp not present")
def test_2d_rgb_thumbnails_from_real_polyp_images(tmp_path):
    from PIL import Image

    src = SHARED / "polyp" / "Kvasir-SEG"
    case = sorted(p.stem for p in (src / "masks").glob("*.jpg"))[0]
    rgb = np.asarray(Image.open(src / "images" / f"{case}.jpg").convert("RGB"))
    mask = (np.asarray(Image.open(src / "masks" / f"{case}.jpg").convert("L")) > 127).astype(np.uint8)
    one, three = tmp_path / "one", tmp_path / "three"  # nnU-Net raw: one RGB PNG, or R, G, B as _0000.._0002
    for folder in (one, three):
        (folder / "imagesTr").mkdir(parents=True)
        (folder / "labelsTr").mkdir()
        (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                          "file_ending": ".png",
                                                          "labels": {"background": 0, "polyp": 1}}))
        Image.fromarray(mask).save(folder / "labelsTr" / f"{case}.png")
    Image.fromarray(rgb).save(one / "imagesTr" / f"{case}_0000.png")
    for c in range(3):
        Image.fromarray(rgb[..., c]).save(three / "imagesTr" / f"{case}_000{c}.png")
    # the shared folder itself (images/ + masks/, lossy JPEG masks) works too
    for root in (one, three, src):
        found = ImageFinder([root]).find(case)
        assert found is not None and found.rgb and found.image.shape == rgb.shape
        assert np.array_equal(found.label > 0, mask > 0)
        if root != src:
            assert np.array_equal(found.image, rgb)
        png, where = thumbnail_png(found)
        assert where == "2D"
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
        outline = np.array([int(OUTLINE_COLOURS[0][i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels.astype(int) - outline).sum(1) < 60).sum() > 50  # the label outline is drawn


@pytest.fixture(scope="module")
def medmnist_report(tmp_path_factory):
    """A MedMNIST run folder (the harness layout: dynamics.npz, config.json) from the shipped real dynamics,
    its images in the shipped subset (rows of the official train split in train_indices)."""
    run = tmp_path_factory.mktemp("medmnist_run")
    shutil.copy(EXAMPLES / "pneumoniamnist_dynamics.npz", run / "dynamics.npz")
    (run / "config.json").write_text(json.dumps({"data": str(EXAMPLES / "pneumoniamnist_subset.npz")}))
    proc = cli("report", run)
    out = run / "report.html"
    return {"run": run, "out": out, "stdout": proc.stdout, "html": out.read_text(),
            "md": out.with_suffix(".md").read_text()}


def test_medmnist_report(medmnist_report):
    store = DynamicsStore.load(medmnist_report["run"] / "dynamics.npz")
    table = md_table(medmnist_report["md"], "Samples per class").set_index("class")
    counts = pd.Series(store.groups).value_counts()
    assert int(table.loc["0", "samples"]) == counts["0"] == 217 and int(table.loc["1", "samples"]) == 583
    assert float(table.loc["all", "hard %"]) == pytest.approx(20.0)
    with np.load(EXAMPLES / "pneumoniamnist_subset.npz") as z:
        with_image = int(np.isin(store.ids, z["train_indices"]).sum())
    page = medmnist_report["html"]
    thumbs = page.count('<div class="thumb"><img')
    assert thumbs == min(24, with_image) and f"{with_image} of 800 samples have an image" in page
    assert not re.search(r"https?:", page, re.I)
    assert md_table(medmnist_report["md"], "Spearman rank correlation").shape[0] == 5  # el2n eva forgetting aum conf


def test_medmnist_harness_run_folder(tmp_path, capsys, monkeypatch):
    """The harness layout: ids = rows of the run's data file. The real records of the 55 shipped-example
    samples that are in the shipped subset, re-indexed to their subset rows, cut to 12 epochs (too short for
    EVA's two windows: the report says so and shows the other scores)."""
    from nnunet_diet.report.classification import _train_rows

    subset = EXAMPLES / "pneumoniamnist_subset.npz"
    full = DynamicsStore.load(EXAMPLES / "pneumoniamnist_dynamics.npz")
    with np.load(subset) as z:
        official, images = z["train_indices"], z["train_images"]
    inside = np.flatnonzero(np.isin(full.ids, official))
    rows = np.searchsorted(official, full.ids[inside])
    store = DynamicsStore(rows, full.names, groups=full.groups[inside],
                          metadata={"data": str(subset), "ids": "row indices of the file's train split"})
    for epoch in range(12):
        store.record(epoch, None, {n: full[n][inside, epoch] for n in full.names})
    run = tmp_path / "run"
    store.save(run / "dynamics.npz")
    (run / "config.json").write_text(json.dumps({"data": str(subset), "n_train": len(rows)}))
    got, has = _train_rows(subset, store.ids, rows_of_file=True)
    assert has.all() and np.array_equal(got[:, 0], images[rows])
    rc, stdout, _ = inproc(capsys, monkeypatch, "report", run, "--thumbs", 2)
    assert rc == 0 and "images for all 12 cases shown" in stdout
    md = (run / "report.md").read_text()
    assert "EVA not computed (EVA windows must not overlap" in md
    assert list(md_table(md, "Spearman rank correlation")["score"]) == ["el2n", "forgetting", "aum", "confidence"]


@pytest.mark.skipif(not (SHARED / "medmnist" / "pneumoniamnist.npz").is_file(), reason="../shared/data/medmnist absent")
def test_medmnist_images_from_the_official_file(medmnist_report, tmp_path, capsys, monkeypatch):
    from nnunet_diet.report.classification import _train_rows

    full = SHARED / "medmnist" / "pneumoniamnist.npz"
    store = DynamicsStore.load(medmnist_report["run"] / "dynamics.npz")
    a, has_a = _train_rows(full, store.ids)
    b, has_b = _train_rows(EXAMPLES / "pneumoniamnist_subset.npz", store.ids)
    assert has_a.all() and np.array_equal(a[has_b], b[has_b])  # subset rows map to the same official images
    out = tmp_path / "r.html"
    rc, stdout, _ = inproc(capsys, monkeypatch, "report", EXAMPLES / "pneumoniamnist_dynamics.npz", "--images", full,
                           "-o", out)
    assert rc == 0 and "images for all 24 cases shown" in stdout
    assert out.read_text().count('<div class="thumb"><img') == 24


# ---------------------------------------------------------------------------------------------- browser
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'load failed: ' + t.tagName + ' ' + t.alt : 'error: ' + e.message);
}, true);
document.addEventListener('securitypolicyviolation', function (e) {
  window.__errors.push('csp: ' + e.blockedURI + ' ' + e.violatedDirective);
});
['error', 'warn'].forEach(function (k) {
  var f = console[k];
  console[k] = function () {
    window.__errors.push(k + ': ' + [].join.call(arguments, ' ')); f.apply(console, arguments);
  };
});
window.addEventListener('load', function () {
  var imgs = [].slice.call(document.images);
  var broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                   .map(function (i) { return i.alt; });
  var r = document.createElement('pre'); r.id = 'probe';
  r.textContent = JSON.stringify({images: imgs.length, broken: broken, errors: window.__errors});
  document.body.appendChild(r);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=90)


def render_check(page: str, tmp_path: Path, name: str) -> tuple[dict, list[str]]:
    """Load ``page`` with the probe script in headless Chromium: (probe result, console lines of the log).

    The report's Content-Security-Policy is kept (``default-src 'none'; img-src data:``) and only widened by
    ``script-src 'unsafe-inline'`` so that the probe runs; any fetch other than a data: image is refused and
    reported as a CSP violation."""
    assert "default-src 'none'; img-src data:;" in page
    probed = page.replace("style-src 'unsafe-inline'\"", "style-src 'unsafe-inline'; script-src 'unsafe-inline'\"", 1)
    probed = probed.replace("<head>", "<head>" + PROBE, 1)
    path = tmp_path / name
    path.write_text(probed)
    proc = chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", path.as_uri())
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no probe result from Chromium (rc {proc.returncode}): {proc.stderr[-800:]}"
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(m.group(1))), console


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium absent: install Debian's chromium "
                                                  "(apt-get install -y chromium) to render the report")
def test_reports_render_in_headless_chromium(fold_report, medmnist_report, tmp_path):
    # the probe itself sees broken images, refused network fetches and console errors
    bad = fold_report["html"].replace("</body>", '<img alt="broken" src="data:image/png;base64,AAAA">'
                                      '<img alt="remote" src="http://127.0.0.1:9/x.png">'
                                      '<script>console.error("boom")</script></body>')
    probe, console = render_check(bad, tmp_path, "control.html")
    assert probe["broken"] == ["broken", "remote"]
    assert any("csp: http://127.0.0.1:9/x.png" in e for e in probe["errors"]) and "error: boom" in probe["errors"]
    assert console

    for report, n_images in ((fold_report, 23), (medmnist_report, None)):
        probe, console = render_check(report["html"], tmp_path, report["out"].name + ".probe.html")
        expected = n_images or report["html"].count("<img ")
        assert probe == {"images": expected, "broken": [], "errors": []}
        assert console == []

    shot = tmp_path / "report.png"
    proc = chromium(tmp_path, "--window-size=1200,2000", f"--screenshot={shot}", fold_report["out"].as_uri())
    assert shot.is_file() and shot.stat().st_size > 50_000, proc.stderr[-500:]
