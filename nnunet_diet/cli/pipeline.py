"""``nnunet-diet pipeline``: the DAD workflow end to end with the real nnU-Net commands.

Plan and preprocess a raw dataset, derive lite plans, train ``nnUNetTrainerDAD`` (a short variant),
prune fold 0 by DAD into a new fold and retrain on it: the commands a user runs, printed and run
in order, with nnU-Net's folders under one output folder. By default on the 40 real hippocampus
cases shipped in ``nnunet_diet/examples/hippocampus40`` (CPU, lite plans, about 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..core.atomic import check_output
from ..core.errors import DietError, check_fraction
from ..nnunet.schedules import EPOCHS, ITERATIONS

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hippocampus40"
BIN = Path(sys.executable).parent


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline", help="run DAD end to end with nnU-Net: preprocess, train, prune, retrain",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="work folder (default demo_out)")
    p.add_argument("--raw", type=Path, default=EXAMPLE, help="nnU-Net raw dataset folder (default: the shipped "
                   "hippocampus40)")
    p.add_argument("--dataset-id", type=int, default=990, help="id given to the dataset (default 990)")
    p.add_argument("--epochs", type=int, choices=EPOCHS, default=50)
    p.add_argument("--iterations", type=int, choices=ITERATIONS, default=10, help="training iterations per epoch")
    p.add_argument("--window", type=int, default=5, help="DAD window Delta t (default 5: this run is short)")
    p.add_argument("--rate", type=float, default=0.4, help="pruning rate (default 0.4, keep the ambiguous middle)")
    p.add_argument("--retrain-epochs", type=int, choices=EPOCHS, default=5)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.set_defaults(func=run)


def _step(title: str, args: list, env: dict, log: Path | None = None) -> None:
    print(f"\n== {title}\n$ {' '.join(shlex.quote(str(a)) for a in args)}", flush=True)
    t0 = time.time()
    if log is None:
        proc = subprocess.run([str(a) for a in args], env=env)
    else:
        with open(log, "w") as fh:
            proc = subprocess.run([str(a) for a in args], env=env, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise DietError(f"{title} failed (exit {proc.returncode})" + (f"; see {log}" if log else ""))
    print(f"   done in {time.time() - t0:.0f} s" + (f" (log: {log})" if log else ""), flush=True)


def nnunet_env(out: Path, **extra: str) -> dict:
    """Environment for nnU-Net's commands with its three folders under ``out`` and our trainers found."""
    env = dict(os.environ, nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(out / "nnUNet_preprocessed"),
               nnUNet_results=str(out / "nnUNet_results"), nnUNet_def_n_proc="2",
               nnUNet_extTrainer=str(Path(__file__).resolve().parent.parent / "nnunet" / "ext"), **extra)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    return env


def prepare(raw_src: Path, dataset_id: int, env: dict, logs: Path, configuration: str = "3d_fullres") -> str:
    """Copy a raw dataset into ``nnUNet_raw``, plan and preprocess it (once) and derive lite plans;
    returns the dataset name."""
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
                  [BIN / "nnUNetv2_plan_and_preprocess", "-d", d, "-c", configuration, "-np", "2", "-npfp", "2",
                   "--verify_dataset_integrity"], plan_env, logs / "preprocess.log")
        except DietError as exc:
            from ..nnunet.raw import integrity_failure

            failure = integrity_failure(logs / "preprocess.log")
            raise DietError(f"{raw_src}: nnU-Net's dataset integrity check: {failure.replace(str(raw), str(raw_src))}"
                            f"; see {logs / 'preprocess.log'}" if failure else str(exc)) from None
    _step("lite plans (small network and batch, same preprocessed data)",
          [BIN / "nnunet-diet", "lite-plans", "-d", d], env)
    return name


def check_arguments(args: argparse.Namespace) -> None:
    """Every argument, before any work: the rate, the ids, the window, the output folder and the raw dataset
    (dataset.json, images and labels in pairs, image and label of each case on one grid, naming the case)."""
    from ..nnunet.raw import check_training_dataset

    check_fraction(args.rate, "--rate")
    if not 1 <= args.dataset_id <= 999:
        raise DietError(f"--dataset-id must be in 1-999 (nnU-Net's DatasetXXX), got {args.dataset_id}")
    if args.window < 1 or args.window > args.epochs:
        raise DietError(f"--window must be in 1-{args.epochs} (--epochs), got {args.window}")
    check_output(args.output, inputs=[args.raw], folder=True)
    check_training_dataset(args.raw)


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    out = args.output.resolve()
    env = nnunet_env(out, NNUNET_DIET_WINDOW=str(args.window))
    logs = out / "logs"
    t0 = time.time()
    name = prepare(args.raw, args.dataset_id, env, logs)
    d = str(args.dataset_id)
    trainer = f"nnUNetTrainerDADAdam_{args.epochs}epochs_{args.iterations}iters"
    retrainer = f"nnUNetTrainerDADAdam_{args.retrain_epochs}epochs_{args.iterations}iters"
    _step(f"train {trainer} on fold 0, recording per-case Dice (DAD window {args.window})",
          [BIN / "nnUNetv2_train", d, "3d_fullres", "0", "-tr", trainer, "-p", "nnUNetPlans_lite",
           "-device", args.device], env, logs / "train_fold0.log")
    fold0 = Path(env["nnUNet_results"]) / name / f"{trainer}__nnUNetPlans_lite__3d_fullres" / "fold_0"
    summary = json.loads((fold0 / "dad" / "summary.json").read_text())
    _step(f"prune {args.rate:.0%} of fold 0's training cases, keeping the ambiguous middle",
          [BIN / "nnunet-diet", "prune", "-d", d, "-c", "3d_fullres", "-f", "0", "-tr", trainer, "-p",
           "nnUNetPlans_lite", "--rate", str(args.rate)], env)
    splits = json.loads((Path(env["nnUNet_preprocessed"]) / name / "splits_final.json").read_text())
    new_fold = len(splits) - 1
    _step(f"retrain on the pruned fold {new_fold}",
          [BIN / "nnUNetv2_train", d, "3d_fullres", str(new_fold), "-tr", retrainer, "-p", "nnUNetPlans_lite",
           "-device", args.device], dict(env, NNUNET_DIET_STOP="0"), logs / f"train_fold{new_fold}.log")
    L = [f"{v:.3g}" for v in summary["moving_distance"] if v is not None]
    print(f"\n== summary ({time.time() - t0:.0f} s)")
    print(f"moving distance L per window: {' '.join(L)}")
    print("DAD stop rule: " + (f"fired at epoch {summary['stop_epoch']}" if summary["stop_epoch"] is not None
                               else f"did not fire within {summary['epochs_trained']} epochs; scored at the last "
                                    "window"))
    print(f"trained {summary['epochs_trained']} of {summary['num_epochs']} epochs "
          f"(compute saved {summary['compute_saved']:.0%})")
    print(f"fold 0: {len(splits[0]['train'])} training cases -> fold {new_fold}: {len(splits[new_fold]['train'])}")
    print(f"scores, dynamics and plots: {fold0 / 'dad'}")
    return 0
