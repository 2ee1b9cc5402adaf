"""Report of a MedMNIST classification run (``nnunet-diet medmnist train``) or a classification dynamics file.

Scores come from the core :func:`~nnunet_diet.core.scores.score_table` on the run's store (EVA, EL2N,
forgetting, AUM; entropy when ``train_probs.npy`` is there). The data map is dataset cartography's
(Swayamdipta et al. 2020): the mean and the standard deviation of ``p_true`` (the softmax probability of
the true class) over all recorded epochs, i.e. DAD with Dice replaced by ``p_true`` and one window over
the whole run. Regions are bands of that mean confidence at the pruning rate q, as for DAD: hard = the
lowest q/2, easy = the highest q/2, ambiguous = the rest (without ``p_true``: bands of EL2N, low = easy).

Images: ``--images NPZ``, else the run's ``config.json`` ``data``, else the store's ``metadata['data']``.
Stores of the harness (``metadata['ids']`` says "row indices") hold rows of that file's train split; other
stores' ids are matched against the file's ``train_indices`` when it has them (the shipped subset lists
the rows of the official split its images come from, which is what the shipped example dynamics use),
else taken as rows.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.classification import entropy
from ..core.dad import dad_windows
from ..core.errors import DietError
from ..core.scores import ScoreConfig, score_table
from ..core.selection import regions as bands
from ..core.store import DynamicsStore
from .agreement import agreement_section, score_columns
from .html import Report, hover_data_map
from .plots import data_map_figure, plt
from .segmentation import REGIONS
from .thumbnails import array_thumbnail_png

__all__ = ["RunInput", "locate_run", "medmnist_table", "build_medmnist_report"]


@dataclass
class RunInput:
    store: DynamicsStore
    path: Path                     # the dynamics file
    probs: np.ndarray | None       # final model's softmax on the training samples (entropy)
    images: np.ndarray | None      # one image per store row (C x S x S uint8), rows without one are absent
    has_image: np.ndarray          # bool per store row
    looked: list[str]
    images_path: Path | None
    notes: list[str] = field(default_factory=list)


def _train_rows(path: Path, ids: np.ndarray, rows_of_file: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images of ``ids`` from a MedMNIST-layout npz: ``(images, has_image)``. ``ids`` are rows of the file's
    train split when ``rows_of_file`` or when it has no ``train_indices``; else values of ``train_indices``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "train_images" not in z.files:
                raise DietError(f"{path}: no train_images (not a MedMNIST file)")
            images = z["train_images"]
            index = z["train_indices"] if "train_indices" in z.files and not rows_of_file else np.arange(len(images))
    except DietError:
        raise
    except Exception as exc:
        raise DietError(f"{path}: cannot read images ({type(exc).__name__}: {exc})") from None
    if ids.dtype.kind not in "iu":
        raise DietError(f"{path}: the store's ids are not integer rows, cannot match them to images")
    order = np.argsort(index, kind="stable")
    pos = np.clip(np.searchsorted(index[order], ids), 0, len(index) - 1)
    has = index[order][pos] == ids
    rows = order[pos]
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4:
        images = np.moveaxis(images, -1, 1)
    out = np.zeros((len(ids),) + images.shape[1:], images.dtype)
    out[has] = images[rows[has]]
    return out, has


def locate_run(source: Path, images: Path | None = None) -> RunInput:
    """A run folder (``dynamics.npz``, ``config.json``, ``train_probs.npy``) or a dynamics ``.npz``."""
    path = source / "dynamics.npz" if source.is_dir() else source
    store = DynamicsStore.load(path)
    if "dice" in store and "p_true" not in store and "error_norm" not in store:
        raise DietError(f"{path}: a segmentation store (series dice); report on the nnU-Net fold folder instead")
    probs = None
    if source.is_dir() and (source / "train_probs.npy").is_file():
        probs = np.load(source / "train_probs.npy")
        if probs.shape[0] != store.n_samples:
            probs = None
    candidates = [images] if images is not None else []
    if images is None and source.is_dir() and (source / "config.json").is_file():
        try:
            data = json.loads((source / "config.json").read_text()).get("data")
        except ValueError:
            data = None
        if data:
            candidates.append(Path(data))
    if images is None and store.metadata.get("data"):
        candidates.append(Path(str(store.metadata["data"])))
    candidates = list(dict.fromkeys(candidates))
    # the harness records rows of its data file; other stores (the shipped example) index the official split
    rows_of_file = "row indices" in str(store.metadata.get("ids", ""))
    for cand in candidates:
        if cand.is_file():
            arr, has = _train_rows(cand, store.ids, rows_of_file)
            return RunInput(store, path, probs, arr, has, [str(c) for c in candidates], cand)
    if images is not None:
        raise DietError(f"{images}: no such images file (--images)")
    return RunInput(store, path, probs, None, np.zeros(store.n_samples, bool), [str(c) for c in candidates], None)


def _without_eva(store: DynamicsStore) -> DynamicsStore:
    """The same records with ``error_norm`` named ``el2n``: score_table then gives EL2N (same window, same
    function) but no EVA."""
    names = ["el2n" if n == "error_norm" else n for n in store.names]
    out = DynamicsStore(store.ids, names, groups=store.groups, capacity=max(store.n_epochs, 1))
    for epoch in range(store.n_epochs):
        out.record(epoch, None, {new: store[old][:, epoch] for new, old in zip(names, store.names)})
    return out


def medmnist_table(src: RunInput, rate: float) -> tuple[pd.DataFrame, str]:
    """Per-sample table (id, class, confidence, variability, region, scores) and the region rule used."""
    try:
        cols, _ = score_table(src.store, ScoreConfig())
    except DietError as exc:  # e.g. a short run: EVA's early and late windows overlap
        src.notes.append(f"EVA not computed ({exc}); the other scores are.")
        cols, _ = score_table(_without_eva(src.store), ScoreConfig())
    table = pd.DataFrame(cols).rename(columns={"group": "class"})
    if "class" not in table.columns:
        table["class"] = ""
    if src.probs is not None:
        table["entropy"] = entropy(src.probs)
    if "p_true" in src.store:
        conf, var = dad_windows(src.store["p_true"], src.store.n_epochs)
        table["confidence"], table["variability"] = conf[0].astype(float), var[0].astype(float)
        table["region"] = bands(table["confidence"].to_numpy(float), rate)
        rule = "mean p_true over all epochs"
    elif "el2n" in table.columns:
        table["region"] = bands(-table["el2n"].to_numpy(float), rate)
        rule = "EL2N (low = easy)"
    else:
        raise DietError(f"{src.path}: no p_true or error_norm series, nothing to map")
    return table, rule


def class_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for label in [*sorted(table["class"].astype(str).unique(), key=lambda s: (len(s), s)), "all"]:
        part = table if label == "all" else table[table["class"].astype(str) == label]
        row = {"class": label, "samples": len(part), "share %": 100.0 * len(part) / len(table)}
        for region in REGIONS:
            row[f"{region} %"] = 100.0 * float((part["region"] == region).mean())
        for score in ("confidence", "eva", "el2n"):
            if score in part.columns:
                row[f"mean {score}"] = part[score].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _png(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def build_medmnist_report(src: RunInput, *, rate: float | None = None, meddel: pd.DataFrame | None = None,
                          n_examples: int = 8, topk: float = 0.4, title: str | None = None) -> tuple[Report, dict]:
    rate = 0.4 if rate is None else rate
    table, rule = medmnist_table(src, rate)
    ids = table["id"].to_numpy()
    name = src.path.parent.name if src.path.name == "dynamics.npz" else src.path.stem
    rep = Report(title or f"Training-dynamics report: {name}")
    rep.bullets([f"dynamics: {src.path} ({src.store.n_samples} samples x {src.store.n_epochs} epochs, "
                 f"series {', '.join(src.store.names)})",
                 f"regions: bands of {rule} at pruning rate {rate:g} (hard = lowest {rate / 2:g}, easy = highest "
                 f"{rate / 2:g}, ambiguous = the rest)",
                 f"images: {src.images_path or 'not found'}", *src.notes])

    rep.heading("Data map")
    reg = table["region"].to_numpy(str)
    figs, maps = [], []
    if "confidence" in table.columns:
        png, area_map = hover_data_map(table["confidence"].to_numpy(float), table["variability"].to_numpy(float), reg,
                                       ids, xlabel="variability of p_true", ylabel="mean p_true", dpi=100)
        figs.append((png, "Data map (dataset cartography): mean confidence in the true class against its "
                          "variability over all epochs; hover a point for its id.", "datamap"))
        maps.append(area_map)
    if "eva" in table.columns and "el2n" in table.columns:
        fig, _ = data_map_figure(table["eva"].to_numpy(float), table["el2n"].to_numpy(float), reg,
                                 xlabel="EL2N (early window)", ylabel="EVA", figsize=(5.2, 4.6))
        figs.append((_png(fig), "EVA against EL2N, coloured by the same regions."))
    rep.figures(figs, maps)

    rep.heading("Per class")
    rep.table(class_table(table), "Samples per class, their share, the share of each class in each region, and mean "
                                  "scores.", digits={"share %": 1, "easy %": 1, "ambiguous %": 1, "hard %": 1})

    rep.heading("Example images per region")
    shown = found = 0
    score = table["confidence" if "confidence" in table.columns else "el2n"].to_numpy(float)
    sign = 1.0 if "confidence" in table.columns else -1.0
    for region in REGIONS:
        rows = np.flatnonzero((reg == region) & src.has_image)
        if region == "easy":
            rows = rows[np.argsort(-sign * score[rows], kind="stable")]
        elif region == "hard":
            rows = rows[np.argsort(sign * score[rows], kind="stable")]
        else:
            mid = np.median(score[reg == region])
            rows = rows[np.argsort(np.abs(score[rows] - mid), kind="stable")]
        rows = rows[:n_examples]
        want = min(n_examples, int((reg == region).sum()))
        shown += want
        items = [(array_thumbnail_png(src.images[r]), f"{ids[r]} · class {table['class'].iloc[r]}") for r in rows]
        found += len(items)
        rep.gallery(f"{region} ({int((reg == region).sum())} samples)", items or [(None, "no image")], css=region)
    if src.images is None:
        rep.para(f"No images: looked in {'; '.join(src.looked) or 'nowhere'}; pass --images NPZ (a MedMNIST file whose "
                 "train split the ids index).", note=True)
    else:
        rep.para(f"{int(src.has_image.sum())} of {len(table)} samples have an image in {src.images_path}; examples "
                 "are the most extreme (easy, hard) or most central (ambiguous) of those.", note=True)

    facts = {"cases": len(table), "thumbnails": found, "thumbnails_wanted": shown, "looked": src.looked}
    agreement_section(rep, table, meddel, topk, facts)
    facts["scores"] = score_columns(table)

    rep.heading("All samples")
    cols = [c for c in ("id", "class", "region", "confidence", "variability", "eva", "el2n", "forgetting", "aum",
                        "entropy") if c in table.columns]
    ordered = table.sort_values("confidence" if "confidence" in table.columns else "el2n")
    rep.case_table(ordered[cols], f"{len(table)} samples, hardest first",
                   f"the CSV that 'nnunet-diet scores {src.path}' writes")
    return rep, facts
