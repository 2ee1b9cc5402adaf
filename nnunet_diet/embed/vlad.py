"""Training-free copy-detection embedding for MedDEL: VLAD of multi-scale dense patches (``--source vlad``).

Zoomed crops, small rotations and mirrored copies defeat a global thumbnail (and the small
self-supervised encoders, docs/benchmarks.md). Classic copy detection matches *local* content instead:

1. every image (channels averaged to grey, z-scored) is resampled to ``levels`` square sides growing by
   ``ratio`` (a scale pyramid: a copy zoomed by z has its content at the level z times smaller), and
   each level, and its left-right mirror, is cut into dense ``patch x patch`` windows (stride
   ``patch / 3``); each window is centred and L2-normalised (invariant to brightness / contrast) and
   projected on the ``pca`` leading principal axes of the windows;
2. windows are weighted by a Gaussian of their distance to the image centre (``sigma`` of the side:
   a crop keeps the centre region of its original more often than the border), each level's weights
   summing to one, and near-flat windows (standard deviation below 5 % of the image's) get weight 0;
3. VLAD (Jegou et al., CVPR 2010, Eq. 1): the weighted residuals to the nearest of ``words`` k-means
   centres, summed per centre, signed square root and L2 per centre (intra-normalisation, Arandjelovic
   & Zisserman 2013), then L2;
4. projection to ``dim`` dimensions: the mean VLAD direction plus the ``dim - 1`` leading principal
   axes of the VLADs (not centred, so cosine similarities stay positive for MedDEL's epsilon filter;
   fewer when fewer than ``dim`` images are fitted).

The principal axes and the k-means words are fitted on the images themselves (a seeded sample of at
most ``max_images``) and saved as ``vlad.npz`` beside the embeddings; nothing is downloaded or trained
by gradient descent. Mirror pooling makes the embedding exactly invariant to left-right flips; the
pyramid and the orderless pooling make it tolerant to zoom, shift and crop; rotations of a few degrees
change windows little. 2D images only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.atomic import atomic_open
from ..core.errors import DietError
from .selfsup import BadImage
from .vladconfig import VladConfig

__all__ = ["VLAD_FILE", "VladConfig", "fit_vlad", "VladEncoder"]

VLAD_FILE = "vlad.npz"
_FORMAT = "nnunet-diet-vlad-1"
_FLAT = 0.05  # windows with std below this share of the image's std carry no weight
_FIT_WINDOWS = 100  # windows sampled per fitting image for the window PCA and k-means
_KMEANS_ROWS, _KMEANS_ITERATIONS = 50_000, 20


def geometry(image: np.ndarray, config: VladConfig) -> dict:
    """Pyramid and window sizes from the first image: base side min(40, smallest side); windows of 12
    (stride 4, 32 principal axes) from a 40-pixel base, else 8 (stride 2, 24 axes: 28 x 28 MedMNIST)."""
    if image.ndim != 3:
        raise DietError(f"vlad takes 2D images; got a {image.ndim - 1}D image of shape {list(image.shape[1:])}")
    base = min(40, min(image.shape[1:]))
    patch = 12 if base >= 40 else 8
    if base < patch:
        raise DietError(f"image of shape {list(image.shape[1:])} is smaller than the vlad window {patch}")
    return {"channels": int(image.shape[0]), "sides": [round(base * config.ratio ** i) for i in range(config.levels)],
            "patch": patch, "stride": patch // 3 if patch == 12 else 2, "pca": 32 if patch == 12 else 24,
            "sigma": config.sigma}


def _check(image: np.ndarray, geo: dict) -> None:
    if image.ndim != 3 or image.shape[0] != geo["channels"]:
        raise DietError(f"{image.shape[0]}-channel {image.ndim - 1}D image of shape {list(image.shape[1:])}, but "
                        f"the vlad encoder takes {geo['channels']}-channel 2D images")
    if min(image.shape[1:]) < geo["patch"]:
        raise DietError(f"image of shape {list(image.shape[1:])} is smaller than the vlad window {geo['patch']}")


def windows(image: np.ndarray, geo: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps 1-2: ``(L x patch^2`` centred, L2-normalised windows, ``L`` weights) of one ``C x H x W`` image."""
    _check(image, geo)
    grey = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).mean(dim=0)[None, None]
    std = grey.std()
    grey = (grey - grey.mean()) / (std if std > 0 else 1.0)
    patch, stride = geo["patch"], geo["stride"]
    out, weights = [], []
    for side in geo["sides"]:
        shrink = side <= min(grey.shape[2:])
        level = F.interpolate(grey, size=(side, side), mode="area" if shrink else "bilinear",
                              **({} if shrink else {"align_corners": False}))
        n = (side - patch) // stride + 1
        centre = (torch.arange(n) * stride + patch / 2) / side - 0.5
        gauss = torch.exp(-(centre[:, None] ** 2 + centre[None, :] ** 2).flatten() / (2 * geo["sigma"] ** 2))
        gauss = gauss / gauss.sum()
        for view in (level, level.flip(-1)):
            w = F.unfold(view, patch, stride=stride)[0].T
            spread = w.std(dim=1)
            w = w - w.mean(dim=1, keepdim=True)
            out.append(w / (w.norm(dim=1, keepdim=True) + 1e-6))
            weights.append(gauss * (spread > _FLAT))
    return torch.cat(out), torch.cat(weights)


