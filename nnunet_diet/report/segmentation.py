"""Report of an nnU-Net fold trained with ``nnUNetTrainerDAD`` (its ``<fold>/dad/`` folder).

Reads ``scores.csv`` (the per-case table), ``summary.json`` (L per window, stop epoch, settings) and,
when present, ``dynamics.npz`` (for DAD over epochs); finds case images through ``--raw``,
``$nnUNet_raw/<Dataset>``, ``<results root>/../nnUNet_raw/<Dataset>``, and the preprocessed data of the
fold's configuration (``$nnUNet_preprocessed/<Dataset>/<data_identifier>``); says where it looked when
it finds none. Cases shown: the easiest (highest DAD), the most ambiguous (the middle of the DAD
ranking) and the hardest (lowest DAD).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.dad import dad_trajectory
from ..core.errors import DietError
from ..core.selection import regions
from ..core.store import DynamicsStore
from ..nnunet.config import centre_of
from .agreement import agreement_section
from . import review
from .audit import audit_section
from .html import Report, fmt, hover_data_map
from .plots import plot_dad_curves, plot_moving_distance
from .review import pruned_by, read_dad_scores
from .thumbnails import ImageFinder, thumbnail_png

__all__ = ["FoldInput", "locate_fold", "pick_cases", "centre_table", "build_fold_report"]

REGIONS = ("easy", "ambiguous", "hard")


@dataclass
class FoldInput:
    """What the report reads from a fold's ``dad/`` folder, and where case images may be."""

    table: pd.DataFrame
    csv: Path
    summary: dict
    store: DynamicsStore | None
    dataset: str | None
    configuration: str | None
    finder: ImageFinder
    notes: list[str] = field(default_factory=list)


def _plans_identifier(run: Path, configuration: str | None) -> str | None:
    plans = run / "plans.json"
    if configuration is None or not plans.is_file():
        return None
    try:
        return json.loads(plans.read_text())["configurations"][configuration].get("data_identifier")
    except (ValueError, KeyError, TypeError):
        return None


def locate_fold(path: Path, raw: Path | None = None) -> FoldInput:
    """Read a fold folder (or its ``dad/`` folder) and set up the image search."""
    table, csv = read_dad_scores(path)
    folder = csv.parent
    summary = {}
    if (folder / "summary.json").is_file():
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except ValueError as exc:
            raise DietError(f"{folder / 'summary.json'}: not JSON ({exc})") from None
    store = DynamicsStore.load(folder / "dynamics.npz") if (folder / "dynamics.npz").is_file() else None
    fold = folder.parent if folder.name == "dad" else folder
    run, dataset, configuration = fold.parent, None, None
    if run.parent.name.startswith("Dataset"):
        dataset = run.parent.name
        parts = run.name.split("__")
        configuration = parts[2] if len(parts) == 3 else None
    raws, pres = [], []
    if raw is not None:
        if not raw.is_dir():
            raise DietError(f"{raw}: --raw is not a folder")
        raws.append(raw)
    if dataset:
        results_root = run.parent.parent
        for base in (os.environ.get("nnUNet_raw"), results_root.parent / "nnUNet_raw"):
            if base and Path(base, dataset) not in raws:
                raws.append(Path(base, dataset))
        ident = _plans_identifier(run, configuration)
        if ident:
            for base in (os.environ.get("nnUNet_preprocessed"), results_root.parent / "nnUNet_preprocessed"):
                if base and Path(base, dataset, ident) not in pres:
                    pres.append(Path(base, dataset, ident))
    return FoldInput(table, csv, summary, store, dataset, configuration, ImageFinder(raws, pres))


