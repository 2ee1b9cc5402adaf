"""A self-contained HTML page and its markdown twin, built section by section.

Every image is a base64 PNG data URI; there is no script, no external style sheet and no network
reference; a Content-Security-Policy meta tag makes the browser refuse any fetch but ``data:`` images.
Hover on the data map comes from an HTML image map (``<area title=...>``) over the PNG.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .plots import REGION_COLOURS, data_map_figure, plt
from .thumbnails import png_data_uri

__all__ = ["Report", "fmt", "hover_data_map", "case_anchor", "MAX_ROWS"]

MAX_ROWS = 5000  # larger runs: no per-point hover and no case table (the page would grow to many MB)
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5em auto;max-width:1180px;
 color:#1d1d1f;padding:0 1em;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #d0d0d0;padding:.25em .55em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.note{color:#555;font-size:.9em}.figs{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
figure{margin:0}figcaption{font-size:.82em;color:#444;max-width:640px}
.gallery{display:flex;flex-wrap:wrap;gap:.6em;margin:.3em 0 1em}
.thumb{border:1px solid #ccc;padding:3px;background:#fafafa;font-size:.75em;text-align:center;max-width:170px;
 overflow-wrap:anywhere}
.thumb img{display:block;margin:0 auto}
.missing{width:120px;height:120px;display:flex;align-items:center;justify-content:center;color:#999}
.easy{color:#2ca02c}.ambiguous{color:#1f77b4}.hard{color:#d62728}
tr:target{background:#fff3b0}details{margin:.6em 0}
"""


