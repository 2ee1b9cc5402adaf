"""Agreement between per-sample scores: Spearman rank correlation and top-k overlap.

Scores are compared as they are stored (DAD is high for easy cases, EL2N high for hard ones, so
agreement between those two shows as a negative correlation). The top-k sets take each score's
"hard" end: the ``ceil(k N)`` lowest DAD / AUM / mean confidence, the highest EL2N, EL2Nx, EVA,
forgetting and entropy. A MedDEL keep table (columns ``id`` and ``keep``) adds its removed set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DietError
from ..core.selection import n_kept
from .html import fmt

__all__ = ["HARD_END", "score_columns", "spearman_matrix", "hard_set", "topk_overlap", "read_meddel",
           "meddel_table", "agreement_section"]

# Which end of each score is "hard" (the top-k end compared here).
HARD_END = {"dad": "low", "el2n": "high", "el2nx": "high", "eva": "high", "forgetting": "high",
            "aum": "low", "entropy": "high", "confidence": "low"}


def score_columns(table: pd.DataFrame) -> list[str]:
    """The known score columns of ``table`` that hold at least two finite values, in HARD_END order."""
    return [c for c in HARD_END if c in table.columns
            and np.isfinite(pd.to_numeric(table[c], errors="coerce").to_numpy(float)).sum() >= 2]


def _ranks(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").rank(method="average")


def spearman_matrix(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Spearman's rho for every pair of ``columns`` over the rows where both are finite (average ranks
    for ties: Pearson's r of the ranks)."""
    out = pd.DataFrame(np.eye(len(columns)), index=columns, columns=columns)
    for i, a in enumerate(columns):
        for b in columns[i + 1:]:
            pair = table[[a, b]].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan).dropna()
            if len(pair) < 2:
                rho = np.nan
            else:
                ra, rb = _ranks(pair[a]).to_numpy(), _ranks(pair[b]).to_numpy()
                rho = np.nan if ra.std() == 0 or rb.std() == 0 else float(np.corrcoef(ra, rb)[0, 1])
            out.loc[a, b] = out.loc[b, a] = rho
    return out


def hard_set(table: pd.DataFrame, column: str, k: float) -> set:
    """Ids of the ``ceil(k N)`` samples at the hard end of ``column`` (N = samples with a finite value;
    ties broken by row order)."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(float)
    ok = np.flatnonzero(np.isfinite(values))
    if not len(ok):
        return set()
    key = values[ok] if HARD_END[column] == "low" else -values[ok]
    chosen = ok[np.argsort(key, kind="stable")[: n_kept(len(ok), k)]]
    return set(table["id"].to_numpy()[chosen].tolist())


def topk_overlap(table: pd.DataFrame, columns: list[str], k: float = 0.4) -> pd.DataFrame:
    """Share of common ids, ``|A & B| / min(|A|, |B|)``, between the hard-end top-k sets of each pair."""
    sets = {c: hard_set(table, c, k) for c in columns}
    out = pd.DataFrame(np.nan, index=columns, columns=columns)
    for a in columns:
        for b in columns:
            size = min(len(sets[a]), len(sets[b]))
            out.loc[a, b] = len(sets[a] & sets[b]) / size if size else np.nan
    return out


def read_meddel(path: Path) -> pd.DataFrame:
    """A MedDEL keep table: columns ``id`` and ``keep`` (1/0, true/false); other columns are ignored."""
    if not Path(path).is_file():
        raise DietError(f"{path}: no such MedDEL keep table")
    try:
        table = pd.read_csv(path, dtype={"id": str})
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DietError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in ("id", "keep") if c not in table.columns]
    if missing:
        raise DietError(f"{path}: missing column(s) {', '.join(missing)} (a MedDEL keep table has id, keep, ...)")
    if table.empty:
        raise DietError(f"{path}: no rows (only a header)")
    from ..nnunet.splits import keep_flags

    keep = keep_flags(table["keep"], path)
    return pd.DataFrame({"id": table["id"].astype(str), "keep": keep.astype(bool)})


def meddel_table(table: pd.DataFrame, meddel: pd.DataFrame, columns: list[str], k: float = 0.4) -> pd.DataFrame:
    """Per score: how the cases MedDEL removes sit in it: their share in the score's hard-end top-k set
    and in its easy-end top-k set (``ceil(k N)`` each), and Spearman's rho of the score with ``keep``."""
    ids = table["id"].astype(str)
    keep = ids.map(dict(zip(meddel["id"], meddel["keep"])))
    removed = set(ids[keep == False].tolist())  # noqa: E712 (NaN = not in the MedDEL table)
    rows = []
    merged = table.assign(id=ids, meddel_keep=keep.astype(float))
    for c in columns:
        hard = {str(i) for i in hard_set(merged, c, k)}
        flipped = merged.assign(**{c: -pd.to_numeric(merged[c], errors="coerce")})
        easy = {str(i) for i in hard_set(flipped, c, k)}
        rho = spearman_matrix(merged, [c, "meddel_keep"]).iloc[0, 1]
        rows.append({"score": c, "MedDEL removed": len(removed),
                     "share in hard top-k": len(removed & hard) / len(removed) if removed else np.nan,
                     "share in easy top-k": len(removed & easy) / len(removed) if removed else np.nan,
                     "rho with keep": rho})
    return pd.DataFrame(rows)


def agreement_section(rep, table: pd.DataFrame, meddel: pd.DataFrame | None, topk: float, facts: dict) -> None:
    """The report section (a :class:`~nnunet_diet.report.html.Report`): Spearman, top-k overlap, MedDEL;
    puts the compared columns and the Spearman matrix into ``facts``."""
    rep.heading("Agreement between methods")
    cols = score_columns(table)
    facts["scores"] = cols
    if len(cols) < 2:
        rep.para(f"Only {', '.join(cols) or 'no score'} in the table: nothing to compare.", note=True)
    else:
        rho = spearman_matrix(table, cols)
        facts["spearman"] = rho
        rep.table(rho.rename_axis("score"), "Spearman rank correlation of the scores as stored, over the cases "
                  "where both are defined. DAD, AUM and mean confidence are high for easy cases; EL2N, EL2Nx, EVA, "
                  "forgetting and entropy high for hard ones: agreement across the two kinds is a negative rho.",
                  index=True)
        rep.table(topk_overlap(table, cols, topk).rename_axis("score"),
                  f"Top-k overlap, k = {fmt(topk * 100, 0)} % of the cases at each score's hard end (lowest DAD, AUM, "
                  "confidence; highest EL2N, EL2Nx, EVA, forgetting, entropy): share of common cases.", index=True)
    if meddel is not None:
        known = set(meddel["id"])
        n_in = int(table["id"].astype(str).isin(known).sum())
        rep.table(meddel_table(table, meddel, cols, topk),
                  f"MedDEL keep table ({n_in} of {len(table)} cases listed): where the cases MedDEL removes sit "
                  f"in each score's hard and easy top {fmt(topk * 100, 0)} %, and Spearman's rho of each score "
                  "with keep (1 kept, 0 removed).")
