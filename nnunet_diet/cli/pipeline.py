"""``nnunet-diet pipeline``: the DAD workflow end to end with the real nnU-Net commands.

Plan and preprocess a raw dataset, derive lite plans, train ``nnUNetTrainerDAD`` (a short variant) on
fold 0 until the DAD stop rule fires (by default: Spearman >= 0.8 between the exact-mode DAD rankings of
consecutive windows, two windows in a row; the summary says at which epoch and what the stop saved, in
epochs and in time), prune fold 0 by DAD (and at random, the baseline) into new folds, retrain the full
list (twice: the run-to-run spread) and the pruned lists with one schedule and print nnU-Net's validation
Dice of each side by side, then write the HTML report of the scoring run: the commands a user runs,
printed and run, with nnU-Net's folders under one output folder and its output in ``logs/`` (the terminal
shows one line per training epoch, tagged with its training). The scoring run trains alone with all the
cores (it is the one step everything else waits for), then the four retrainings run two at a time
(``--jobs``), each with half the cores. By default on the 40 real hippocampus cases shipped in
``nnunet_diet/examples/hippocampus40`` (CPU, lite plans, under 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.atomic import check_output
from ..core.errors import DietError, check_fraction
from ..core.stop_rules import STOP_RULES, check_stop_rule, stop_test
from ..nnunet.progress import TAG, VALIDATION_TAG
from ..nnunet.schedules import EPOCHS, ITERATIONS
from ..nnunet.splits import case_identifiers, load_or_create_splits, write_splits

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hippocampus40"
BIN = Path(sys.executable).parent
REPEAT = "full, trained again"
# The pipeline's stop setting where it differs from nnUNetTrainerDAD's defaults (docs/benchmarks.md, "make demo"):
# on the three hippocampus reference runs of the default schedule (50 epochs x 10 iterations, window 5), exact
# mode, Spearman >= 0.8 between consecutive windows in 2 windows in a row fired at epoch 29 in all three (40 % of
# the epochs saved, top-40 % overlap with the end 0.77), where the paper's rule fired at epochs 44-49 or never; the
# day's demo runs stopped at epochs 24-44. Exact mode costs ~25 % of an epoch: the saving in time is smaller.
PIPELINE_STOP = {"spearman": (0.8, 2)}  # rule -> (threshold, patience); other rules: the trainer's defaults


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run DAD end to end with nnU-Net: preprocess, train, prune, retrain",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="work folder (default demo_out)")
    p.add_argument("--raw", type=Path, default=EXAMPLE, help="nnU-Net raw dataset folder (default: the shipped "
                   "hippocampus40)")
    p.add_argument("--dataset-id", type=int, default=990, help="id given to the dataset (default 990)")
    p.add_argument("--epochs", type=int, choices=EPOCHS, default=50,
                   help="nominal epochs of the scoring run; the DAD stop rule ends it earlier when it fires "
                        "(default 50)")
    p.add_argument("--iterations", type=int, choices=ITERATIONS, default=10, help="training iterations per epoch")
    p.add_argument("--window", type=int, default=5, help="DAD window Delta t (default 5: this run is short)")
    p.add_argument("--stop-rule", choices=STOP_RULES, default="spearman",
                   help="stop rule of the scoring run (default spearman: the ranking of consecutive windows; "
                        "nnUNetTrainerDAD's own default is paper)")
    p.add_argument("--threshold", type=float, help="its threshold (default: spearman 0.8 here; the trainer's "
                   "default for the others: paper 0.01, kept 0.9, noise 1)")
    p.add_argument("--patience", type=int, help="windows in a row the rule must hold (default: 2 for spearman, 1 else)")
    p.add_argument("--exact-every", type=int, default=1, help="exact mode of the scoring run every k epochs: DAD "
                   "from fixed patches in eval mode (default 1; 0: online recording only, the DAD paper's)")
    p.add_argument("--rate", type=float, default=0.4, help="pruning rate (default 0.4, keep the ambiguous middle)")
    p.add_argument("--retrain-epochs", type=int, choices=EPOCHS, default=10,
                   help="epochs of every retraining: the full list, the DAD-pruned and the random list (default 10)")
    p.add_argument("--random", action=argparse.BooleanOptionalAction, default=True,
                   help="also retrain a random list of the pruned size (default: yes)")
    p.add_argument("--repeat-full", action=argparse.BooleanOptionalAction, default=True,
                   help="train the full list a second time: how much two identical runs differ (default: yes)")
    p.add_argument("--jobs", type=int, default=2, help="retrainings at a time after the scoring run, which trains "
                   "alone with nnU-Net's threads (default 2, each with cores / jobs torch threads unless "
                   "OMP_NUM_THREADS is set); 1: one after another with nnU-Net's threads")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.set_defaults(func=run)


def _step(title: str, args: list, env: dict, log: Path | None = None, label: str | None = None) -> None:
    """Print and run one command, its output on the terminal; with ``log``, as a :class:`_Job` (the output to
    ``log``, the trainer's tagged lines shown, tagged ``label``, by default the log's name)."""
    if log is not None:
        job = _Job(label or log.stem, title, args, env, log)
        try:
            job.run()
        finally:
            job.kill()  # after Ctrl-C: the command runs in its own process group
        return job.check()
    with _Job._print:
        print(f"\n== {title}\n$ {' '.join(shlex.quote(str(a)) for a in args)}", flush=True)
    t0 = time.time()
    returncode = subprocess.run([str(a) for a in args], env=env).returncode
    if returncode != 0:
        raise DietError(f"{title} failed (exit {returncode})")
    with _Job._print:
        print(f"   done in {time.time() - t0:.0f} s", flush=True)


class _Job:
    """One command that may run beside others: its output goes to ``log``, the trainer's epoch and validation
    lines are shown on the terminal with ``label`` in front; :meth:`run` blocks until it ends (call it from a
    thread)."""

    _print = threading.Lock()  # one line at a time from concurrent jobs

    def __init__(self, label: str, title: str, args: list, env: dict, log: Path) -> None:
        self.label, self.title, self.log = label, title, log
        self.cmd, self.env = [str(a) for a in args], dict(env, PYTHONUNBUFFERED="1")
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.seconds = 0.0
        self.done = threading.Event()

    def say(self, text: str) -> None:
        with self._print:
            print(text, flush=True)

    def run(self) -> None:
        self.say(f"\n== {self.title}\n$ {' '.join(shlex.quote(a) for a in self.cmd)}")
        t0 = time.time()
        try:
            with open(self.log, "w", buffering=1) as fh, subprocess.Popen(  # the log line by line: tail -f works
                    self.cmd, env=self.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    start_new_session=True) as self.proc:  # its own process group: stop() ends its workers too
                for line in self.proc.stdout:
                    fh.write(line)
                    tag = next((t for t in (TAG, VALIDATION_TAG) if t in line), None)
                    if tag:
                        self.say(f"   [{self.label}] " + line[line.index(tag):].rstrip())
            self.returncode, self.seconds = self.proc.returncode, time.time() - t0
            self.say(f"   [{self.label}] " + (f"done in {self.seconds:.0f} s (log: {self.log})" if self.returncode == 0
                                             else f"failed (exit {self.returncode}); see {self.log}"))
        finally:
            self.done.set()

    def kill(self) -> None:
        """End the command and its workers if it still runs (its own process group)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)

    def check(self) -> None:
        """Wait for the job's end; a failure names the step and its log."""
        self.done.wait()
        if self.returncode != 0:
            raise DietError(f"{self.title} failed (exit {self.returncode}); see {self.log}")