def pick_cases(scores: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Row indices of the ``n`` easiest (highest score), most ambiguous (middle ranks) and hardest (lowest)
    among the finite scores; the middle ones are ordered from the centre outwards."""
    ok = np.flatnonzero(np.isfinite(scores))
    order = ok[np.argsort(scores[ok], kind="stable")]  # ascending: hardest first
    n = min(n, len(order) // 3 if len(order) >= 3 else len(order))
    mid = len(order) // 2
    dist = np.abs(np.arange(len(order)) - (mid - 0.5 if len(order) % 2 == 0 else mid))
    middle = order[np.argsort(dist, kind="stable")[:n]]
    return {"easiest": order[::-1][:n], "most ambiguous": middle, "hardest": order[:n]}


def centre_table(table: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Per centre (``group``) and in total: cases, mean DAD, share per region, and how many cases each
    pruning mode at ``rate`` removes (``nnunet-diet prune --mode`` without ``--stratify``)."""
    removed = {keep: pruned_by(table, rate, keep) for keep in review.REGIONS}
    groups = table["group"].fillna("").astype(str) if "group" in table.columns else pd.Series("", index=table.index)
    labels = sorted(g for g in groups.unique() if g) if (groups != "").any() else []
    rows = []
    for label in [*labels, "all"]:
        sel = (groups == label).to_numpy() if label != "all" else np.ones(len(table), bool)
        part = table[sel]
        row = {"centre": label, "cases": int(sel.sum()), "mean DAD": part["dad"].mean()}
        for region in REGIONS:
            row[f"{region} %"] = 100.0 * float((part["region"] == region).mean()) if len(part) else np.nan
        for keep, mask in removed.items():
            row[f"keep {keep}: removed"] = int(mask[sel].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _png(draw) -> bytes:
    buf = io.BytesIO()
    draw(buf)
    return buf.getvalue()


def _settings(summary: dict) -> dict:
    s = summary.get("settings") or {}
    return {"window": int(s.get("window", summary.get("dad_window", 10))), "threshold": float(s.get("threshold", 0.01)),
            "patience": int(s.get("patience", 1)), "absolute": bool(s.get("absolute", False)),
            "ignore_zeros": bool(s.get("ignore_zeros", False)), "rate": float(s.get("rate", 0.4)),
            "stop_rule": str(s.get("stop_rule", "paper"))}


def build_fold_report(src: FoldInput, *, rate: float | None = None, centres: str | None = None,
                      meddel: pd.DataFrame | None = None, n_thumbs: int = 4, topk: float = 0.4,
                      title: str | None = None) -> tuple[Report, dict]:
    """The report of one fold; returns the report and facts for the command's summary line."""
    cfg = _settings(src.summary)
    rate = cfg["rate"] if rate is None else rate
    table = _fold_table(src, rate, cfg, centres)
    name = src.dataset or src.csv.parent.name
    rep = Report(title or f"DAD report: {name}" + (f" ({src.csv.parent.parent.name})" if src.dataset else ""))
    _overview(rep, src, table, cfg, rate)
    picks = pick_cases(table["dad"].to_numpy(float), n_thumbs)
    _dynamics_section(rep, src, table, cfg, picks)
    found, shown = _cases_section(rep, src, table, picks)
    audit_section(rep, src.csv.parent, src.finder, 2 * n_thumbs)
    ctab = _centre_section(rep, table, rate)
    facts_out = {"cases": len(table), "thumbnails": found, "thumbnails_wanted": shown,
                 "looked": src.finder.looked, "centres": ctab["centre"].tolist()}
    agreement_section(rep, table, meddel, topk, facts_out)
    rep.heading("All cases")
    cols = [c for c in ("id", "group", "region", "dad", "sigma", "dad_rank", "el2n", "el2nx") if c in table.columns]
    rep.case_table(table.sort_values("dad_rank")[cols], f"{len(table)} cases by DAD rank (1 = lowest DAD)",
                   str(src.csv))
    return rep, facts_out


def _fold_table(src: FoldInput, rate: float, cfg: dict, centres: str | None) -> pd.DataFrame:
    """The fold's scores with regions at ``rate`` (recomputed when it is not the fold's) and centres."""
    table = src.table.copy()
    if rate != cfg["rate"]:
        table["region"] = regions(table["dad"].to_numpy(float), rate)
    if centres:
        table["group"] = centre_of(table["id"].tolist(), centres)
    return table


def _overview(rep: Report, src: FoldInput, table: pd.DataFrame, cfg: dict, rate: float) -> None:
    """What was scored, how long it trained, where the stop rule stopped, what the regions mean."""
    stop = src.summary.get("stop_epoch")
    dad = table["dad"].to_numpy(float)
    facts = [f"scores: {src.csv}", f"{len(table)} cases, {int(np.isfinite(dad).sum())} with a DAD value"]
    if src.summary:
        facts.append(f"epochs trained: {src.summary.get('epochs_trained', src.summary.get('n_epochs', '?'))}"
                     f" of {src.summary.get('num_epochs', '?')}; DAD window {cfg['window']} epochs; "
                     + (f"stop rule fired at epoch {stop}; " if stop is not None else "stop rule did not fire; ")
                     + f"DAD scored at epoch {src.summary.get('dad_scored_at_epoch', '?')}")
    facts.append(f"regions: pruning rate {rate:g} (hard = lowest {rate / 2:g} of DAD, easy = highest "
                 f"{rate / 2:g}, ambiguous = the rest)")
    rep.bullets(facts)


def _dynamics_section(rep: Report, src: FoldInput, table: pd.DataFrame, cfg: dict, picks: dict) -> None:
    """Data map, moving distance per window and DAD over epochs of a few picked cases."""
    rep.heading("Data map and training dynamics")
    ids, stop = table["id"].to_numpy(str), src.summary.get("stop_epoch")
    png, area_map = hover_data_map(table["dad"].to_numpy(float), table["sigma"].to_numpy(float),
                                   table["region"].to_numpy(str), ids, xlabel="variability (sigma)",
                                   ylabel="DAD", dpi=100)
    figs = [(png, "Data map: DAD against its variability; hover a point for its case, click to jump to its row.",
             "datamap")]
    L = np.array([np.nan if v is None else v for v in src.summary.get("moving_distance", [])], float)
    if len(L):
        epochs = (np.arange(len(L)) + 1) * cfg["window"] - 1
        line = cfg["threshold"] if cfg["stop_rule"] == "paper" else None  # the paper rule's L threshold
        figs.append((_png(lambda b: plot_moving_distance(L, epochs, stop, b, line, dpi=90)),
                     f"Moving distance L per window; stop epoch {stop if stop is not None else 'not reached'}."))
    if src.store is None:
        rep.para(f"No dynamics.npz next to {src.csv}: DAD over epochs is not shown.", note=True)
    elif (series := src.summary.get("dad_series", "dice")) in src.store:
        traj = dad_trajectory(src.store[series], cfg["window"], ignore_zeros=cfg["ignore_zeros"],
                              absolute=cfg["absolute"], threshold=cfg["threshold"], patience=cfg["patience"],
                              rule=cfg["stop_rule"], rate=cfg["rate"])
        chosen = [rows[:2] for rows in picks.values()]
        rows = np.concatenate(chosen) if chosen else np.empty(0, int)
        store_rows = src.store.index_of(ids[rows]) if len(rows) else rows
        figs.append((_png(lambda b: plot_dad_curves(src.store[series][store_rows], traj.dad[:, store_rows],
                                                    cfg["window"], list(ids[rows]),
                                                    list(table["region"].to_numpy(str)[rows]), b, stop)),
                     f"DAD over epochs for two of the easiest, most ambiguous and hardest cases "
                     f"(series {series} from {src.csv.parent / 'dynamics.npz'})."))
    rep.figures(figs, [area_map])


def _cases_section(rep: Report, src: FoldInput, table: pd.DataFrame, picks: dict) -> tuple[int, int]:
    """Thumbnails of the easiest, most ambiguous and hardest cases; ``(found, shown)`` images."""
    rep.heading("Easiest, most ambiguous and hardest cases")
    ids, dad = table["id"].to_numpy(str), table["dad"].to_numpy(float)
    found, shown, sources = 0, 0, set()
    for kind, rows in picks.items():
        items = []
        for r in rows:
            case = src.finder.find(ids[r])
            caption = f"{ids[r]} · DAD {fmt(dad[r])}"
            if "group" in table.columns and str(table["group"].iloc[r]) not in ("", "nan"):
                caption += f" · {table['group'].iloc[r]}"
            shown += 1
            if case is None:
                items.append((None, caption))
                continue
            thumb, where = thumbnail_png(case)
            found += 1
            sources.add(case.folder)
            items.append((thumb, caption + ("" if where == "2D" else f" · {where}")))
        rep.gallery(f"{kind} ({len(rows)})", items, css={"easiest": "easy", "most ambiguous": "ambiguous",
                                                          "hardest": "hard"}[kind])
    if found:
        rep.para(f"Images from {', '.join(sorted(sources))}: 2D images as they are, 3D volumes as the slice "
                 "through the label's centre of mass that shows the most label; label outlines overlaid.", note=True)
    if found < shown:
        looked = "; ".join(src.finder.looked) or "nowhere (no dataset name in the fold path; pass --raw DIR)"
        rep.para(f"Images found for {found} of {shown} cases. Looked in: {looked}. Pass --raw DIR (an nnU-Net raw "
                 "dataset folder with imagesTr/ and labelsTr/) or set nnUNet_raw.", note=True)
    return found, shown


def _centre_section(rep: Report, table: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Cases, mean DAD, regions and what each mode would remove, per centre."""
    rep.heading("Per centre")
    if not (("group" in table.columns) and (table["group"].fillna("").astype(str) != "").any()):
        rep.para("No centre per case (no group column in scores.csv; pass --centres REGEX|CSV): one row for all.",
                 note=True)
    ctab = centre_table(table, rate)
    rep.table(ctab, f"Cases per centre, mean DAD, share in each region, and cases removed by pruning {rate:g} "
                    "of all cases in each mode (keep ambiguous: both tails; keep easy: the lowest DAD; keep hard: "
                    "the highest DAD). With --stratify each centre would lose its proportional share instead.",
              digits={f"{r} %": 1 for r in REGIONS})
    return ctab
