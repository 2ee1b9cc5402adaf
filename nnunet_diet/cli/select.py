"""``nnunet-diet select``: a per-sample score table -> the ids to keep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_write_text, check_output
from ..core.errors import DietError
from ..core.scores import SCORE_DIRECTIONS
from ..core.selection import MODES, ccs, select
from ..nnunet.splits import numeric_column

METHODS = tuple(SCORE_DIRECTIONS) + ("random", "ccs")
# columns taken as the class of a sample without --class-column; not "group", which in nnU-Net score tables is
# the centre of a case (a MedMNIST run's scores.csv names its labels "class")
CLASS_COLUMNS = ("class", "label")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("select", help="keep a fraction of samples by a score column (EVA, DAD, EL2N, ..., CCS)",
                       description="Read a per-sample CSV (e.g. from 'nnunet-diet scores'), rank by one method "
                                   "and write the kept ids, one per line.")
    p.add_argument("table", type=Path, help="per-sample CSV with an 'id' column and score columns")
    p.add_argument("--method", required=True, help=f"score column or one of: {', '.join(METHODS)}")
    p.add_argument("--keep", type=float, required=True, help="kept fraction in (0, 1) (pruning rate q = 1 - keep)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="which samples to keep (default: the paper's direction for the method, e.g. "
                        "top for EVA, middle for DAD, bottom for AUM)")
    p.add_argument("--stratify", metavar="COLUMN", default=None,
                   help="keep each value of COLUMN (e.g. group) at its share")
    p.add_argument("--hard-prune", type=float, default=0.1, help="CCS: fraction of hardest (lowest AUM) dropped first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class-column", metavar="COLUMN", default=None,
                   help=f"column whose values the class-distribution report counts (default: the first of "
                        f"{', '.join(CLASS_COLUMNS)} the table has, else no report; e.g. 'group' for the centres of "
                        f"an nnU-Net score table); 'none': no report")
    p.add_argument("-o", "--output", type=Path, default=None, help="file for the kept ids (default: print them)")
    p.set_defaults(func=run)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DietError(f"{path}: no such score table")
    try:
        table = pd.read_csv(path, dtype={"id": str, "group": str, "class": str, "label": str})
    except (ValueError, pd.errors.ParserError) as exc:
        raise DietError(f"{path}: not a readable CSV ({exc})") from None
    if "id" not in table.columns:
        raise DietError(f"{path}: no 'id' column (columns: {', '.join(table.columns)})")
    if table.empty:
        raise DietError(f"{path}: no rows (only a header)")
    if table["id"].isna().any():
        raise DietError(f"{path}: blank id on line {int(np.flatnonzero(table['id'].isna().to_numpy())[0]) + 2}")
    if table["id"].duplicated().any():
        raise DietError(f"{path}: duplicate ids, e.g. {table['id'][table['id'].duplicated()].iloc[0]}")
    return table


def run(args: argparse.Namespace) -> int:
    if args.output:
        check_output(args.output, inputs=[args.table])
    table = _read_table(args.table)
    method = args.method.lower()
    class_column = _class_column(table, args)
    column = "aum" if method == "ccs" else method
    if method != "random" and column not in table.columns:
        raise DietError(f"unknown method {args.method!r}: {args.table} has no such column; methods: "
                        f"{', '.join(METHODS)} (columns here: {', '.join(table.columns)})")
    groups = None
    if args.stratify:
        if args.stratify not in table.columns:
            raise DietError(f"--stratify {args.stratify!r}: no such column in {args.table}")
        groups = table[args.stratify].astype(str).to_numpy()
    scores = None if method == "random" else numeric_column(table, column, args.table)
    try:
        if method == "ccs":
            kept = ccs(scores, args.keep, hard_prune=args.hard_prune, seed=args.seed)
        else:
            mode = args.mode or ("random" if method == "random" else SCORE_DIRECTIONS.get(method, "top"))
            kept = select(scores, args.keep, mode, groups=groups, seed=args.seed, n=len(table))
    except DietError as exc:
        raise DietError(f"{args.table}, column {column!r}: {exc}") from None
    ids = table["id"].to_numpy()[np.sort(kept)]
    text = "\n".join(map(str, ids)) + "\n"
    if args.output:
        atomic_write_text(args.output, text)
        print(f"kept {len(ids)} of {len(table)} ids -> {args.output}")
    else:
        print(text, end="")
    if class_column is not None:
        _report_classes(table, class_column, ids, args)
    return 0


def _class_column(table: pd.DataFrame, args: argparse.Namespace) -> str | None:
    """``--class-column`` (``none``: no report), else the first of :data:`CLASS_COLUMNS` the table has
    (None: no report)."""
    if args.class_column == "none":
        return None
    if args.class_column is not None and args.class_column not in table.columns:
        raise DietError(f"--class-column {args.class_column!r}: no such column in {args.table} "
                        f"(columns: {', '.join(table.columns)})")
    column = args.class_column or next((c for c in CLASS_COLUMNS if c in table.columns), None)
    if column is not None and table[column].isna().any():
        line = int(np.flatnonzero(table[column].isna().to_numpy())[0]) + 2
        raise DietError(f"{args.table}: blank {column!r} on line {line}; the class report needs every row's "
                        f"{column} (--class-column none: no report)")
    return column


def _report_classes(table: pd.DataFrame, column: str, ids: np.ndarray, args: argparse.Namespace) -> None:
    """Class distribution of the kept ids beside the table's (stdout with -o, else stderr, so the printed
    ids stay a clean list) and one warning line on stderr per value below half its share, both worded with
    the column's name."""
    from ..core.class_shift import class_shift

    shift = class_shift(table["id"].to_numpy(), table[column].astype(str).to_numpy(), ids, what=column)
    print(f"per {column}:\n{shift.table()}", file=sys.stdout if args.output else sys.stderr)
    for line in shift.warnings():
        print(line, file=sys.stderr)
