"""Case thumbnails for the report: a 2D image or a mid-slice of a 3D volume, with the label outline.

Images are found in an nnU-Net raw dataset (``imagesTr/<case>_0000<ending>``, ``labelsTr/<case><ending>``),
in a plain ``images/`` + ``masks/`` (or ``labels/``) folder pair, or in nnU-Net's preprocessed data
(``<nnUNet_preprocessed>/<Dataset>/<data_identifier>/``). Readers: nibabel (NIfTI), Pillow (PNG, JPEG,
BMP, TIFF; RGB kept), SimpleITK for anything else when it is installed.

3D: the slice goes through the label's centre of mass, perpendicular to the axis whose slice there holds
the most label voxels (ties: the last axis, axial in NIfTI); without any label, the middle of the last axis.
"""

from __future__ import annotations

import base64
import glob
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["CaseImage", "ImageFinder", "read_array", "mid_slice", "thumbnail_png", "png_data_uri",
           "array_thumbnail_png"]

_PIL_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_IMAGE_DIRS = ("imagesTr", "images", "imagesTs")
_LABEL_DIRS = ("labelsTr", "labels", "masks", "labelsTs")
OUTLINE_COLOURS = ("#ffd400", "#00e5ff", "#ff3df2", "#7dff3d", "#ff8a00", "#ffffff")


@dataclass
class CaseImage:
    """One case's image (``H x W``, ``H x W x 3`` or 3D) and label, with voxel spacing; ``source`` names the files."""

    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, ...]
    source: str
    nifti: bool = False
    folder: str = ""  # where the image was found

    @property
    def rgb(self) -> bool:
        return not self.nifti and self.image.ndim == 3 and self.image.shape[-1] in (3, 4)


def read_array(path: Path) -> tuple[np.ndarray, tuple[float, ...], bool]:
    """``(array, spacing, is_nifti)``. NIfTI arrays stay in nibabel's (x, y, z) order."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        img = nib.load(str(path))
        arr = np.asanyarray(img.dataobj).astype(np.float32)
        return arr, tuple(float(z) for z in img.header.get_zooms()[: arr.ndim]), True
    if name.endswith(_PIL_ENDINGS):
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if im.mode in ("P", "RGBA", "CMYK") else im)
        return arr, (1.0, 1.0), False
    import SimpleITK as sitk  # optional: .nrrd, .mha, .mhd, ...

    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img).astype(np.float32), tuple(reversed(img.GetSpacing())), False


def _as_label(arr: np.ndarray) -> np.ndarray:
    """Integer label map; RGB masks become grey and lossy 8-bit masks (JPEG) are binarised at 127."""
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8:
        arr = arr[..., :3].mean(-1)
    values = np.unique(arr)
    if len(values) > 16 or (arr.max() > 127 and len(values) > 2):
        return (arr > 127).astype(np.int16)
    return np.rint(arr).astype(np.int16)


@dataclass
class ImageFinder:
    """Looks for a case's image and label in raw dataset folders, then in preprocessed folders."""

    raw: list[Path] = field(default_factory=list)
    preprocessed: list[Path] = field(default_factory=list)
    looked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.looked = [str(p) for p in self.raw + self.preprocessed]
        self._endings: dict[Path, str | None] = {}
        self._channels: dict[Path, int] = {}
        for root in self.raw:
            meta = root / "dataset.json"
            ending, channels = None, 1
            if meta.is_file():
                try:
                    info = json.loads(meta.read_text())
                    ending = info.get("file_ending")
                    channels = len(info.get("channel_names", info.get("modality", {"0": ""})))
                except (ValueError, AttributeError):
                    pass
            self._endings[root], self._channels[root] = ending, channels

    def _first(self, folder: Path, stems: list[str], ending: str | None) -> Path | None:
        for stem in stems:
            if ending:
                p = folder / f"{stem}{ending}"
                if p.is_file():
                    return p
            else:
                hits = sorted(glob.glob(str(folder / glob.escape(stem)) + ".*"))
                if hits:
                    return Path(hits[0])
        return None

    def _from_raw(self, case: str, root: Path) -> CaseImage | None:
        ending = self._endings.get(root)
        for sub in _IMAGE_DIRS:
            folder = root / sub
            if not folder.is_dir():
                continue
            first = self._first(folder, [f"{case}_0000", case], ending)
            if first is None:
                continue
            image, spacing, nifti = read_array(first)
            files = [first]
            # natural 2D images stored one channel per file (nnU-Net's R, G, B as _0000, _0001, _0002)
            if self._channels.get(root) == 3 and image.ndim == 2 and first.stem.endswith("_0000"):
                others = [first.with_name(first.name.replace("_0000", f"_000{c}", 1)) for c in (1, 2)]
                if all(o.is_file() for o in others):
                    image = np.stack([image] + [read_array(o)[0] for o in others], -1)
                    files += others
            label = None
            for lsub in _LABEL_DIRS:
                if (root / lsub).is_dir():
                    lp = self._first(root / lsub, [case], ending)
                    if lp is not None:
                        label = _as_label(read_array(lp)[0])
                        files.append(lp)
                        break
            if label is not None and image.ndim == 3 and image.shape[-1] in (3, 4) and label.ndim == 2:
                image = image[..., :3]
            return CaseImage(image, label, spacing, ", ".join(str(f) for f in files), nifti, str(first.parent))
        return None

    def _from_preprocessed(self, case: str, folder: Path) -> CaseImage | None:
        try:
            from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

            ds = infer_dataset_class(str(folder))(str(folder), [case])
            data, seg, _, props = ds.load_case(case)
        except Exception:  # no such case / unreadable: the report says where it looked
            return None
        image = np.asarray(data[0], dtype=np.float32)
        label = np.asarray(seg[0]).astype(np.int16)
        label[label < 0] = 0
        spacing = tuple(float(s) for s in props.get("spacing", (1.0,) * image.ndim))
        if image.ndim == 3 and image.shape[0] == 1:  # 2D configuration: (1, x, y)
            image, label, spacing = image[0], label[0], spacing[-2:]
        return CaseImage(image, label, spacing, f"{folder} (preprocessed case {case})",
                         folder=f"{folder} (preprocessed)")

    def find(self, case: str) -> CaseImage | None:
        for root in self.raw:
            if root.is_dir():
                found = self._from_raw(case, root)
                if found is not None:
                    return found
        for folder in self.preprocessed:
            if folder.is_dir():
                found = self._from_preprocessed(case, folder)
                if found is not None:
                    return found
        return None


