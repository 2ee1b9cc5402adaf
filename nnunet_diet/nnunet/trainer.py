"""``nnUNetTrainerDAD``: nnU-Net's trainer plus per-case training dynamics and the DAD stop rule.

Only recording and stopping are added (:class:`DADRecordingMixin`); training itself is nnU-Net's.
Each DAD trainer is the mixin put in front of an nnU-Net trainer class (the default trainer,
``nnUNetTrainerVanillaAdam``, ``nnUNetTrainerNoDeepSupervision``; any other in one line). Each
training iteration adds per-case TP/FP/FN and error-norm sums, taken from the highest-resolution
output the loss already used, to an epoch accumulator; each epoch records per-case Dice, EL2N and
EL2Nx in the dynamics store (``<fold>/dad/dynamics.npz``, rewritten atomically every epoch); every
Delta t epochs DAD, sigma and the moving distance L are computed by the core library and logged.
When the stop rule fires the run ends cleanly (``checkpoint_final.pth``; ``dad/state.json``
remembers the stop so that ``--c`` does not train on); checkpoints are renamed into place, so a run
killed while writing one continues from the one before. Optional exact mode (:mod:`.exact`) adds
``*_exact`` series measured every k epochs on fixed patches. Settings: :mod:`nnunet_diet.nnunet.config`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.training.nnUNetTrainer.variants.network_architecture.nnUNetTrainerNoDeepSupervision import (
    nnUNetTrainerNoDeepSupervision,
)
from nnunetv2.training.nnUNetTrainer.variants.optimizer.nnUNetTrainerAdam import nnUNetTrainerVanillaAdam

from ..core.atomic import atomic_write_text
from ..core.dad import dad_trajectory
from ..core.errors import DietError
from ..core.stop_rules import stop_test
from ..core.store import DynamicsStore
from ..recording import EpochAccumulator
from .config import DADConfig, centre_of
from .exact import ExactEvaluator
from .logger import DADLocalLogger
from .outputs import write_outputs
from .progress import VALIDATION_TAG, epoch_line
from .recorder import case_values, patch_sums

LOG_KEYS = ("dad_mean_dice", "dad_moving_distance")


class _DADStop(Exception):
    """Raised after the epoch at which the stop rule fired, to leave nnU-Net's epoch loop."""


class _RecordingLoss(torch.nn.Module):
    """The trainer's loss, unchanged, plus a look at (output, target) during training steps."""

    def __init__(self, loss: torch.nn.Module, trainer: DADRecordingMixin) -> None:
        super().__init__()
        self.loss = loss
        self._trainer = [trainer]  # a list: not registered as a submodule

    def forward(self, output, target):
        value = self.loss(output, target)
        trainer = self._trainer[0]
        if trainer._dad_keys is not None:
            out = output[0] if isinstance(output, (list, tuple)) else output
            tgt = target[0] if isinstance(target, (list, tuple)) else target
            trainer._dad_acc.update(trainer._dad_keys, patch_sums(out, tgt, trainer.label_manager,
                                                                  error_norms=trainer.dad_config.error_norms))
        return value


