"""One compact line per epoch from ``nnUNetTrainerDAD`` (no torch or nnU-Net import: the CLI reads the tag).

nnU-Net prints five or six lines an epoch (loss, val loss, pseudo Dice, epoch time, best EMA); this line
gathers what a user watching a run needs, plus the DAD moving distance L at the end of each window, and
starts with :data:`TAG` so that ``nnunet-diet pipeline`` can show it on the terminal while nnU-Net's full
output goes to the log file; so do the trainer's lines around nnU-Net's final validation (:data:`VALIDATION_TAG`),
a minute of no epoch lines on a CPU.
"""

from __future__ import annotations

import math

TAG = "nnunet-diet epoch"
VALIDATION_TAG = "nnunet-diet validation"  # the lines before and after nnU-Net's final validation


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def epoch_line(log: dict, epoch: int, num_epochs: int, *, stop_fired: bool = False, may_stop: bool = False) -> str:
    """``nnunet-diet epoch 12/50: train loss -0.512, pseudo Dice 0.71 0.65, 6.1 s (about 4 min left), L 0.42``
    from nnU-Net's logged values (``LocalLogger.my_fantastic_logging``) of ``epoch`` (0-based); ``may_stop``:
    the stop rule can end the run earlier, so the time left is "at most"."""
    ends = log["epoch_end_timestamps"]
    seconds = ends[epoch] - log["epoch_start_timestamps"][epoch]
    k = min(epoch, 5)  # pace of the last epochs, checkpoints and plots included (a resumed run has a gap before)
    left = ((ends[epoch] - ends[epoch - k]) / k if k else seconds) * (num_epochs - epoch - 1)
    dice = " ".join(f"{d:.3f}" for d in log["dice_per_class_or_region"][epoch])
    parts = [f"{TAG} {epoch + 1}/{num_epochs}: train loss {log['train_losses'][epoch]:.4f}",
             f"pseudo Dice {dice}",
             f"{seconds:.1f} s" + (f" ({'at most ' if may_stop else ''}about {_minutes(left)} left)" if left else "")]
    L = log.get("dad_moving_distance", [])
    if epoch < len(L) and L[epoch] is not None and math.isfinite(L[epoch]):
        parts.append(f"L {L[epoch]:.4g}")
    line = ", ".join(parts)
    return line + ("; DAD stop rule fired" if stop_fired else "")
