"""The trainer's epoch line and plots: the line from nnU-Net's logged values, the DAD panel in
progress.png, and the DAD plots unaffected by the seaborn style nnU-Net's stock logger sets."""

import math

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
from nnunetv2.training.logging.nnunet_logger import LocalLogger

from nnunet_diet.nnunet.logger import DADLocalLogger
from nnunet_diet.nnunet.progress import TAG, epoch_line
from nnunet_diet.report.plots import write_dad_plots


def _logged(logger: LocalLogger, epochs: int, window: int = 5) -> dict:
    """What nnUNetTrainerDAD logs: nnU-Net's keys plus the DAD keys, one value per epoch."""
    log = logger.my_fantastic_logging
    log["dad_mean_dice"], log["dad_moving_distance"] = [], []
    for e in range(epochs):
        log["mean_fg_dice"].append(0.5 + e / 100)
        log["ema_fg_dice"].append(0.5 + e / 120)
        log["dice_per_class_or_region"].append([0.4 + e / 100, 0.6])
        log["train_losses"].append(-e / 50)
        log["val_losses"].append(-e / 60)
        log["lrs"].append(3e-3 * (1 - e / epochs) ** 0.9)
        log["epoch_start_timestamps"].append(100.0 + 7 * e)
        log["epoch_end_timestamps"].append(100.0 + 7 * e + 6)
        log["dad_mean_dice"].append(0.3 + e / 60)
        log["dad_moving_distance"].append(8 / (e + 1) if (e + 1) % window == 0 else np.nan)
    return log


def test_epoch_line_reports_loss_dice_time_and_L_at_window_ends():
    log = _logged(LocalLogger(), 12)
    line = epoch_line(log, 4, 50)
    assert line.startswith(f"{TAG} 5/50: train loss -0.0800, pseudo Dice 0.440 0.600, 6.0 s")
    assert "about 5 min left" in line and line.endswith("L 1.6")  # 45 epochs at 7 s each; L = 8 / 5
    assert "L " not in epoch_line(log, 5, 50) and "left" in epoch_line(log, 0, 50)
    assert epoch_line(log, 9, 10, stop_fired=True).endswith("L 0.8; DAD stop rule fired")
    assert "left" not in epoch_line(log, 9, 10)
    assert "(at most about 5 min left)" in epoch_line(log, 4, 50, may_stop=True)  # the stop rule may end it sooner


def test_progress_png_gets_a_dad_panel_and_leaves_the_global_style_alone(tmp_path):
    before = dict(matplotlib.rcParams)
    logger = DADLocalLogger()
    _logged(logger, 12)
    logger.plot_progress_png(str(tmp_path))
    height, width = matplotlib.image.imread(tmp_path / "progress.png").shape[:2]
    assert (width, height) == (3000, 7200)  # nnU-Net's three 30 x 18 inch panels and the DAD panel
    assert dict(matplotlib.rcParams) == before


def test_progress_png_every_k_epochs_and_when_forced(tmp_path):
    logger = DADLocalLogger(plot_every=5)
    png = tmp_path / "progress.png"
    _logged(logger, 4)
    logger.plot_progress_png(str(tmp_path))
    assert not png.exists()  # 4 epochs logged: not a multiple of 5
    logger.plot_progress_png(str(tmp_path), force=True)  # what the trainer asks at the end of training
    assert png.is_file() and logger.plotted_epochs == 4
    png.unlink()
    logger.plot_progress_png(str(tmp_path), force=True)
    assert not png.exists()  # these 4 epochs are drawn already
    logger.my_fantastic_logging = LocalLogger().my_fantastic_logging
    _logged(logger, 5)  # 5 epochs logged: drawn
    logger.plot_progress_png(str(tmp_path))
    assert png.is_file() and logger.plotted_epochs == 5


def test_dad_plots_look_the_same_after_nnunets_stock_logger_styled_the_process(tmp_path):
    table = pd.DataFrame({"dad": np.linspace(0.1, 0.9, 20), "sigma": np.linspace(0.05, 0.2, 20),
                          "region": ["hard"] * 4 + ["ambiguous"] * 12 + ["easy"] * 4})
    summary = {"moving_distance": [8.0, 3.0, None, 0.5], "stop_epoch": None}
    clean, styled = tmp_path / "clean", tmp_path / "styled"
    clean.mkdir()
    styled.mkdir()
    write_dad_plots(table, summary, clean, window=5, threshold=0.01)
    stock = LocalLogger()
    _logged(stock, 3)
    with matplotlib.rc_context():  # restores this test process's style afterwards
        stock.plot_progress_png(str(tmp_path))  # seaborn.set(font_scale=2.5) for the whole process
        assert math.isclose(matplotlib.rcParams["font.size"], 30)
        write_dad_plots(table, summary, styled, window=5, threshold=0.01)
    for png in ("data_map.png", "moving_distance.png"):
        assert (clean / png).read_bytes() == (styled / png).read_bytes()
