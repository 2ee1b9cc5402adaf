"""nnU-Net raw datasets for the benchmarks, built from the real data in ``../shared/data``.

- ``hippocampus``: the first N MSD Task04 Hippocampus cases in name order (3D MR, labels
  background / anterior / posterior); ids ``hippocampus_XXX``.
- ``polyp``: two centres of colonoscopy polyp segmentation as a 2D natural-image dataset (RGB PNG,
  nnU-Net's ``NaturalImage2DIO``): the first N Kvasir-SEG (Vestre Viken) and N CVC-ClinicDB (Hospital
  Clinic) pairs spread evenly over each centre's name order (CVC-ClinicDB's frames come from 29 videos
  in sequence: the spread covers them all); ids ``kvasir_<name>`` / ``cvc_<n>`` so that the centre is
  the id's prefix (``NNUNET_DIET_CENTRES='^(kvasir|cvc)_'``). ``--max-side`` shrinks the images
  (bilinear) for CPU work. Masks are JPEG: binarised with grey > 127 (after resizing).

Run:  .venv/bin/python benchmarks/make_nnunet_datasets.py hippocampus -n 100 -o /tmp/raw/Hippocampus100
      .venv/bin/python benchmarks/make_nnunet_datasets.py polyp -n 150 --max-side 128 -o /tmp/raw/Polyp300
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def hippocampus(n: int, out: Path, root: Path = DATA) -> int:
    import nibabel as nib

    images = sorted((root / "hippocampus" / "images").glob("*.nii.gz"))[:n]
    for image in images:
        case = image.name.removesuffix(".nii.gz")
        shutil.copy(image, out / "imagesTr" / f"{case}_0000.nii.gz")
        label = nib.load(root / "hippocampus" / "labels" / image.name)
        # 2 of the labels are stored as float32: nnU-Net wants integers
        data = np.asarray(label.dataobj).round().astype(np.uint8)
        nib.save(nib.Nifti1Image(data, label.affine, label.header), out / "labelsTr" / image.name)
    meta = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
            "file_ending": ".nii.gz"}
    return _dataset_json(out, meta, len(images), "MSD Task04 Hippocampus (CC BY-SA 4.0; Antonelli et al. 2022)")


def polyp(n: int, out: Path, max_side: int | None = None) -> int:
    from PIL import Image

    def load(path: Path, mode: str) -> Image.Image:
        picture = Image.open(path).convert(mode)
        scale = max_side / max(picture.size) if max_side else 1.0
        if scale < 1:
            size = (round(picture.width * scale), round(picture.height * scale))
            picture = picture.resize(size, Image.Resampling.BILINEAR)
        return picture

    count = 0
    for centre, folder in (("kvasir", "Kvasir-SEG"), ("cvc", "CVC-ClinicDB")):
        names = sorted((DATA / "polyp" / folder / "images").glob("*.jpg"), key=lambda p: (len(p.stem), p.stem))
        if n > len(names):
            raise SystemExit(f"{folder} has {len(names)} images, asked for {n}")
        for index in np.linspace(0, len(names) - 1, n).round().astype(int):
            image = names[index]
            case = f"{centre}_{image.stem}"
            load(image, "RGB").save(out / "imagesTr" / f"{case}_0000.png")
            mask = np.asarray(load(DATA / "polyp" / folder / "masks" / image.name, "L")) > 127
            Image.fromarray(mask.astype(np.uint8)).save(out / "labelsTr" / f"{case}.png")
            count += 1
    meta = {"channel_names": {"0": "R", "1": "G", "2": "B"}, "labels": {"background": 0, "polyp": 1},
            "file_ending": ".png"}
    return _dataset_json(out, meta, count, "Kvasir-SEG (Jha et al., MMM 2020) and CVC-ClinicDB (Bernal et al., "
                                           "CMIG 2015), research use with citation")


def _dataset_json(out: Path, meta: dict, n: int, source: str) -> int:
    meta.update(numTraining=n, name=out.name, reference=source)
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("hippocampus", "polyp"))
    parser.add_argument("-n", type=int, required=True, help="cases (polyp: per centre)")
    parser.add_argument("--max-side", type=int, default=None, help="polyp: shrink images to this longest side")
    parser.add_argument("-o", "--output", type=Path, required=True, help="raw dataset folder to create")
    args = parser.parse_args()
    if args.output.exists():
        raise SystemExit(f"{args.output} exists")
    (args.output / "imagesTr").mkdir(parents=True)
    (args.output / "labelsTr").mkdir()
    n = hippocampus(args.n, args.output) if args.dataset == "hippocampus" else \
        polyp(args.n, args.output, args.max_side)
    print(f"{args.output}: {n} cases")


if __name__ == "__main__":
    main()