def mid_slice(image: np.ndarray, label: np.ndarray | None, spacing: tuple[float, ...], rgb: bool = False
              ) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float], str]:
    """2D view of a 3D volume through the label's centre of mass (see the module docstring); 2D and
    ``rgb`` (``H x W x 3``) images are returned as they are."""
    if image.ndim == 2 or rgb:
        if label is not None and label.shape[:2] != image.shape[:2]:
            label = None
        return image, label, (1.0, 1.0), "2D"
    if image.ndim == 4:  # several channels last (x, y, z, c): the first one
        image = image[..., 0]
    if label is not None and label.shape != image.shape:
        label = None
    sp = tuple(spacing) if len(spacing) == 3 else (1.0, 1.0, 1.0)
    axis, index = 2, image.shape[2] // 2
    if label is not None and (label > 0).any():
        fg = label > 0
        com = [int(round(c)) for c in np.argwhere(fg).mean(0)]
        areas = [fg.take(com[a], axis=a).sum() for a in range(3)]
        best = max(areas)
        axis = max(a for a in range(3) if areas[a] == best)
        index = com[axis]
    plane = [a for a in range(3) if a != axis]
    img2 = np.take(image, index, axis=axis)
    lab2 = None if label is None else np.take(label, index, axis=axis)
    return img2, lab2, (sp[plane[0]], sp[plane[1]]), f"axis {axis}, slice {index}"


def _window(image: np.ndarray, fixed: bool = False) -> np.ndarray:
    """Grey values to [0, 1]: uint8 / RGB images as they are (``fixed``), others between percentiles 1 and 99."""
    img = image.astype(np.float32)
    if img.ndim == 3 or fixed:
        return np.clip(img / (255.0 if img.max() > 1.5 else 1.0), 0, 1)
    finite = img[np.isfinite(img)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    return np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def _render(image2d: np.ndarray, label2d: np.ndarray | None, aspect: float, transpose: bool,
            size_px: int, fixed: bool = False) -> bytes:
    img = _window(image2d, fixed)
    lab = label2d
    if transpose:  # NIfTI (x, y) -> rows = y, drawn with origin lower
        img = np.swapaxes(img, 0, 1)
        lab = None if lab is None else lab.T
    h, w = img.shape[:2]
    scale = size_px / max(h * aspect, w)
    fig = plt.figure(figsize=(max(w * scale, 8) / 100, max(h * aspect * scale, 8) / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    origin = "lower" if transpose else "upper"
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, origin=origin, aspect=aspect, interpolation="bilinear")
    if lab is not None and (lab > 0).any():
        for i, value in enumerate(v for v in np.unique(lab) if v > 0):
            ax.contour((lab == value).astype(float), levels=[0.5], colors=OUTLINE_COLOURS[i % len(OUTLINE_COLOURS)],
                       linewidths=1.2, origin=origin)
    ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def thumbnail_png(case: CaseImage, size_px: int = 160) -> tuple[bytes, str]:
    """PNG bytes of the case's view with the label outline, and a note on the slice shown."""
    img2, lab2, (s0, s1), where = mid_slice(case.image, case.label, case.spacing, case.rgb)
    transpose = case.nifti and where != "2D"
    aspect = s1 / s0 if transpose else s0 / s1  # row spacing / column spacing as drawn
    return _render(img2, lab2, aspect, transpose, size_px, fixed=case.rgb), where


def array_thumbnail_png(image: np.ndarray, size_px: int = 84) -> bytes:
    """A small image (MedMNIST: ``C x S x S`` or ``S x S`` uint8) as PNG bytes, no outline."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] in (1, 3):
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    return _render(img, None, 1.0, False, size_px, fixed=True)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