def _respect_omp_threads(device: torch.device) -> None:
    """``nnUNetv2_train -device cpu`` sets torch to ``multiprocessing.cpu_count()`` threads whatever
    ``OMP_NUM_THREADS`` says; a user who set it (e.g. to share the CPU between jobs) gets that count back.
    On a shared 2-core machine the overridden 2 threads per training made each training several times
    slower (threads waiting for each other at every parallel region; docs/benchmarks.md, 2026-12-01)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    if device.type == "cpu" and value.isdigit() and int(value) > 0 and torch.get_num_threads() != int(value):
        torch.set_num_threads(int(value))


class DADRecordingMixin:
    """DAD recording and the stop rule for any nnU-Net trainer: put it first among the bases.

    ``class nnUNetTrainerDADNoDeepSupervision(DADRecordingMixin, nnUNetTrainerNoDeepSupervision)`` is a
    complete trainer: the mixin only hooks nnU-Net's epoch callbacks and wraps the loss, so whatever the
    other base changes (optimiser, network, loss, schedule) is trained as that variant trains it.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        _respect_omp_threads(self.device)
        self.dad_config = DADConfig.from_env()
        self.dad_folder = Path(self.output_folder) / "dad" if self.output_folder else None
        self.dad_store: DynamicsStore | None = None
        self.dad_stop_epoch: int | None = None
        self._dad_acc: EpochAccumulator | None = None
        self._dad_keys = None
        self._dad_exact: ExactEvaluator | None = None
        self._dad_exact_seconds = 0.0  # exact mode's evaluations in this process (the summary's time figures)
        self.logger.local_logger = DADLocalLogger(self.logger.local_logger.verbose,  # DAD panel in progress.png
                                                  plot_every=self.dad_config.plot_every)

    # ------------------------------------------------------------------ set-up
    def initialize(self):
        super().initialize()
        self.loss = _RecordingLoss(self.loss, self)

    def _state_file(self) -> Path:
        return self.dad_folder / "state.json"

    def on_train_start(self):
        super().on_train_start()
        self.print_to_log_file(f"nnunet-diet DAD settings: {self.dad_config.describe()}", also_print_to_console=True)
        local = getattr(self.logger, "local_logger", self.logger)
        for key in LOG_KEYS:
            if key not in local.my_fantastic_logging:
                local.my_fantastic_logging[key] = [np.nan] * self.current_epoch
        train_ids = [str(k) for k in self.do_split()[0]]
        series = self.dad_config.series
        groups = centre_of(train_ids, self.dad_config.centres)
        self._dad_acc = EpochAccumulator(train_ids, self.device)
        self.dad_folder.mkdir(parents=True, exist_ok=True)
        store_file = self.dad_folder / "dynamics.npz"
        fresh = DynamicsStore(train_ids, series, groups=groups, capacity=self.num_epochs, metadata={
            "source": "nnUNetTrainerDAD", "trainer": self.__class__.__name__, "fold": self.fold,
            "configuration": self.configuration_name, "plans": self.plans_manager.plans_name,
            "dataset": self.plans_manager.dataset_name, "num_epochs": self.num_epochs,
            "num_iterations_per_epoch": self.num_iterations_per_epoch, "dad": vars(self.dad_config)})
        if self.current_epoch > 0 and store_file.is_file():  # --c: continue the records of this run
            self.dad_store, self.dad_stop_epoch = self._resumed_records(store_file, fresh)
        else:
            self.dad_store = fresh
            if self.local_rank == 0:
                self._state_file().unlink(missing_ok=True)
        if self.dad_config.exact_every:
            if self.is_cascaded:
                raise DietError("exact mode (NNUNET_DIET_EXACT_EVERY) does not support cascade configurations")
            dataset_tr = self.get_tr_and_val_datasets()[0]
            self._dad_exact = ExactEvaluator(dataset_tr, train_ids, self.configuration_manager.patch_size,
                                             self.label_manager, batch_size=self.batch_size,
                                             error_norms=self.dad_config.error_norms)
        if self.dad_stop_epoch is not None and self.dad_config.stop:
            self.print_to_log_file(f"DAD stop rule fired at epoch {self.dad_stop_epoch}: not training on",
                                   also_print_to_console=True)
            raise _DADStop

    def _resumed_records(self, store_file: Path, fresh: DynamicsStore) -> tuple[DynamicsStore, int | None]:
        """The records of a run resumed with ``--c``: the saved store cut back to the checkpoint's epoch,
        merged into ``fresh`` (this run's series and settings; a series new to this run starts empty), and
        the saved stop epoch if the checkpoint is at or after it (else the stop is found again)."""
        store = DynamicsStore.load(store_file)
        if sorted(store.ids) != sorted(fresh.ids):
            raise DietError(f"{store_file}: recorded cases differ from the training cases of fold {self.fold}")
        store.truncate(self.current_epoch)  # epochs after the checkpoint are trained (and recorded) again
        state = json.loads(self._state_file().read_text()) if self._state_file().is_file() else {}
        stop = state.get("stop_epoch")
        if stop is not None and stop >= self.current_epoch:  # stop recorded, then killed before its checkpoint
            self.print_to_log_file(f"DAD: the stop at epoch {stop} is past the checkpoint (epoch "
                                   f"{self.current_epoch}); training on from the checkpoint")
            stop = None
        return DynamicsStore.merge([store, fresh]), stop

    # ------------------------------------------------------------------ recording
    def train_step(self, batch: dict) -> dict:
        self._dad_keys = [str(k) for k in batch["keys"]]
        try:
            return super().train_step(batch)
        finally:
            self._dad_keys = None

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        ids, sums, _ = self._dad_acc.aggregate()
        if ids:
            self.dad_store.record(self.current_epoch, ids, case_values(sums))
        self._dad_acc.reset()
        k = self.dad_config.exact_every
        if k and (self.current_epoch + 1) % k == 0:
            self._record_exact()
        dice = self.dad_store["dice"][:, self.current_epoch] if self.current_epoch < self.dad_store.n_epochs \
            else np.array([np.nan])
        self.logger.log("dad_mean_dice", float(np.nanmean(dice)) if np.isfinite(dice).any() else np.nan,
                        self.current_epoch)
        self._dad_window_end()

    def _record_exact(self) -> None:
        t0 = time.time()
        network = self.network.module if self.is_ddp else self.network
        network = getattr(network, "_orig_mod", network)  # torch.compile wrapper
        rank, world = (self.local_rank, torch.distributed.get_world_size()) if self.is_ddp else (0, 1)
        ids, sums, _ = self._dad_exact.evaluate(network, self.device, rank=rank, world_size=world).aggregate()
        self.dad_store.record(self.current_epoch, ids, {f"{k}_exact": v for k, v in case_values(sums).items()})
        seconds = time.time() - t0
        self._dad_exact_seconds += seconds
        self.print_to_log_file(f"DAD exact mode: {len(ids)} cases evaluated on fixed patches in {seconds:.1f} s")

    def _dad_window_end(self) -> None:
        cfg = self.dad_config
        epoch = self.current_epoch
        L_now = np.nan
        if (epoch + 1) % cfg.window == 0 and np.isfinite(self.dad_store[cfg.dad_series]).any():
            traj = dad_trajectory(self.dad_store[cfg.dad_series], cfg.window, ignore_zeros=cfg.ignore_zeros,
                                  absolute=cfg.absolute, threshold=cfg.threshold, patience=cfg.patience,
                                  rule=cfg.stop_rule, rate=cfg.rate)
            L_now = traj.moving_distance[-1]
            L_max = np.nanmax(traj.moving_distance) if np.isfinite(traj.moving_distance).any() else np.nan
            test = stop_test(cfg.stop_rule, cfg.threshold, cfg.patience)
            self.print_to_log_file(f"DAD window ending at epoch {epoch}: moving distance L = {L_now:.4g} "
                                   f"(L_max so far {L_max:.4g}); stop rule {cfg.stop_rule}: criterion "
                                   f"{traj.criterion[-1]:.4g} ({test})")
            if traj.stop is not None and self.dad_stop_epoch is None:
                self.dad_stop_epoch = traj.stop_epoch
                self.print_to_log_file(f"DAD stop rule {cfg.stop_rule} fired at epoch {traj.stop_epoch}"
                                       + ("; stopping" if cfg.stop else "; training on (NNUNET_DIET_STOP=0)"),
                                       also_print_to_console=True)
        self.logger.log("dad_moving_distance", float(L_now), epoch)
        if self.local_rank == 0:
            self.dad_store.save(self.dad_folder / "dynamics.npz")
            atomic_write_text(self._state_file(), json.dumps({"stop_epoch": self.dad_stop_epoch,
                                                              "recorded_epochs": self.dad_store.n_epochs}))

    def on_epoch_end(self):
        epoch = self.current_epoch
        super().on_epoch_end()
        if self.local_rank == 0:
            self.print_to_log_file(epoch_line(self.logger.local_logger.my_fantastic_logging, epoch, self.num_epochs,
                                              stop_fired=self.dad_stop_epoch == epoch, may_stop=self.dad_config.stop))
        if self.dad_config.stop and self.dad_stop_epoch is not None and self.dad_stop_epoch <= epoch:
            raise _DADStop

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, written to ``<filename>.partial`` and renamed over ``filename``: a run killed
        while it writes one (every epoch in the short variants) keeps the previous checkpoint for ``--c``."""
        partial = f"{filename}.partial"
        super().save_checkpoint(partial)
        if self.local_rank == 0 and os.path.isfile(partial):  # not written when checkpointing is disabled
            with open(partial, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(partial, filename)

    # ------------------------------------------------------------------ end
    def _dad_seconds(self) -> dict:
        """Wall time of the trained epochs (nnU-Net's epoch timestamps: training, validation and exact mode)
        and of exact mode's evaluations among them (those of this process: a run resumed with ``--c``
        counts its earlier epochs, not their evaluations)."""
        log = self.logger.local_logger.my_fantastic_logging
        spans = [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])
                 if s is not None and e is not None]
        return {"epochs": float(np.nansum(spans)), "exact_mode": self._dad_exact_seconds}

    def run_training(self):
        try:
            super().run_training()
        except _DADStop:
            self.on_train_end()

    def on_train_end(self):
        super().on_train_end()
        if self.local_rank == 0:  # the last epochs, when NNUNET_DIET_PLOT_EVERY skipped them
            self.logger.local_logger.plot_progress_png(self.output_folder, force=True)
        if self.local_rank == 0 and self.dad_store is not None and self.dad_store.n_epochs >= self.dad_config.window:
            write_outputs(self.dad_store, self.dad_config, self.dad_folder, num_epochs=self.num_epochs,
                          stop_epoch=self.dad_stop_epoch, seconds=self._dad_seconds())
            self.print_to_log_file(f"DAD scores, plots and summary written to {self.dad_folder}",
                                   also_print_to_console=True)
        elif self.local_rank == 0:
            self.print_to_log_file(f"DAD: fewer than {self.dad_config.window} epochs recorded; no scores written",
                                   also_print_to_console=True)

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnU-Net's final validation, or with ``NNUNET_DIET_FINAL_VALIDATION=0`` a line saying it was skipped
        (a run kept for its DAD scores only, e.g. ``nnunet-diet pipeline``'s scoring run, whose validation Dice
        nothing reads; ``nnUNetv2_train ... --val`` without the variable runs it later from
        ``checkpoint_final.pth``). Else the lines before and after it tell the pipeline's terminal it is running."""
        if not self.dad_config.final_validation:
            self.print_to_log_file(f"{VALIDATION_TAG}: nnU-Net's final validation skipped "
                                   "(NNUNET_DIET_FINAL_VALIDATION=0)", also_print_to_console=True)
            return
        t0 = time.time()
        if self.local_rank == 0:
            self.print_to_log_file(f"{VALIDATION_TAG}: nnU-Net's final validation of fold {self.fold} "
                                   f"({len(self.do_split()[1])} cases)", also_print_to_console=True)
        super().perform_actual_validation(save_probabilities)
        summary = Path(self.output_folder) / "validation" / "summary.json"
        if self.local_rank == 0 and summary.is_file():
            dice = json.loads(summary.read_text())["foreground_mean"]["Dice"]
            self.print_to_log_file(f"{VALIDATION_TAG}: mean foreground Dice {dice:.3f} ({time.time() - t0:.0f} s)",
                                   also_print_to_console=True)


class nnUNetTrainerDAD(DADRecordingMixin, nnUNetTrainer):
    """nnU-Net's default trainer (SGD, lr 1e-2, deep supervision) with DAD recording and the stop rule."""


class nnUNetTrainerDADAdam(DADRecordingMixin, nnUNetTrainerVanillaAdam):
    """DAD recording on nnU-Net's ``nnUNetTrainerVanillaAdam`` with the DAD paper's lr 3e-3 (poly schedule).

    On CPU with lite plans it leaves the all-background phase far sooner than nnU-Net's SGD
    (see docs/benchmarks.md), which the short CPU schedules need to produce a usable DAD ranking.
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 3e-3


class nnUNetTrainerDADNoDeepSupervision(DADRecordingMixin, nnUNetTrainerNoDeepSupervision):
    """DAD recording on nnU-Net's ``nnUNetTrainerNoDeepSupervision`` (the recipe for any other variant)."""
