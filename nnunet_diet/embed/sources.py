"""Where the images come from: a MedMNIST ``.npz`` split, an nnU-Net raw dataset folder, an nnU-Net
preprocessed configuration folder, or a folder of PNG / JPEG / TIFF files. A source has ``ids``,
``load(row) -> C x spatial float32`` and ``where(row)`` (the file, for error messages)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import DietError

__all__ = ["NpzImages", "RawImages", "PreprocessedImages", "ImageFolder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class NpzImages:
    """One split of a MedMNIST-layout ``.npz`` (``{split}_images``: N x S x S or N x S x S x 3, uint8).

    Ids are the row indices of the split (what the EVA harness and its coreset files use); pixel values
    stay 0-255 (each encoder normalises).
    """

    def __init__(self, path: str | Path, split: str = "train") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DietError(f"{self.path}: no such .npz file")
        key = f"{split}_images"
        try:
            with np.load(self.path, allow_pickle=False) as z:
                if key not in z.files:
                    raise DietError(f"{self.path}: no array {key!r} (found: {', '.join(z.files)})")
                images = z[key]
        except DietError:
            raise
        except Exception as exc:  # zip / format errors
            raise DietError(f"{self.path}: not a readable .npz ({type(exc).__name__}: {exc})") from None
        if images.ndim == 4 and images.shape[-1] in (1, 3):
            images = np.moveaxis(images, -1, 1)
        elif images.ndim == 3:
            images = images[:, None]
        else:
            raise DietError(f"{self.path}: {key} has shape {images.shape}; expected N x S x S or N x S x S x 3")
        self.images = images
        self.ids = [str(i) for i in range(len(images))]

    def load(self, row: int) -> np.ndarray:
        return self.images[row].astype(np.float32)

    def where(self, row: int) -> str:
        return f"{self.path} (row {row})"


class RawImages:
    """An nnU-Net raw dataset folder (``dataset.json``, ``imagesTr/<case>_<channel><file_ending>``),
    read with nnU-Net's own reader for the file type; ids are the case identifiers."""

    def __init__(self, folder: str | Path) -> None:
        from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json

        from ..nnunet.raw import raw_cases

        self.folder = Path(folder)
        meta, cases = raw_cases(self.folder, need_labels=False)
        self.ids = sorted(cases)
        self._files = [cases[i]["images"] for i in self.ids]
        self._reader = determine_reader_writer_from_dataset_json(meta, self._files[0][0], verbose=False)()

    def read(self, row: int) -> tuple[np.ndarray, dict]:
        """nnU-Net's reader output: ``C x spatial`` float32 (2D: ``C x 1 x H x W``) and its properties (spacing)."""
        data, properties = self._reader.read_images(self._files[row])
        return np.asarray(data, dtype=np.float32), properties

    def load(self, row: int) -> np.ndarray:
        return self.read(row)[0]

    def where(self, row: int) -> str:
        return str(self._files[row][0])


class PreprocessedImages:
    """A configuration folder of nnU-Net preprocessed data (``<nnUNet_preprocessed>/<dataset>/
    <data_identifier>``), loaded with nnU-Net's dataset class; ids are the case identifiers."""

    def __init__(self, folder: str | Path) -> None:
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DietError(f"{self.folder}: no preprocessed data folder")
        try:
            cls = infer_dataset_class(str(self.folder))
        except (AssertionError, KeyError):  # nnU-Net asserts one kind of case file (.b2nd or .npz)
            raise DietError(f"{self.folder}: no preprocessed cases (nnU-Net's .b2nd or .npz files, of one kind)") \
                from None
        self.ids = sorted(cls.get_identifiers(str(self.folder)))
        if not self.ids:
            raise DietError(f"{self.folder}: no preprocessed cases")
        self._dataset = cls(str(self.folder), self.ids)

    def load(self, row: int) -> np.ndarray:
        data = self._dataset.load_case(self.ids[row])[0]
        return np.asarray(data[:], dtype=np.float32)

    def where(self, row: int) -> str:
        return str(self.folder / self.ids[row])


class ImageFolder:
    """Every PNG / JPEG / TIFF / BMP file under ``folder`` (recursively, sorted), read with Pillow; ids are
    the paths relative to the folder. Grey images give 1 channel, colour ones 3 (alpha and palettes are
    converted to RGB); every image must have the channel count of the first (mixed grey and colour
    files are an error naming the file). 16-bit and float images keep their values."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DietError(f"{self.folder}: no such image folder")
        self._files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._files:
            raise DietError(f"{self.folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.ids = [p.relative_to(self.folder).as_posix() for p in self._files]
        self.channels = self._read(0).shape[0]

    def _read(self, row: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        path = self._files[row]
        try:
            with Image.open(path) as im:
                if im.mode not in ("L", "I", "I;16", "F", "RGB"):
                    im = im.convert("L" if im.mode in ("1", "LA") else "RGB")
                data = np.asarray(im, dtype=np.float32)
        except (OSError, UnidentifiedImageError) as exc:
            raise DietError(f"{path}: not a readable image ({exc})") from None
        return data[None] if data.ndim == 2 else np.moveaxis(data, -1, 0)

    def load(self, row: int) -> np.ndarray:
        data = self._read(row)
        if data.shape[0] != self.channels:
            raise DietError(f"{self._files[row]}: {data.shape[0]} channel(s), but {self._files[0].name} has "
                            f"{self.channels}; convert the folder to one channel count")
        return data

    def where(self, row: int) -> str:
        return str(self._files[row])
