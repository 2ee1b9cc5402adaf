"""The report's label-audit section: the first cases of the review queue with their image, label and reason.

The queue is the fold's ``dad/audit.csv`` when ``nnunet-diet audit`` wrote one (it may hold the cleanlab
column), else the same table computed here from ``dad/dynamics.npz`` with the fold's settings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..core.audit import audit_table
from ..core.errors import DietError
from .html import Report, fmt
from .thumbnails import ImageFinder, thumbnail_png

__all__ = ["audit_queue", "audit_section"]

QUEUE_COLUMNS = ("audit_rank", "id", "group", "dad", "sigma", "el2n", "el2nx", "cleanlab", "reason")


def audit_queue(dad_folder: Path) -> tuple[pd.DataFrame | None, str]:
    """The audit table of a fold's ``dad/`` folder and where it came from (None and why when there is none)."""
    csv = dad_folder / "audit.csv"
    if csv.is_file():
        try:
            table = pd.read_csv(csv, dtype={"id": str, "group": str, "reason": str})
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DietError(f"{csv}: not a readable CSV ({exc})") from None
        if "audit_rank" not in table.columns or "id" not in table.columns:
            raise DietError(f"{csv}: no audit_rank / id column; rewrite it with nnunet-diet audit")
        return table.sort_values("audit_rank", kind="stable"), str(csv)
    if not (dad_folder / "dynamics.npz").is_file():
        return None, f"no {csv.name} and no dynamics.npz in {dad_folder}"
    from ..nnunet.audit import load_audit_fold

    fold = load_audit_fold(dad_folder)
    cols, _summary = audit_table(fold.store, fold.config)
    return pd.DataFrame(cols), f"{dad_folder / 'dynamics.npz'} (computed as nnunet-diet audit would; no cleanlab)"


def audit_section(rep: Report, dad_folder: Path, finder: ImageFinder, n_cases: int) -> int:
    """Add the section; returns how many of its cases had an image."""
    rep.heading("Label audit: the review queue")
    table, source = audit_queue(dad_folder)
    if table is None:
        rep.para(f"No audit: {source}.", note=True)
        return 0
    flagged = int(table["flagged"].sum()) if "flagged" in table.columns else 0
    rep.para(f"The first cases an annotator should check, in the order of nnunet-diet audit (lowest DAD first; "
             f"the MONAI Label app's audit strategy serves the same order). {flagged} of {len(table)} cases "
             f"flagged. Source: {source}. See docs/audit.md for how to read the reasons.")
    head = table.head(n_cases)
    items, found = [], 0
    for row in head.itertuples(index=False):
        case = finder.find(str(row.id))
        reason = getattr(row, "reason", "")
        caption = f"#{row.audit_rank} {row.id} · DAD {fmt(row.dad)}" + (f" · {reason}" if isinstance(reason, str)
                                                                        and reason else "")
        if case is None:
            items.append((None, caption))
            continue
        png, where = thumbnail_png(case)
        found += 1
        items.append((png, caption + ("" if where == "2D" else f" · {where}")))
    rep.gallery(f"first {len(head)} of the queue", items, css="hard")
    cols = [c for c in QUEUE_COLUMNS if c in table.columns]
    rep.table(table[cols].head(max(n_cases, 20)).fillna(""), f"The first {min(len(table), max(n_cases, 20))} cases "
              f"of the review queue (every case: {source})")
    return found