class _Slots:
    """Run :class:`_Job` s in the background, at most ``n`` at a time, in the order submitted (a thread pool)."""

    def __init__(self, n: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=n)
        self.jobs: list[_Job] = []

    def submit(self, job: _Job) -> _Job:
        self.jobs.append(job)
        self._pool.submit(job.run).add_done_callback(lambda f: f.cancelled() and _never_started(job))
        return job

    def stop(self) -> None:
        """End every job still running and start no other (after a failure or Ctrl-C): nothing keeps training
        unseen."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for job in self.jobs:
            job.kill()  # nnU-Net's augmentation workers with it


def _never_started(job: _Job) -> None:
    job.returncode = -1
    job.done.set()


def training_threads(jobs: int, env: dict) -> str | None:
    """Torch threads per training when ``jobs`` trainings share the machine: the cores divided among them
    (on 2 cores, 1 each: small 3D convolutions gain little from a second thread, docs/benchmarks.md), or the
    user's ``OMP_NUM_THREADS`` when set; None with one job at a time (nnU-Net's own choice, all cores)."""
    if env.get("OMP_NUM_THREADS"):
        return env["OMP_NUM_THREADS"]
    if jobs < 2:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return str(max(1, cores // jobs))


def nnunet_env(out: Path, **extra: str) -> dict:
    """Environment for nnU-Net's commands with its three folders under ``out`` and our trainers found."""
    env = dict(os.environ, nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(out / "nnUNet_preprocessed"),
               nnUNet_results=str(out / "nnUNet_results"), nnUNet_def_n_proc="2",
               nnUNet_extTrainer=str(Path(__file__).resolve().parent.parent / "nnunet" / "ext"), **extra)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def prepare(raw_src: Path, dataset_id: int, env: dict, logs: Path, configuration: str = "3d_fullres",
            processes: int = 2) -> str:
    """Copy a raw dataset into ``nnUNet_raw``, plan and preprocess it (once, with ``processes`` workers) and
    derive lite plans; returns the dataset name."""
    if not (raw_src / "dataset.json").is_file():
        raise DietError(f"{raw_src}: not an nnU-Net raw dataset (no dataset.json)")
    name = f"Dataset{dataset_id:03d}_{raw_src.name}"
    raw = Path(env["nnUNet_raw"]) / name
    if not raw.exists():
        shutil.copytree(raw_src, raw)
    print(f"dataset {name}: {len(list((raw / 'labelsTr').iterdir()))} cases; nnU-Net folders under "
          f"{Path(env['nnUNet_raw']).parent}")
    logs.mkdir(parents=True, exist_ok=True)
    d = str(dataset_id)
    if not (Path(env["nnUNet_preprocessed"]) / name / "nnUNetPlans.json").is_file():
        plan_env = {k: v for k, v in env.items() if k != "nnUNet_n_proc_DA"}  # planning fails with 0 workers
        try:
            _step("plan and preprocess (with nnU-Net's dataset integrity check)",
                  [BIN / "nnUNetv2_plan_and_preprocess", "-d", d, "-c", configuration, "-np", str(processes),
                   "-npfp", str(processes), "--verify_dataset_integrity"], plan_env, logs / "preprocess.log")
        except DietError as exc:
            from ..nnunet.raw import integrity_failure

            failure = integrity_failure(logs / "preprocess.log")
            raise DietError(f"{raw_src}: nnU-Net's dataset integrity check: {failure.replace(str(raw), str(raw_src))}"
                            f"; see {logs / 'preprocess.log'}" if failure else str(exc)) from None
    _step("lite plans (small network and batch, same preprocessed data)",
          [BIN / "nnunet-diet", "lite-plans", "-d", d], env)
    return name


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument, before any work: the rate, the ids, the window, the stop rule (filling in its threshold
    and patience when not given), the output folder and the raw dataset (dataset.json, images and labels in
    pairs, image and label of each case on one grid, naming the case)."""
    from ..nnunet.raw import check_training_dataset

    check_fraction(args.rate, "--rate")
    threshold, patience = PIPELINE_STOP.get(args.stop_rule, (None, 1))
    try:
        args.threshold = check_stop_rule(args.stop_rule, threshold if args.threshold is None else args.threshold)
    except DietError as exc:
        raise DietError(f"--threshold: {exc}") from None
    args.patience = patience if args.patience is None else args.patience
    if args.patience < 1:
        raise DietError(f"--patience must be >= 1, got {args.patience}")
    if args.jobs < 1:
        raise DietError(f"--jobs must be >= 1 (1: one training after another), got {args.jobs}")
    if args.exact_every < 0:
        raise DietError(f"--exact-every must be >= 0 (0: online recording only), got {args.exact_every}")
    if not 1 <= args.dataset_id <= 999:
        raise DietError(f"--dataset-id must be in 1-999 (nnU-Net's DatasetXXX), got {args.dataset_id}")
    if args.window < 1 or args.window > args.epochs:
        raise DietError(f"--window must be in 1-{args.epochs} (--epochs), got {args.window}")
    if args.retrain_epochs == args.epochs:
        raise DietError(f"--retrain-epochs {args.retrain_epochs}: must differ from --epochs (the full fold is "
                        "retrained under another trainer name, next to the scoring run)")
    check_output(args.output, inputs=[args.raw], folder=True)
    check_training_dataset(args.raw)


def _fold_folder(env: dict, name: str, trainer: str, fold: int) -> Path:
    return Path(env["nnUNet_results"]) / name / f"{trainer}__nnUNetPlans_lite__3d_fullres" / f"fold_{fold}"


def _prune(d: str, trainer: str, env: dict, split_file: Path, title: str, options: list[str]) -> int:
    """``nnunet-diet prune`` of fold 0 into an appended fold; returns the new fold's index."""
    _step(title, [BIN / "nnunet-diet", "prune", "-d", d, "-c", "3d_fullres", "-f", "0", "-tr", trainer, "-p",
                  "nnUNetPlans_lite", *options], env)
    return len(json.loads(split_file.read_text())) - 1


