"""The DAD paper's figures: the moving-distance curve and the data map (variability vs DAD)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REGION_COLOURS = {"easy": "tab:green", "ambiguous": "tab:blue", "hard": "tab:red", "unscored": "tab:grey"}


def plot_moving_distance(L: np.ndarray, epochs: np.ndarray, stop_epoch: int | None, path: Path,
                         threshold: float | None = 0.01, dpi: int = 120) -> Path:
    """Moving distance L (Eq. 7) at the end of each window, the paper rule's threshold line (None: another
    stop rule, no line) and the stop epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ok = np.isfinite(L)
    ax.plot(epochs[ok], L[ok], marker="o", label="moving distance L")
    if ok.any() and threshold is not None:
        ax.axhline(threshold * np.nanmax(L), color="grey", ls="--", lw=1, label=f"{threshold:g} x L_max")
    if stop_epoch is not None:
        ax.axvline(stop_epoch, color="tab:red", lw=1, label=f"stop (epoch {stop_epoch})")
    ax.set_xlabel("epoch (end of window)")
    ax.set_ylabel("L")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def data_map_figure(dad: np.ndarray, sigma: np.ndarray, regions: np.ndarray, *, xlabel: str = "variability (sigma)",
                    ylabel: str = "DAD", figsize: tuple[float, float] = (5, 4.5)):
    """The data map's ``(figure, axes)``, laid out, for callers that add to it or need point positions."""
    fig, ax = plt.subplots(figsize=figsize)
    for region, colour in REGION_COLOURS.items():
        sel = regions == region
        if sel.any():
            ax.scatter(sigma[sel], dad[sel], s=14, c=colour, label=f"{region} ({int(sel.sum())})", alpha=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, ax


def plot_data_map(dad: np.ndarray, sigma: np.ndarray, regions: np.ndarray, path: Path) -> Path:
    """Data map: x = variability sigma, y = DAD, one colour per region."""
    fig, _ = data_map_figure(dad, sigma, regions)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_dad_curves(dice: np.ndarray, dad: np.ndarray, window: int, labels: list[str], regions: list[str],
                    path, stop_epoch: int | None = None) -> object:
    """DAD over epochs for a few cases: per-epoch Dice (thin) and DAD at the end of each window (markers).

    ``dice``: cases x epochs; ``dad``: windows x cases; ``labels`` / ``regions``: one per case.
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ends = (np.arange(dad.shape[0]) + 1) * window - 1
    epochs = np.arange(dice.shape[1])
    for i, (label, region) in enumerate(zip(labels, regions)):
        colour = REGION_COLOURS.get(region, "black")
        ok = np.isfinite(dice[i])
        ax.plot(epochs[ok], dice[i][ok], color=colour, lw=0.6, alpha=0.35)
        ax.plot(ends, dad[:, i], color=colour, marker="o", ms=3, lw=1.4, label=f"{label} ({region})")
    if stop_epoch is not None:
        ax.axvline(stop_epoch, color="tab:red", lw=1, ls=":")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Dice (thin) / DAD (markers)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return path


def write_dad_plots(table, summary: dict, folder: Path, window: int, threshold: float | None) -> None:
    """``moving_distance.png`` and ``data_map.png`` from a score table and its summary, in matplotlib's
    default style whatever style the process set (nnU-Net's stock logger sets seaborn's, font scale 2.5)."""
    L = np.array([np.nan if v is None else v for v in summary["moving_distance"]])
    epochs = (np.arange(len(L)) + 1) * window - 1
    with plt.style.context("default"):
        plot_moving_distance(L, epochs, summary["stop_epoch"], folder / "moving_distance.png", threshold)
        plot_data_map(table["dad"].to_numpy(float), table["sigma"].to_numpy(float),
                      table["region"].to_numpy(str), folder / "data_map.png")