def _kmeans(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means (random distinct rows as the start), ``_KMEANS_ITERATIONS`` passes."""
    centres = x[torch.randperm(len(x), generator=gen)[:k]].clone()
    for _ in range(_KMEANS_ITERATIONS):
        nearest = torch.cdist(x, centres).argmin(dim=1)
        counts = torch.bincount(nearest, minlength=k)
        sums = torch.zeros_like(centres).index_add_(0, nearest, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
    return centres


def _vlad(win: torch.Tensor, weight: torch.Tensor, model: dict) -> torch.Tensor:
    """Step 3: intra-normalised, signed-square-rooted, L2-normalised VLAD (words x pca, flattened)."""
    x = (win - model["window_mean"]) @ model["window_axes"]
    words = model["words"]
    nearest = torch.cdist(x, words).argmin(dim=1)
    v = torch.zeros_like(words).index_add_(0, nearest, (x - words[nearest]) * weight[:, None])
    v = v.sign() * v.abs().sqrt()
    v = (v / (v.norm(dim=1, keepdim=True) + 1e-12)).flatten()
    return v / (v.norm() + 1e-12)


def _project(v: torch.Tensor, model: dict) -> torch.Tensor:
    """Step 4: onto the mean VLAD direction and the leading principal axes."""
    return v @ model["projection"]


def _tensors(arrays: dict) -> dict:
    return {k: torch.from_numpy(np.asarray(arrays[k], dtype=np.float32))
            for k in ("window_mean", "window_axes", "words", "projection")}


def _settings(config: VladConfig, geo: dict, n_images: int) -> dict:
    return {"config": asdict(config), "geometry": geo, "images": n_images}


def _read(path: Path) -> tuple[dict, dict]:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if str(arrays.get("format")) != _FORMAT:
            raise ValueError("format")
        return arrays, json.loads(str(arrays["settings"]))
    except Exception:
        raise DietError(f"{path}: not a vlad model written by 'nnunet-diet embed --source vlad'") from None


def fit_vlad(source, out: str | Path, config: VladConfig = VladConfig(), *, resume: bool = True,
             progress: bool = True) -> Path:
    """Fit the window axes, the k-means words and the VLAD projection on a seeded sample of ``source``
    and save them as ``out/vlad.npz`` (atomically). A finished file with the same settings is reused;
    one with other settings is refused unless ``resume`` is False."""
    out = Path(out)
    path = out / VLAD_FILE
    n = len(source.ids)
    if n < 2:
        raise DietError(f"vlad needs at least 2 images, got {n}")
    try:
        geo = geometry(source.load(0), config)
    except DietError as exc:
        raise DietError(f"{source.where(0)}: {exc}") from None
    settings = _settings(config, geo, n)
    if path.is_file() and resume:
        old = _read(path)[1]
        if old == settings:
            return path
        raise DietError(f"{path}: fitted with other settings ({json.dumps(old, sort_keys=True)}); use another "
                        "output folder or --no-resume to refit")
    gen = torch.Generator().manual_seed(config.seed)
    rows = np.sort(np.random.default_rng(config.seed).choice(n, size=min(n, config.max_images), replace=False))
    sample = []
    for row in rows:
        try:
            win, weight = windows(source.load(int(row)), geo)
        except DietError as exc:
            raise DietError(f"{source.where(int(row))}: {exc}") from None
        live = torch.nonzero(weight > 0).flatten()
        sample.append(win[live[torch.randperm(len(live), generator=gen)[:_FIT_WINDOWS]]])
    sample = torch.cat(sample)
    mean = sample.mean(dim=0)
    axes = torch.linalg.svd(sample - mean, full_matrices=False)[2][: geo["pca"]].T
    x = (sample - mean) @ axes
    if len(x) < config.words:
        raise DietError(f"only {len(x)} non-flat windows in {len(rows)} images to fit {config.words} words; "
                        "use fewer --words or more images")
    words = _kmeans(x[torch.randperm(len(x), generator=gen)[:_KMEANS_ROWS]], config.words, gen)
    model = {"window_mean": mean, "window_axes": axes, "words": words}
    vlads = torch.stack([_vlad(*windows(source.load(int(r)), geo), model) for r in rows])
    direction = vlads.mean(dim=0)
    direction = direction / direction.norm()
    principal = torch.linalg.svd(vlads - vlads.mean(dim=0), full_matrices=False)[2][: config.dim - 1]
    projection = torch.cat([direction[None], principal]).T
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        np.savez(fh, format=np.array(_FORMAT), settings=np.array(json.dumps(settings, sort_keys=True)),
                 **{k: v.numpy() for k, v in {**model, "projection": projection}.items()})
    if progress:
        print(f"vlad: fitted {config.words} words and a {projection.shape[1]}-d projection on {len(rows)} images",
              file=sys.stderr, flush=True)
    return path


class VladEncoder:
    """Embeds with a ``vlad.npz`` of :func:`fit_vlad`: ``images -> N x dim`` float32."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DietError(f"{self.path}: no such vlad model")
        arrays, self.settings = _read(self.path)
        self.geo = self.settings["geometry"]
        self.model = _tensors(arrays)
        self.signature = {"source": "vlad", "model": str(self.path.resolve()),
                          "settings": json.dumps(self.settings, sort_keys=True)}

    def check(self, image: np.ndarray, where: str) -> None:
        """Raise naming ``where`` and the model file when ``image`` does not fit the encoder."""
        try:
            _check(image, self.geo)
        except DietError as exc:
            raise DietError(f"{where}: {exc} (vlad model {self.path})") from None

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for i, image in enumerate(images):
            try:
                win, weight = windows(image, self.geo)
            except DietError as exc:
                raise BadImage(i, f"{exc} (vlad model {self.path})") from None
            out.append(_project(_vlad(win, weight, self.model), self.model))
        return torch.stack(out).numpy()