def fmt(value, digits: int = 3) -> str:
    """Numbers to short text: NaN -> '-', floats with ``digits`` significant decimals, others as str."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return "-"
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def case_anchor(case_id) -> str:
    return "case-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in str(case_id))


def _png(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def hover_data_map(y: np.ndarray, x: np.ndarray, regions: np.ndarray, ids: Sequence, *, xlabel: str, ylabel: str,
                   name: str = "datamap", dpi: int = 110) -> tuple[bytes, str]:
    """The data map (:func:`plots.data_map_figure`) as PNG bytes, and an image map whose areas carry each
    point's id and values as a tooltip and link to the case's row in the case table (none beyond
    :data:`MAX_ROWS` points)."""
    fig, ax = data_map_figure(y, x, regions, xlabel=xlabel, ylabel=ylabel, figsize=(5.6, 4.6))
    fig.canvas.draw()
    height = fig.get_size_inches()[1] * dpi
    ok = np.isfinite(x) & np.isfinite(y) & (len(ids) <= MAX_ROWS)
    pts = ax.transData.transform(np.column_stack([x, y])[ok]) * (dpi / fig.dpi) if ok.any() else np.zeros((0, 2))
    png = _png(fig, dpi)
    areas = []
    for (px, py), i in zip(pts, np.flatnonzero(ok)):
        tip = f"{ids[i]}: {ylabel} {fmt(float(y[i]))}, {xlabel} {fmt(float(x[i]))}, {regions[i]}"
        areas.append(f'<area shape="circle" coords="{px:.0f},{height - py:.0f},5" href="#{case_anchor(ids[i])}" '
                     f'title="{html.escape(tip)}" alt="{html.escape(str(ids[i]))}">')
    return png, f'<map name="{name}">' + "".join(areas) + "</map>"


class Report:
    """Sections appended in order; :meth:`html` and :meth:`markdown` render the same content."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._html: list[str] = []
        self._md: list[str] = [f"# {title}", ""]
        self.n_images = 0

    # ------------------------------------------------------------------ text
    def heading(self, text: str, level: int = 2, anchor: str | None = None) -> None:
        ident = f' id="{anchor}"' if anchor else ""
        self._html.append(f"<h{level}{ident}>{html.escape(text)}</h{level}>")
        self._md += ["#" * level + " " + text, ""]

    def para(self, text: str, note: bool = False, markdown: bool = True) -> None:
        cls = ' class="note"' if note else ""
        self._html.append(f"<p{cls}>{html.escape(text)}</p>")
        if markdown:
            self._md += [text, ""]

    def bullets(self, items: Sequence[str]) -> None:
        self._html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        self._md += [f"- {i}" for i in items] + [""]

    # ------------------------------------------------------------------ tables
    def table(self, frame: pd.DataFrame, caption: str | None = None, *, index: bool = False,
              anchors: Sequence[str] | None = None, region_column: str | None = None, markdown: bool = True,
              collapsed: str | None = None, table_id: str | None = None, digits: dict | None = None) -> None:
        """``frame`` as an HTML table (and a markdown table); values go through :func:`fmt` (``digits``:
        decimals per column, default 3)."""
        frame = frame.reset_index() if index else frame
        digits = {str(c): d for c, d in (digits or {}).items()}
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
        rows = []
        for r, values in enumerate(frame.itertuples(index=False)):
            cells = []
            for c, v in zip(frame.columns, values):
                cls = f' class="{html.escape(str(v))}"' if c == region_column else ""
                cells.append(f"<td{cls}>{html.escape(fmt(v, digits.get(str(c), 3)))}</td>")
            ident = f' id="{anchors[r]}"' if anchors is not None else ""
            rows.append(f"<tr{ident}>{''.join(cells)}</tr>")
        tid = f' id="{table_id}"' if table_id else ""
        body = f"<table{tid}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if caption:
            body = f'<p class="note">{html.escape(caption)}</p>' + body
        if collapsed:  # open up to 200 rows; Chromium also opens it when a link targets a row inside
            state = " open" if len(frame) <= 200 else ""
            body = f"<details{state}><summary>{html.escape(collapsed)}</summary>{body}</details>"
        self._html.append(body)
        if markdown:
            if caption:
                self._md += [caption, ""]
            self._md += [markdown_table(frame, digits), ""]

    def case_table(self, frame: pd.DataFrame, caption: str, source: str) -> None:
        """Every case, rows anchored for the data map's links; beyond :data:`MAX_ROWS` a note instead."""
        if len(frame) > MAX_ROWS:
            self.para(f"{len(frame)} rows: too many for one page; every value is in {source}.", note=True)
            return
        self.table(frame, anchors=[case_anchor(i) for i in frame["id"]], region_column="region", markdown=False,
                   collapsed=caption, table_id="cases")

    # ------------------------------------------------------------------ images
    def _img(self, png: bytes, alt: str, usemap: str | None = None) -> str:
        self.n_images += 1
        use = f' usemap="#{usemap}"' if usemap else ""
        return f'<img src="{png_data_uri(png)}" alt="{html.escape(alt)}"{use}>'

    def figures(self, figs: Sequence[tuple], maps: Sequence[str] = ()) -> None:
        """Side by side: ``(png, caption)`` or ``(png, caption, usemap)``, the name of one of ``maps``."""
        parts = []
        for png, caption, *usemap in figs:
            img = self._img(png, caption, usemap[0] if usemap else None)
            parts.append(f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>")
        self._html.append('<div class="figs">' + "".join(parts) + "</div>" + "".join(maps))
        self._md += [f"- figure: {fig[1]}" for fig in figs] + [""]

    def gallery(self, title: str, items: Sequence[tuple[bytes | None, str]], css: str = "") -> None:
        """A row of thumbnails with captions; ``None`` shows a placeholder."""
        cells = []
        for png, caption in items:
            inner = self._img(png, caption) if png is not None else '<div class="missing">no image</div>'
            cells.append(f'<div class="thumb">{inner}{html.escape(caption)}</div>')
        cls = f' class="{css}"' if css else ""
        self._html.append(f"<h3{cls}>{html.escape(title)}</h3><div class=\"gallery\">{''.join(cells)}</div>")
        self._md += [f"**{title}**: " + "; ".join(c for _, c in items), ""]

    # ------------------------------------------------------------------ output
    def html(self) -> str:
        swatches = " ".join(f'<span class="{r}">&#9679; {r}</span>' for r in REGION_COLOURS if r != "unscored")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1><p class=\"note\">regions: {swatches}</p>"
                + "\n".join(self._html) + "</body></html>\n")

    def markdown(self) -> str:
        return "\n".join(self._md).rstrip() + "\n"


def markdown_table(frame: pd.DataFrame, digits: dict | None = None) -> str:
    cols = [str(c) for c in frame.columns]
    digits = digits or {}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for values in frame.itertuples(index=False):
        cells = [fmt(v, digits.get(c, 3)).replace("|", "\\|") for c, v in zip(cols, values)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