def _validation_dice(rows: list[tuple[str, int, int, Path]], labels: dict):
    """One row per training: mean foreground and per-label Dice from nnU-Net's ``validation/summary.json``."""
    import pandas as pd

    names = {str(v): k for k, v in labels.items() if v != 0}
    table = []
    for title, fold, cases, folder in rows:
        summary = json.loads((folder / "validation" / "summary.json").read_text())
        row = {"training list": title, "fold": fold, "cases": cases, "Dice": summary["foreground_mean"]["Dice"]}
        row.update({names.get(k, k): v["Dice"] for k, v in summary["mean"].items()})
        table.append(row)
    return pd.DataFrame(table)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    out = args.output.resolve()
    # progress.png once a window (and at the end): every epoch it cost ~1.3 s of CPU, a quarter of an epoch here
    env = nnunet_env(out, NNUNET_DIET_WINDOW=str(args.window), NNUNET_DIET_PLOT_EVERY=str(args.window))
    logs = out / "logs"
    t0 = time.time()
    trainer = f"nnUNetTrainerDADAdam_{args.epochs}epochs_{args.iterations}iters"
    retrainer = f"nnUNetTrainerDADAdam_{args.retrain_epochs}epochs_{args.iterations}iters"
    name = prepare(args.raw, args.dataset_id, env, logs)
    d = str(args.dataset_id)
    preprocessed = Path(env["nnUNet_preprocessed"]) / name
    split_file = preprocessed / "splits_final.json"
    # nnU-Net's own 5-fold split, written before trainings that start side by side would each create it
    splits, created = load_or_create_splits(preprocessed, case_identifiers(preprocessed, "nnUNetPlans_3d_fullres"))
    rows = [("full", 0)]
    if args.repeat_full:  # a copy of fold 0: the same list trained again shows how much one run varies
        rows.append((REPEAT, len(splits)))
        splits = splits + [dict(splits[0])]
    if created or args.repeat_full:
        write_splits(split_file, splits)
    threads = training_threads(args.jobs, os.environ)
    train_env = env if threads is None else dict(env, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    print(f"\ntrainings: {jobs_words(args.jobs, threads, os.environ.get('OMP_NUM_THREADS'))}")
    scoring_env = dict(env, NNUNET_DIET_STOP_RULE=args.stop_rule, NNUNET_DIET_THRESHOLD=str(args.threshold),
                       NNUNET_DIET_PATIENCE=str(args.patience), NNUNET_DIET_EXACT_EVERY=str(args.exact_every),
                       NNUNET_DIET_FINAL_VALIDATION="0")  # its validation Dice is not what the demo compares
    setting = stop_words(args.stop_rule, args.threshold, args.patience, args.exact_every)
    print(f"stop rule of the scoring run: {setting}"
          + ("" if (args.stop_rule, args.exact_every) == ("paper", 0) else
             "\n(the pipeline's setting, docs/benchmarks.md; nnUNetTrainerDAD's own default is the paper's rule "
             "on online DAD)"))
    slots = _Slots(args.jobs)

    def retrain(label: str, title: str, fold: int) -> _Job:  # every list with one schedule, trained to its end
        return slots.submit(_Job(label, f"retrain on fold {fold} ({title}): {retrainer}",
                                 [BIN / "nnUNetv2_train", d, "3d_fullres", str(fold), "-tr", retrainer, "-p",
                                  "nnUNetPlans_lite", "-device", args.device], dict(train_env, NNUNET_DIET_STOP="0"),
                                 logs / f"retrain_fold{fold}.log"))
    try:
        # alone: every other step waits for it (on 2 cores an epoch took 5.7-6.2 s alone on 2 threads, 8.2 s on
        # 1 thread beside another training: docs/benchmarks.md, "the scoring run alone")
        _step(f"train {trainer} on fold 0, recording per-case Dice (DAD window {args.window}), until the stop rule "
              "fires; nnU-Net's final validation skipped", [BIN / "nnUNetv2_train", d, "3d_fullres", "0", "-tr",
                                                            trainer, "-p", "nnUNetPlans_lite", "-device", args.device],
              scoring_env, logs / "train_fold0.log", label="scoring")
        fold0 = _fold_folder(env, name, trainer, 0)
        summary = json.loads((fold0 / "dad" / "summary.json").read_text())
        pruned = {"DAD ambiguous": _prune(d, trainer, env, split_file, f"prune {args.rate:.0%} of fold 0's "
                                          "training cases, keeping the ambiguous middle", ["--rate", str(args.rate)])}
        if args.random:
            pruned["random"] = _prune(d, trainer, env, split_file, f"prune {args.rate:.0%} of fold 0's training "
                                      "cases at random (the baseline)", ["--rate", str(args.rate), "--mode", "random"])
        more = [(f"{label}, {args.rate:.0%} pruned", fold) for label, fold in pruned.items()]
        rows = rows[:1] + more + rows[1:]  # the full list, the pruned lists, the repeat: the table's order too
        retrained = [retrain(label, title, fold) for label, (title, fold) in
                     zip(["full", *(label.split()[0] for label in pruned), "full again"], rows)]
        _step("HTML report of the scoring run", [BIN / "nnunet-diet", "report", fold0], env)
        for job in retrained:
            job.check()
    finally:
        slots.stop()
    splits = json.loads(split_file.read_text())
    dice = _validation_dice([(title, fold, len(splits[fold]["train"]), _fold_folder(env, name, retrainer, fold))
                             for title, fold in rows], json.loads((args.raw / "dataset.json").read_text())["labels"])
    _summary(summary, dice, args, len(splits[0]["val"]), time.time() - t0)
    print(f"scores, dynamics and plots: {fold0 / 'dad'}")
    print(f"report: {fold0 / 'dad' / 'report.html'}")
    return 0


def jobs_words(jobs: int, threads: str | None, user_threads: str | None = None) -> str:
    """How the trainings share the machine, e.g. ``the scoring run alone with nnU-Net's threads (all cores),
    then the retrainings 2 at a time, 1 torch thread each``; ``threads``: the retrainings', ``user_threads``:
    the user's ``OMP_NUM_THREADS``, which the scoring run keeps too."""
    if jobs < 2:
        return ("one after another, " + (f"{threads} torch thread(s) each (OMP_NUM_THREADS)" if threads else
                                         "each with nnU-Net's threads (all cores)"))
    scoring = (f"{user_threads} torch thread{'' if user_threads == '1' else 's'} (OMP_NUM_THREADS)" if user_threads
               else "nnU-Net's threads (all cores)")
    return (f"the scoring run alone with {scoring}, then the retrainings {jobs} at a time, "
            f"{threads} torch thread{'' if threads == '1' else 's'} each")


def stop_words(rule: str, threshold: float, patience: int, exact_every: int) -> str:
    """The stop setting in words, e.g. ``spearman, stops at Spearman >= 0.8 in 2 windows in a row, on
    exact-mode DAD (fixed patches every epoch)``."""
    mode = ("online DAD (training patches)" if not exact_every else
            f"exact-mode DAD (fixed patches every {'' if exact_every == 1 else f'{exact_every} '}"
            f"epoch{'' if exact_every == 1 else 's'})")
    return f"{rule}, {stop_test(rule, threshold, patience)}, on {mode}"


def saving_lines(dad: dict) -> list[str]:
    """Where the scoring run stopped and what that saved, from the trainer's ``dad/summary.json``: epochs of
    the nominal schedule, and time, exact mode's evaluations counted (against the whole schedule recorded the
    same way, and against it with online recording only, the paper's, at this run's pace)."""
    settings = dad["settings"]
    rule = stop_words(settings["stop_rule"], settings["threshold"], settings["patience"], settings["exact_every"])
    n, total = dad["epochs_trained"], dad["num_epochs"]
    stop = dad["stop_epoch"]
    fired = (f"fired at epoch {stop}" + (f"; trained on to epoch {n - 1} (NNUNET_DIET_STOP=0)"
                                         if settings.get("stop") is False else "")
             if stop is not None else f"did not fire within {n} epochs; scored at the last window")
    lines = [f"DAD stop rule {rule}: {fired}",
             f"scoring run: trained {n} of {total} epochs (compute saved {dad['compute_saved']:.0%} of the "
             f"schedule's epochs); DAD scored at epoch {dad['dad_scored_at_epoch']}"]
    seconds = dad.get("seconds")
    if seconds and seconds["epochs"] > 0:
        t, exact = seconds["epochs"], seconds["exact_mode"]
        line = f"time: {n} epochs took {t:.0f} s"
        if exact > 0:
            online = total * (t - exact) / n  # the whole schedule, online only, at this run's training pace
            versus = (f"saved {1 - t / online:.0%} of that" if t <= online else f"took {t / online - 1:.0%} more")
            line += (f", of which exact mode {exact:.0f} s ({exact / t:.0%}); all {total} epochs: about "
                     f"{total * t / n:.0f} s recorded the same way (the stop saved {1 - n / total:.0%} of that), "
                     f"about {online:.0f} s with online recording only (the stop {versus})")
        else:
            line += f"; all {total} epochs: about {total * t / n:.0f} s"
        lines.append(line)
    return lines


def spread_lines(dice, labels: list[str], iterations: int) -> list[str]:
    """What the Dice table can and cannot say: the gap between the two trainings of the full list (when
    repeated) and every label a training did not learn (Dice under 0.05: a collapse of a short run)."""
    lines = []
    table = dice.set_index("training list")
    if REPEAT in table.index:
        a, b = table.loc["full", "Dice"], table.loc[REPEAT, "Dice"]
        lines.append(f"run-to-run spread: the same full list trained twice gave {a:.3f} and {b:.3f} ({abs(a - b):.3f} "
                     "apart, one pair);\na difference between lists no larger than that says nothing about pruning")
    else:
        lines.append("one run per list, and short CPU runs vary: identical trainings differ by up to a few tenths of "
                     "Dice here\n(docs/benchmarks.md); --repeat-full trains the full list twice to measure it")
    missed = [f"{title} ({label} {table.loc[title, label]:.3f})" for title in table.index for label in labels
              if table.loc[title, label] < 0.05]
    if missed:
        lines.append(f"not learned in {iterations} iterations: {', '.join(missed)}: such collapses come and go between "
                     "identical runs of any list")
    return lines


def _summary(dad: dict, dice, args: argparse.Namespace, n_val: int, seconds: float) -> None:
    L = [f"{v:.3g}" for v in dad["moving_distance"] if v is not None]
    print(f"\n== summary ({seconds:.0f} s)")
    print(f"moving distance L per window: {' '.join(L)}")
    print("\n".join(saving_lines(dad)))
    print(f"\nnnU-Net's validation Dice (mean foreground and per label) on fold 0's {n_val} validation cases,\n"
          f"every list trained {args.retrain_epochs} epochs x {args.iterations} iterations, one run each"
          + (" (the full list twice):" if args.repeat_full else ":"))
    width = dice["training list"].str.len().max()  # names left-aligned, numbers right-aligned
    print(dice.to_string(index=False, float_format=lambda v: f"{v:.3f}", header=[f"{'training list':<{width}}",
                         *dice.columns[1:]], formatters={"training list": f"{{:<{width}}}".format}))
    print("\n".join(spread_lines(dice, list(dice.columns[4:]), args.retrain_epochs * args.iterations)))
