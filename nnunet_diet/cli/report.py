"""``nnunet-diet report``: one self-contained HTML report (and a markdown summary) of a DAD fold or a
MedMNIST run."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_write_text, check_output
from ..core.errors import DietError, check_fraction


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="self-contained HTML report (+ markdown) of an nnU-Net DAD fold or a MedMNIST run",
        description="Data map, moving distance, DAD over epochs, the easiest / most ambiguous / hardest cases as "
                    "thumbnails, a per-centre summary and the agreement between scores, in one HTML file with "
                    "every image embedded (opens from disk, no network), plus a markdown summary next to it. "
                    "See docs/report.md.")
    p.add_argument("source", type=Path,
                   help="nnU-Net fold folder trained with nnUNetTrainerDAD (or its dad/ folder), a MedMNIST run "
                        "folder of 'nnunet-diet medmnist train', or a classification dynamics file (.npz)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="HTML file to write (default: <fold>/dad/report.html, <run>/report.html, or "
                        "<name>.report.html in the current folder for a .npz); the markdown goes beside it (.md)")
    p.add_argument("--raw", type=Path, default=None,
                   help="raw dataset folder with the case images (imagesTr/ + labelsTr/, or images/ + masks/); "
                        "default: $nnUNet_raw/<Dataset> and <results root>/../nnUNet_raw/<Dataset>")
    p.add_argument("--centres", default=None,
                   help="centre per case: CSV 'id,centre' or a regex whose first group is the centre "
                        "(default: the scores' group column)")
    p.add_argument("--meddel", type=Path, default=None, help="MedDEL keep table (CSV with columns id, keep)")
    p.add_argument("--images", type=Path, default=None,
                   help="MedMNIST .npz holding the images (default: the run's config.json 'data'); ids are rows "
                        "of its train split, or of its train_indices when the file has them")
    p.add_argument("--rate", type=float, default=None,
                   help="pruning rate that defines the regions (default: the fold's setting, else 0.4)")
    p.add_argument("--topk", type=float, default=0.4, help="top-k share for the overlap table (default 0.4)")
    p.add_argument("--thumbs", type=int, default=4,
                   help="cases per kind (easiest / most ambiguous / hardest; default 4; MedMNIST: 2x per region)")
    p.add_argument("--title", default=None, help="report title")
    p.set_defaults(func=run)


def _kind(source: Path) -> str:
    if source.is_file() and source.suffix == ".npz":
        return "medmnist"
    if source.is_dir():
        if (source / "dad" / "scores.csv").is_file() or (source / "scores.csv").is_file() and \
                (source / "summary.json").is_file():
            return "fold"
        if (source / "dynamics.npz").is_file():
            return "medmnist"
        raise DietError(f"{source}: neither an nnU-Net DAD fold (no dad/scores.csv) nor a MedMNIST run folder "
                        "(no dynamics.npz)")
    raise DietError(f"{source}: no such folder or .npz file")


def run(args: argparse.Namespace) -> int:
    from ..report.agreement import read_meddel

    source = args.source.expanduser()
    kind = _kind(source)
    if args.rate is not None:
        check_fraction(args.rate, "--rate")
    check_fraction(args.topk, "--topk")
    if args.thumbs < 1:
        raise DietError(f"--thumbs must be >= 1, got {args.thumbs}")
    meddel = read_meddel(args.meddel) if args.meddel else None
    if kind == "fold":
        from ..report.segmentation import build_fold_report, locate_fold

        src = locate_fold(source, args.raw)
        default = src.csv.parent / "report.html"
        _check_outputs(args.output or default, args, src.csv)
        _check_meddel_ids(meddel, src.table["id"].astype(str).to_numpy(), args.meddel, src.csv)
        rep, facts = build_fold_report(src, rate=args.rate, centres=args.centres, meddel=meddel,
                                       n_thumbs=args.thumbs, topk=args.topk, title=args.title)
    else:
        from ..report.classification import build_medmnist_report, locate_run

        src = locate_run(source, args.images)
        default = source / "report.html" if source.is_dir() else Path.cwd() / f"{source.stem}.report.html"
        _check_outputs(args.output or default, args, src.path)
        _check_meddel_ids(meddel, src.store.ids.astype(str), args.meddel, src.path)
        rep, facts = build_medmnist_report(src, rate=args.rate, meddel=meddel, n_examples=2 * args.thumbs,
                                           topk=args.topk, title=args.title)
    out = args.output or default
    page = rep.html()
    atomic_write_text(out, page)
    atomic_write_text(out.with_suffix(".md"), rep.markdown())
    print(f"{kind}: {facts['cases']} cases; scores compared: {', '.join(facts.get('scores', [])) or 'none'}")
    if facts["thumbnails"] < facts["thumbnails_wanted"]:
        print(f"images for {facts['thumbnails']} of {facts['thumbnails_wanted']} cases; looked in: "
              f"{'; '.join(facts['looked']) or 'nowhere (pass --raw or --images)'}")
    else:
        print(f"images for all {facts['thumbnails']} cases shown")
    print(f"wrote {out} ({len(page.encode()) // 1024} KB, {rep.n_images} embedded images)")
    print(f"wrote {out.with_suffix('.md')}")
    return 0


def _check_outputs(out: Path, args: argparse.Namespace, scores: Path) -> None:
    """The HTML and the markdown beside it may replace none of the inputs."""
    if out.suffix == ".md":
        raise DietError(f"-o/--output {out}: the markdown is written beside the HTML; give the HTML's name (.html)")
    inputs = [args.source, scores, args.meddel, args.images, args.centres]
    check_output(out, inputs=inputs)
    check_output(out.with_suffix(".md"), inputs=inputs, option=f"markdown beside {out}")


def _check_meddel_ids(meddel, ids: np.ndarray, path: Path | None, scores: Path) -> None:
    """A MedDEL keep table must be of this dataset: at least one of its ids is a case of the report."""
    if meddel is not None and not np.isin(ids, meddel["id"].to_numpy()).any():
        raise DietError(f"{path}: none of its {len(meddel)} ids is a case of {scores} (e.g. {meddel['id'].iloc[0]!r} "
                        f"vs {ids[0]!r}): a keep table of another dataset?")
