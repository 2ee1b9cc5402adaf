"""MedMNIST ``.npz`` files read directly with numpy: no network, no torchvision, any subset length.

A MedMNIST file ``{flag}.npz`` (28 x 28) or ``{flag}_{64,128,224}.npz`` holds ``train_images``,
``train_labels``, ``val_*`` and ``test_*``: images uint8 ``N x S x S`` (grey) or ``N x S x S x 3``
(RGB), labels ``N x 1`` integer classes (Yang et al. 2023, MedMNIST v2). The ``medmnist`` package's
classes assert the official split lengths and need torchvision; coreset subsets and the shipped
example subset therefore go through :func:`load_medmnist`. Multi-label files (ChestMNIST: labels
``N x 14``) are refused: the EVA harness is for single-label classification.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import DietError

__all__ = ["SPLITS", "SIZES", "DEFAULT_ROOT", "Split", "MedMNISTData", "data_path", "load_medmnist", "read_npz"]

SPLITS = ("train", "val", "test")
SIZES = (28, 64, 128, 224)
DEFAULT_ROOT = Path("~/.medmnist")


@dataclass(frozen=True)
class Split:
    """One split: images uint8 ``N x C x S x S`` (channels first) and labels int64 ``N``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class MedMNISTData:
    """The three splits of one MedMNIST file, with the class count taken over all of them."""

    path: Path
    train: Split
    val: Split
    test: Split
    n_classes: int

    @property
    def n_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])


def data_path(root: str | os.PathLike, flag: str, size: int = 28) -> Path:
    """``root/{flag}.npz`` for 28 x 28, else ``root/{flag}_{size}.npz`` (MedMNIST's file names)."""
    if size not in SIZES:
        raise DietError(f"MedMNIST size must be one of {', '.join(map(str, SIZES))}, got {size}")
    name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
    return Path(root).expanduser() / name


def _split(z: np.lib.npyio.NpzFile, path: Path, split: str, size: int | None) -> Split:
    images, labels = z[f"{split}_images"], z[f"{split}_labels"]
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[-1] in (1, 3):
        images = np.moveaxis(images, -1, 1)
    else:
        raise DietError(f"{path}: {split}_images has shape {images.shape}; expected N x S x S (grey) "
                        "or N x S x S x 3 (RGB)")
    side = images.shape[-1] if size is None else size
    if images.shape[-2:] != (side, side):
        raise DietError(f"{path}: {split}_images are {images.shape[-2]} x {images.shape[-1]}; "
                        f"expected square {side} x {side} images")
    if images.dtype != np.uint8:
        raise DietError(f"{path}: {split}_images have dtype {images.dtype}; MedMNIST images are uint8")
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise DietError(f"{path}: {split}_labels has shape {labels.shape}: multi-label files are not "
                        "supported (one class per image expected, N or N x 1)")
    if labels.ndim not in (1, 2) or labels.shape[0] != images.shape[0]:
        raise DietError(f"{path}: {split}_labels has shape {labels.shape} for {images.shape[0]} images; "
                        f"expected ({images.shape[0]}, 1)")
    if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise DietError(f"{path}: {split}_labels must be non-negative integers, got dtype {labels.dtype}")
    if len(labels) == 0:
        raise DietError(f"{path}: {split} split is empty")
    return Split(np.ascontiguousarray(images), labels.reshape(-1).astype(np.int64))


def load_medmnist(root: str | os.PathLike = DEFAULT_ROOT, flag: str = "pneumoniamnist", size: int = 28) -> MedMNISTData:
    """Read ``data_path(root, flag, size)``; every problem raises :class:`DietError` naming the file."""
    path = data_path(root, flag, size)
    if not path.is_file():
        raise DietError(f"{path}: MedMNIST file not found (expected {path.name} under {path.parent}; "
                        "download it once from MedMNIST or pass --root)")
    return read_npz(path, size)


def read_npz(path: str | os.PathLike, size: int | None = None) -> MedMNISTData:
    """Read a MedMNIST-layout ``.npz`` of any split lengths (``size``: the expected image side).

    Channels come from the file (1 grey, 3 RGB). The class count is ``max label + 1`` over the three
    splits, so a subset keeps the labels of the full dataset.
    """
    path = Path(path)
    if not path.is_file():
        raise DietError(f"{path}: MedMNIST file not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            need = {f"{s}_{k}" for s in SPLITS for k in ("images", "labels")}
            if not need <= set(z.files):
                raise DietError(f"{path}: not a MedMNIST file: missing keys {', '.join(sorted(need - set(z.files)))} "
                                f"(found: {', '.join(sorted(z.files))})")
            splits = {s: _split(z, path, s, size) for s in SPLITS}
    except DietError:
        raise
    except Exception as exc:  # zip / format errors from a damaged or foreign file
        raise DietError(f"{path}: cannot read MedMNIST file ({type(exc).__name__}: {exc})") from None
    shapes = {s: v.images.shape[1:] for s, v in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DietError(f"{path}: splits disagree on image shape (C x S x S) {shapes}")
    n_classes = int(max(v.labels.max() for v in splits.values())) + 1
    if n_classes < 2:
        raise DietError(f"{path}: every label is 0; classification needs at least two classes")
    return MedMNISTData(path, splits["train"], splits["val"], splits["test"], n_classes)
