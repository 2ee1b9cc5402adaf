"""The DAD paper's figures: the moving-distance curve and the data map (variability vs DAD)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REGION_COLOURS = {"easy": "tab:green", "ambiguous": "tab:blue", "hard": "tab:red", "unscored": "tab:grey"}


def plot_moving_distance(L: np.ndarray, epochs: np.ndarray, stop_epoch: int | None, path: Path,
                         threshold: float = 0.01) -> Path:
    """Moving distance L (Eq. 7) at the end of each window, the 1 % line and the stop epoch."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ok = np.isfinite(L)
    ax.plot(epochs[ok], L[ok], marker="o", label="moving distance L")
    if ok.any():
        ax.axhline(threshold * np.nanmax(L), color="grey", ls="--", lw=1, label=f"{threshold:g} x L_max")
    if stop_epoch is not None:
        ax.axvline(stop_epoch, color="tab:red", lw=1, label=f"stop (epoch {stop_epoch})")
    ax.set_xlabel("epoch (end of window)")
    ax.set_ylabel("L")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_data_map(dad: np.ndarray, sigma: np.ndarray, regions: np.ndarray, path: Path) -> Path:
    """Data map: x = variability sigma, y = DAD, one colour per region."""
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for region, colour in REGION_COLOURS.items():
        sel = regions == region
        if sel.any():
            ax.scatter(sigma[sel], dad[sel], s=14, c=colour, label=f"{region} ({int(sel.sum())})", alpha=0.8)
    ax.set_xlabel("variability (sigma)")
    ax.set_ylabel("DAD")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_dad_plots(table, summary: dict, folder: Path, window: int, threshold: float) -> None:
    """``moving_distance.png`` and ``data_map.png`` from a score table and its summary."""
    L = np.array([np.nan if v is None else v for v in summary["moving_distance"]])
    epochs = (np.arange(len(L)) + 1) * window - 1
    plot_moving_distance(L, epochs, summary["stop_epoch"], folder / "moving_distance.png", threshold)
    plot_data_map(table["dad"].to_numpy(float), table["sigma"].to_numpy(float), table["region"].to_numpy(str),
                  folder / "data_map.png")
