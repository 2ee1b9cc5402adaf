"""An nnU-Net raw dataset folder, checked before any work: ``dataset.json``, every image with its channels
and (for training) its label, and image and label of each case on the same voxel grid."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import DietError

__all__ = ["read_dataset_json", "raw_cases", "check_grids", "check_training_dataset", "integrity_failure"]


def read_dataset_json(folder: Path) -> dict:
    """``folder/dataset.json`` (a raw dataset's or a results run's), with the keys nnU-Net needs."""
    path = folder / "dataset.json"
    if not folder.is_dir():
        raise DietError(f"{folder}: no such raw dataset folder")
    if not path.is_file():
        raise DietError(f"{path}: missing; is {folder} an nnU-Net raw dataset folder?")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DietError(f"{path}: not valid JSON ({exc})") from None
    missing = [k for k in ("file_ending", "channel_names", "labels") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise DietError(f"{path}: no {', '.join(missing)} (nnU-Net's dataset.json needs them)")
    return meta


def raw_cases(folder: str | Path, *, need_labels: bool = True) -> tuple[dict, dict[str, dict]]:
    """``(dataset.json, {case: {"images": [...], "label": ...}})`` as nnU-Net lists them
    (``get_filenames_of_train_images_and_targets``), after checking that each case has one image file per
    channel (or, like every other case, one file holding all channels: an RGB PNG), that no label lacks its image and, with ``need_labels``, that every image has a label and
    ``numTraining`` counts them."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    folder = Path(folder)
    meta = read_dataset_json(folder)
    ending, n_channels = meta["file_ending"], len(meta["channel_names"])
    if "dataset" not in meta and not (folder / "imagesTr").is_dir():
        raise DietError(f"{folder / 'imagesTr'}: missing (an nnU-Net raw dataset keeps its images there)")
    cases = get_filenames_of_train_images_and_targets(str(folder), meta)
    if not cases:
        raise DietError(f"{folder / 'imagesTr'}: no images ending in {ending}")
    # one file per channel, or one file holding all of them (nnU-Net reads an RGB PNG as 3 channels)
    files_per_case = {len(e["images"]) for e in cases.values()}
    for case, entry in sorted(cases.items()):
        absent = [f for f in entry["images"] if not Path(f).is_file()]
        if absent or len(entry["images"]) not in (n_channels, 1) or len(files_per_case) > 1:
            raise DietError(f"{absent[0] if absent else folder / 'imagesTr'}: case {case} has "
                            f"{len(entry['images']) - len(absent)} image file(s), dataset.json names {n_channels} "
                            f"channel(s)" + (f" and other cases have {max(files_per_case - {len(entry['images'])})}"
                                             if len(files_per_case) > 1 else ""))
    labels = folder / "labelsTr"
    if labels.is_dir():
        orphans = sorted(f.name for f in labels.iterdir() if f.name.endswith(ending)
                         and f.name[: -len(ending)] not in cases)
        if orphans:
            raise DietError(f"{labels / orphans[0]}: label without an image (no {orphans[0][: -len(ending)]}_0000"
                            f"{ending} in imagesTr)")
    if need_labels:
        unlabelled = sorted(c for c, e in cases.items() if not Path(e["label"]).is_file())
        if unlabelled:
            raise DietError(f"{cases[unlabelled[0]]['label']}: missing, the label of case {unlabelled[0]} "
                            f"({len(unlabelled)} image(s) without a label)")
        if meta.get("numTraining") != len(cases):
            raise DietError(f"{folder / 'dataset.json'}: numTraining is {meta.get('numTraining')!r} but the folder "
                            f"holds {len(cases)} labelled cases")
    return meta, cases


def check_grids(cases: dict[str, dict]) -> None:
    """Each case's channels and label have one voxel grid (sizes from the file headers through SimpleITK),
    else :class:`DietError` naming the label; a case SimpleITK cannot read (a format it does not know, a
    damaged file) is left to nnU-Net's own reader and integrity check."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    for case, entry in sorted(cases.items()):
        sizes = {}
        for f in [*entry["images"], entry["label"]]:
            reader.SetFileName(str(f))
            try:
                reader.ReadImageInformation()
            except RuntimeError:
                break
            sizes[f] = tuple(reader.GetSize())
        else:
            image, label = sizes[entry["images"][0]], sizes[entry["label"]]
            if len(set(sizes.values())) > 1:
                raise DietError(f"{entry['label']}: the label of case {case} has size {label}, its image "
                                f"{Path(entry['images'][0]).name} {image}: not on one voxel grid (a label that no "
                                "longer belongs to its image?)")


def check_training_dataset(folder: str | Path) -> dict[str, dict]:
    """A raw dataset nnU-Net can plan, preprocess and split five ways: labelled cases in pairs, at least 5,
    each on one voxel grid. Returns its cases."""
    _, cases = raw_cases(folder, need_labels=True)
    if len(cases) < 5:
        raise DietError(f"{folder}: {len(cases)} labelled cases; nnU-Net's 5-fold split needs at least 5")
    check_grids(cases)
    return cases


def integrity_failure(log: Path) -> str | None:
    """The first error that nnU-Net's ``--verify_dataset_integrity`` printed into ``log``, with its detail lines
    (they name the case's files)."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    for n, line in enumerate(lines):
        if line.startswith("Error:") or "NaN pixel values" in line:
            detail = [line.strip()]
            for more in lines[n + 1 : n + 8]:
                if not more.strip() or more.startswith("Traceback"):
                    break
                detail.append(more.strip())
            return "; ".join(detail)
    return None
