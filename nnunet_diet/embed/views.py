"""Zoom-search views for MedDEL (``embed --source views``): training-free, for zoomed / cropped copies of
small 2D images, where no window descriptor finds them (28 x 28 X-rays; docs/meddel.md).

Each image (channels averaged to grey) is resampled to ``base x base`` (area when shrinking, bilinear
when enlarging). View 0 is the whole image, area-resampled to ``grid x grid``; views 1 ... V - 1 are
crops of ``s`` of each side for ``scales`` values of s in [``smin``, ``smax``], each at ``offsets`` x
``offsets`` places spread evenly over the room the crop leaves, enlarged back to ``base`` (bilinear,
half-pixel centres, as PIL / torch ``align_corners=False``) and area-resampled to ``grid``. Every view is
z-scored. The vector of a sample is its V views concatenated (``V x grid^2``, meta ``views = V``);
:func:`~nnunet_diet.embed.table.run_meddel` reshapes it and MedDEL compares a pair by the best match of
a view of either with the other's whole image (:func:`~nnunet_diet.core.meddel.similarities`): a copy
zoomed by 1 / s from some place matches the crop of its original at that scale and place.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..core.errors import DietError


@dataclass(frozen=True)
class ViewsConfig:
    base: int = 28
    grid: int = 8
    smin: float = 0.6
    smax: float = 0.9
    scales: int = 10
    offsets: int = 7

    @property
    def views(self) -> int:
        return 1 + self.scales * self.offsets**2


def bilinear_matrix(n_out: int, n_in: int, start: float, length: float) -> np.ndarray:
    """``n_out x n_in`` bilinear sampling of ``[start, start + length)`` (pixel units) onto ``n_out``
    pixels with half-pixel centres, coordinates clamped to the image."""
    src = np.clip(start + (np.arange(n_out) + 0.5) * length / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(int)
    f = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - f)
    np.add.at(m, (np.arange(n_out), np.minimum(i0 + 1, n_in - 1)), f)
    return m


def area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``n_out x n_in`` area (box) resampling: each output pixel the overlap-weighted mean of its inputs."""
    edges = np.linspace(0, n_in, n_out + 1)
    j = np.arange(n_in)
    m = np.clip(np.minimum(edges[1:, None], j + 1) - np.maximum(edges[:-1, None], j), 0, None)
    return m / m.sum(axis=1, keepdims=True)


def view_operators(config: ViewsConfig) -> tuple[np.ndarray, np.ndarray]:
    """Row and column operators ``V x grid x base``: view v of a ``base x base`` image is ``R[v] @ I @ C[v].T``."""
    n, area = config.base, area_matrix(config.grid, config.base)
    rows, cols = [area], [area]
    places = np.linspace(0, 1, config.offsets)
    for s in np.linspace(config.smin, config.smax, config.scales):
        side = s * n
        for oy, ox in itertools.product(places, places):
            rows.append(area @ bilinear_matrix(n, n, oy * (n - side), side))
            cols.append(area @ bilinear_matrix(n, n, ox * (n - side), side))
    return np.stack(rows).astype(np.float32), np.stack(cols).astype(np.float32)


class ViewsEncoder:
    """``images -> N x (V * grid^2)``: the z-scored views of each image (module docstring)."""

    def __init__(self, config: ViewsConfig = ViewsConfig()) -> None:
        if config.grid < 2 or config.base < config.grid:
            raise DietError(f"views: need 2 <= grid <= base, got grid {config.grid}, base {config.base}")
        if not 0 < config.smin <= config.smax <= 1 or config.scales < 1 or config.offsets < 1:
            raise DietError(f"views: scales must lie in (0, 1] with smin <= smax and counts >= 1, got {config}")
        self.config = config
        self.rows, self.cols = view_operators(config)
        self.signature = {"source": "views", **asdict(config), "views": config.views}

    def _grey(self, index: int, image: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from .selfsup import BadImage

        if image.ndim != 3:
            raise BadImage(index, f"views takes 2D images; got {image.ndim - 1} spatial axes")
        t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).mean(0)[None, None]
        size = (self.config.base, self.config.base)
        shrink = t.shape[-2] >= size[0] and t.shape[-1] >= size[1]
        t = F.interpolate(t, size=size, mode="area") if shrink else \
            F.interpolate(t, size=size, mode="bilinear", align_corners=False)
        return t[0, 0].numpy()

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        grey = np.stack([self._grey(i, im) for i, im in enumerate(images)])
        v = np.einsum("vgh,nhw,vkw->nvgk", self.rows, grey, self.cols, optimize=True)
        v = v.reshape(len(grey), len(self.rows), -1)
        v = v - v.mean(axis=2, keepdims=True)
        std = v.std(axis=2, keepdims=True)
        return (v / np.where(std > 0, std, 1.0)).reshape(len(grey), -1).astype(np.float32)
