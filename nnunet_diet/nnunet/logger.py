"""nnU-Net's local logger with the DAD curves in ``progress.png`` and without a global plot style.

nnU-Net's ``LocalLogger.plot_progress_png`` draws three panels (losses and pseudo Dice, epoch time,
learning rate) after ``seaborn.set(font_scale=2.5)``, which changes matplotlib's style for the whole
process (the trainer's own plots were drawn under it). This logger draws the same three panels under
the same seaborn style as a context (nothing leaks) and a fourth: the mean per-case training Dice the
DAD trainer records each epoch and the moving distance L at the end of each window (logged keys
``dad_mean_dice`` and ``dad_moving_distance``). With ``plot_every`` k > 1 it redraws only every k epochs
(and when the trainer asks at the end of training): one redraw of the 3000 x 7200 px figure takes about
1.3 s of CPU, a quarter of a 10-iteration CPU epoch (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from nnunetv2.training.logging.nnunet_logger import LocalLogger  # noqa: E402

# seaborn's "deep" colours under nnU-Net's single-letter names (what seaborn.set() maps them to)
COLOURS = dict(zip("bgrm", (sns.color_palette("deep")[i] for i in (0, 2, 3, 4))))


class DADLocalLogger(LocalLogger):
    """Set as ``MetaLogger.local_logger`` by ``nnUNetTrainerDAD``, which adds the DAD keys it logs."""

    def __init__(self, verbose: bool = False, plot_every: int = 1) -> None:
        super().__init__(verbose)
        self.plot_every = plot_every
        self.plotted_epochs = 0  # epochs shown in the last progress.png drawn

    def plot_progress_png(self, output_folder: str, force: bool = False) -> None:
        """nnU-Net calls this after every epoch; drawn when the logged epochs are a multiple of
        ``plot_every``, or with ``force`` when the last drawing does not show them all yet."""
        log = self.my_fantastic_logging
        n = min(len(v) for v in log.values())
        if not n or n == self.plotted_epochs or (n % self.plot_every and not force):
            return
        self.plotted_epochs = n
        epochs = np.arange(n)
        b, g, r = COLOURS["b"], COLOURS["g"], COLOURS["r"]
        with sns.axes_style("darkgrid"), sns.plotting_context("notebook", font_scale=2.5):
            fig, axes = plt.subplots(4, 1, figsize=(30, 72))
            ax, ax2 = axes[0], axes[0].twinx()
            ax.plot(epochs, log["train_losses"][:n], color=b, ls="-", label="loss_tr", linewidth=4)
            ax.plot(epochs, log["val_losses"][:n], color=r, ls="-", label="loss_val", linewidth=4)
            ax2.plot(epochs, log["mean_fg_dice"][:n], color=g, ls="dotted", label="pseudo dice", linewidth=3)
            ax2.plot(epochs, log["ema_fg_dice"][:n], color=g, ls="-", label="pseudo dice (mov. avg.)", linewidth=4)
            ax.set(xlabel="epoch", ylabel="loss")
            ax2.set_ylabel("pseudo dice")
            ax.legend(loc=(0, 1))
            ax2.legend(loc=(0.2, 1))
            seconds = np.subtract(log["epoch_end_timestamps"][:n], log["epoch_start_timestamps"][:n])
            axes[1].plot(epochs, seconds, color=b, ls="-", label="epoch duration", linewidth=4)
            axes[1].set(ylim=(0, axes[1].get_ylim()[1]), xlabel="epoch", ylabel="time [s]")
            axes[1].legend(loc=(0, 1))
            axes[2].plot(epochs, log["lrs"][:n], color=b, ls="-", label="learning rate", linewidth=4)
            axes[2].set(xlabel="epoch", ylabel="learning rate")
            axes[2].legend(loc=(0, 1))
            self._plot_dad(axes[3], epochs)
            fig.tight_layout()
            fig.savefig(Path(output_folder) / "progress.png")
            plt.close(fig)

    def _plot_dad(self, ax, epochs: np.ndarray) -> None:
        """Mean per-case training Dice per epoch (left axis) and L at each window end (right axis)."""
        n = len(epochs)
        dice = np.array(self.my_fantastic_logging["dad_mean_dice"][:n], dtype=float)
        L = np.array(self.my_fantastic_logging["dad_moving_distance"][:n], dtype=float)
        ax.plot(epochs, dice, color=COLOURS["g"], ls="-", label="mean per-case training Dice (DAD records)",
                linewidth=4)
        ax.set(xlabel="epoch", ylabel="per-case Dice")
        ax.legend(loc=(0, 1))
        ends = np.isfinite(L)
        if ends.any():
            ax2 = ax.twinx()
            ax2.plot(epochs[ends], L[ends], color=COLOURS["m"], marker="o", ms=14, ls="-", label="moving distance L",
                     linewidth=4)
            ax2.set_ylabel("L")
            ax2.legend(loc=(0.5, 1))
