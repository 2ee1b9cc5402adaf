"""``nnunet-diet audit``: the training cases of a DAD fold in review order, with why each flagged case is
worth a look (docs/audit.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..core.atomic import atomic_write_text, check_output
from ..core.audit import AuditConfig
from ..core.errors import DietError, check_fraction


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "audit", help="label audit of an nnU-Net DAD fold: cases in review order with a reason per flagged case",
        description="Order the training cases of a fold trained with nnUNetTrainerDAD for label review (lowest "
                    "DAD first, as the MONAI Label app's 'audit' strategy serves them), with DAD, sigma, EL2N, "
                    "EL2Nx, the rank, the centre and a reason per flagged case; optionally cleanlab's label "
                    "quality from the five folds' out-of-fold predictions. Writes a CSV. See docs/audit.md.")
    p.add_argument("fold", type=Path, help="nnU-Net fold folder trained with nnUNetTrainerDAD (or its dad/ folder)")
    p.add_argument("-o", "--output", type=Path, default=None, help="CSV to write (default: <fold>/dad/audit.csv)")
    p.add_argument("--raw", type=Path, default=None,
                   help="raw dataset folder (imagesTr/, labelsTr/, dataset.json) to check every label against its "
                        "image; default: $nnUNet_raw/<Dataset>, then <results root>/../nnUNet_raw/<Dataset>")
    p.add_argument("--cleanlab", type=Path, default=None, metavar="RUN",
                   help="nnU-Net run folder with fold_0 ... fold_4 trained with --npz: add cleanlab's label quality "
                        "of each case from its out-of-fold softmax (needs the optional extra audit-cleanlab, AGPL)")
    p.add_argument("--mode", choices=("auto", "online", "exact"), default="auto",
                   help="Dice series: the fold's (auto: exact mode when it was on), online or exact")
    g = p.add_argument_group("reasons (flags; the order is DAD's)")
    g.add_argument("--near-zero", type=float, default=0.1, help="'Dice near 0 throughout training' below this DAD")
    g.add_argument("--learned", type=float, default=0.2, help="'learned then forgotten': a window DAD >= this ...")
    g.add_argument("--forgotten-share", type=float, default=0.6,
                   help="... then a later one that lost this share of it (default 0.6: at most 40 %% of its best)")
    g.add_argument("--tail", type=float, default=0.05, help="flag the worst share of each score (default 0.05)")
    g.add_argument("--show", type=int, default=10, help="print the first cases of the queue (default 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..nnunet.audit import audit_fold, load_audit_fold

    thresholds = AuditConfig(near_zero=check_fraction(args.near_zero, "--near-zero"),
                             learned=check_fraction(args.learned, "--learned"),
                             forgotten_share=check_fraction(args.forgotten_share, "--forgotten-share"),
                             tail=check_fraction(args.tail, "--tail"))
    if args.show < 0:
        raise DietError(f"--show must be >= 0, got {args.show}")
    fold = load_audit_fold(args.fold, args.mode)
    out = (args.output or fold.dad / "audit.csv").expanduser()
    if out.suffix.lower() != ".csv":
        raise DietError(f"{out}: the audit table is a CSV; give a file name ending in .csv")
    check_output(out, inputs=fold.inputs)
    table, summary = audit_fold(fold, raw=args.raw, cleanlab_run=args.cleanlab, thresholds=thresholds)
    atomic_write_text(out, table.to_csv(index=False, float_format="%.6g"))
    series = fold.config.dad_series
    stop = summary["stop_epoch"]
    print(f"{fold.fold}: {len(table)} cases, DAD from {series!r} at epoch {summary['dad_scored_at_epoch']} "
          f"(window {fold.config.window}; stop rule {'never fired' if stop is None else f'at epoch {stop}'})")
    print(f"labels checked against their images in {summary['raw']}" if summary["labels_checked"] else
          "labels not checked: no raw dataset found (pass --raw DIR or set nnUNet_raw)")
    if args.cleanlab:
        print(f"cleanlab label quality from the out-of-fold predictions in {args.cleanlab}")
    print(f"{summary['flagged']} case(s) flagged; the review queue starts with:")
    cols = [c for c in ("audit_rank", "id", "group", "dad", "sigma", "el2nx", "cleanlab", "reason") if c in table]
    head = table[cols].head(args.show).copy()
    for c in ("dad", "sigma", "el2nx", "cleanlab"):
        if c in head:
            head[c] = head[c].map(lambda v: "n/a" if not np.isfinite(v) else f"{v:.3f}")
    if len(head):
        print(head.to_string(index=False))
    print(f"wrote {out}")
    return 0
