"""One GPU check of nnUNetTrainerDAD with nnU-Net's default plans: online recording, AMP, cost per iteration.

Sized for one GPU in under 8 minutes (MSD Hippocampus, the 260 cases of ``../shared/data/hippocampus``,
``3d_fullres`` with nnU-Net's own ``nnUNetPlans``, AMP and ``torch.compile`` as nnU-Net runs them on CUDA):

1. online recording: ``nnUNetTrainerDAD`` (nnU-Net's default trainer plus recording) trained through nnU-Net's
   own ``run_training`` for ``--epochs`` epochs of ``--iterations`` (250, nnU-Net's) iterations on fold 0
   (DAD window 1): seconds per epoch (nnU-Net's timestamps, validation included), cases recorded per epoch
   and their mean recorded Dice beside nnU-Net's pseudo Dice;
2. AMP: on ``--check-batches`` training batches, the network's forward pass under autocast (as in nnU-Net's
   ``train_step``: fp16 on CUDA) and the per-patch and per-case Dice our recorder takes from it (called inside
   autocast, as the loss wrapper is), compared with nnU-Net's ``get_tp_fp_fn_tn`` in fp32 on the same
   batches, the way ``nnUNetTrainer.validation_step`` counts (argmax, one-hot, background dropped): on the
   same autocast logits (our counts must equal nnU-Net's) and on an fp32 forward pass of the same batch
   (what AMP itself changes); max absolute differences written (the network uncompiled here: same weights,
   no recompiling for the fp32 pass);
3. seconds per training iteration with and without recording: the A/B of ``benchmarks/nnunet_overhead.py``
   (each batch trained through the stock ``nnUNetTrainer.train_step``, with recording, and Dice only, in
   rotating order; wall time, CUDA synchronised), on the trainer of step 1.

Results go to ``--out`` as ``gpu_check.json`` and ``gpu_check.md`` (rewritten after each step, so a run cut
short keeps what it measured).

Run (GPU):  .venv/bin/python benchmarks/nnunet_gpu_check.py --out $OUT/gpu_check
CPU smoke:  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nnunet_gpu_check.py --cpu-smoke --out /tmp/gpu_check
            (the shipped 40 cases, lite plans, 2 epochs x 3 iterations, bf16 autocast on the CPU: proves that
            the script runs end to end; its figures say nothing about a GPU)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inprocess import EXAMPLE, ab_rows, ab_times, build_trainer, prepare_dataset  # noqa: E402
from make_nnunet_datasets import DATA, hippocampus  # noqa: E402


def _raw_hippocampus(work: Path, data: Path) -> Path:
    """Every case of ``<data>/hippocampus`` (260 in ``../shared/data``) as an nnU-Net raw dataset under ``work``
    (once)."""
    out = work / "raw" / "Hippocampus"
    if not (out / "dataset.json").is_file():
        n = len(list((data / "hippocampus" / "images").glob("*.nii.gz")))
        if n == 0:
            raise SystemExit(f"{data / 'hippocampus' / 'images'}: no *.nii.gz images (--data: the folder holding "
                             "hippocampus/images and hippocampus/labels)")
        for sub in ("imagesTr", "labelsTr"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        hippocampus(n, out, data)
    return out


def _write(out: Path, results: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "gpu_check.md").write_text("\n".join(_markdown(results)) + "\n")


def _markdown(r: dict) -> list[str]:
    lines = [f"# nnUNetTrainerDAD GPU check ({r['started']} UTC)", "", r["machine"], ""]
    if "online" in r:
        o = r["online"]
        lines += [f"## 1. Online recording: {o['epochs']} epochs x {o['iterations']} iterations, plans "
                  f"{r['plans']}, {o['training_cases']} training cases", "",
                  "| epoch | seconds (nnU-Net, validation included) | cases recorded | mean recorded Dice | "
                  "nnU-Net pseudo Dice (mean) |", "|---|---|---|---|---|"]
        lines += [f"| {e} | {s:.1f} | {n} | {d:.3f} | {p:.3f} |" for e, (s, n, d, p) in
                  enumerate(zip(o["epoch_seconds"], o["cases_recorded"], o["mean_dice"], o["pseudo_dice"]))]
        lines += ["", f"whole step {o['wall_seconds']:.0f} s (trainer set-up, torch.compile where nnU-Net uses it, the "
                  "epochs)", ""]
    if "amp" in r:
        a = r["amp"]
        lines += [f"## 2. Dice recorded under autocast ({a['autocast']}) vs nnU-Net's get_tp_fp_fn_tn in fp32, "
                  f"{a['batches']} batches ({a['patches']} patches, {a['cases']} cases)", "",
                  "| compared with | max abs TP/FP/FN difference (voxels) | max abs Dice difference per patch | "
                  "per case | voxels whose argmax differs |", "|---|---|---|---|---|"]
        for key, label in (("same_logits", "get_tp_fp_fn_tn on the same autocast logits"),
                           ("fp32_forward", "get_tp_fp_fn_tn on an fp32 forward pass")):
            c = a[key]
            lines.append(f"| {label} | {c['max_count_diff']:g} | {c['max_dice_diff_patch']:.2e} | "
                         f"{c['max_dice_diff_case']:.2e} | {c['argmax_differs']:.2e} |")
        lines.append("")
    if "timing" in r:
        t = r["timing"]
        lines += [f"## 3. Seconds per training iteration, {t['iterations']} batches (wall time"
                  f"{', CUDA synchronised' if t['cuda'] else ''})", "", *t["table"], ""]
    lines.append(f"total {r.get('total_seconds', float('nan')):.0f} s")
    return lines


def _amp_context(device):
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", enabled=True)  # fp16, as nnU-Net's train_step
    return torch.autocast("cpu", dtype=torch.bfloat16)  # the CPU smoke: autocast's CPU dtype


def _nnunet_counts(output, target, label_manager):
    """Per-patch TP/FP/FN (patches x foreground classes or regions) as ``nnUNetTrainer.validation_step`` counts
    them, per patch instead of per batch, in fp32: argmax one-hot (sigmoid > 0.5 for regions), ignore label
    masked, ``get_tp_fp_fn_tn``, background dropped."""
    import torch
    from nnunetv2.training.loss.dice import get_tp_fp_fn_tn

    with torch.no_grad(), torch.autocast(output.device.type, enabled=False):
        output = output.float()
        if label_manager.has_regions:
            onehot = (torch.sigmoid(output) > 0.5).float()
        else:
            onehot = torch.zeros(output.shape, device=output.device, dtype=torch.float32)
            onehot.scatter_(1, output.argmax(1)[:, None], 1)
        mask = None
        target = target.clone()
        if label_manager.has_ignore_label:
            if not label_manager.has_regions:
                mask = (target != label_manager.ignore_label).float()
                target[target == label_manager.ignore_label] = 0
            else:
                mask = (~target[:, -1:]).float() if target.dtype == torch.bool else (1 - target[:, -1:]).float()
                target = target[:, :-1]
        tp, fp, fn, _ = get_tp_fp_fn_tn(onehot, target, axes=list(range(2, output.ndim)), mask=mask)
    tp, fp, fn = (x.double().cpu().numpy() for x in (tp, fp, fn))
    if not label_manager.has_regions:
        tp, fp, fn = tp[:, 1:], fp[:, 1:], fn[:, 1:]
    return {"tp": tp, "fp": fp, "fn": fn}


def _per_case(keys: list[str], sums: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-case Dice: TP/FP/FN of every patch (rows of ``sums``) pooled per case by the trainer's own
    accumulator and :func:`case_values`, as an epoch is pooled in training."""
    from nnunet_diet.nnunet.recorder import case_values
    from nnunet_diet.recording import EpochAccumulator

    acc = EpochAccumulator(sorted(set(keys)))
    acc.update(keys, sums)
    ids, pooled, _ = acc.aggregate()
    return dict(zip(ids, case_values(pooled)["dice"]))


def _compare(recorded: list[dict], reference: list[dict], keys: list[str]) -> dict:
    from nnunet_diet.nnunet.recorder import case_values

    rec = {n: np.concatenate([s[n] for s in recorded]) for n in ("tp", "fp", "fn")}
    ref = {n: np.concatenate([s[n] for s in reference]) for n in ("tp", "fp", "fn")}
    patch = np.abs(np.nan_to_num(case_values(rec)["dice"], nan=-1) - np.nan_to_num(case_values(ref)["dice"], nan=-1))
    per_rec, per_ref = _per_case(keys, rec), _per_case(keys, ref)
    case = [abs(np.nan_to_num(per_rec[k], nan=-1) - np.nan_to_num(per_ref[k], nan=-1)) for k in per_rec]
    return {"max_count_diff": float(max(np.abs(rec[n] - ref[n]).max() for n in rec)),
            "max_dice_diff_patch": float(patch.max()), "max_dice_diff_case": float(max(case))}


def amp_check(trainer, batches: int) -> dict:
    """Step 2: recorder under autocast vs nnU-Net's fp32 counts, on the same logits and on an fp32 forward."""
    import torch

    from nnunet_diet.nnunet.recorder import patch_sums

    lm, device = trainer.label_manager, trainer.device
    network = getattr(trainer.network, "_orig_mod", trainer.network)  # eager: no recompiling for the fp32 pass
    keys, recorded, same, fp32, differs, voxels = [], [], [], [], 0, 0
    for _ in range(batches):
        batch = next(trainer.dataloader_train)
        data = batch["data"].to(device)
        target = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
        target = target.to(device)
        with torch.no_grad():
            with _amp_context(device):
                out = network(data)
                out = out[0] if isinstance(out, (list, tuple)) else out
                sums = patch_sums(out, target, lm, error_norms=False)  # inside autocast, as in training
                recorded.append({k: v.cpu().numpy() for k, v in sums.items()})
            with torch.autocast(device.type, enabled=False):
                out32 = network(data)
                out32 = out32[0] if isinstance(out32, (list, tuple)) else out32
        same.append(_nnunet_counts(out, target, lm))
        fp32.append(_nnunet_counts(out32, target, lm))
        if not lm.has_regions:
            differs += int((out.float().argmax(1) != out32.argmax(1)).sum())
            voxels += out32[:, 0].numel()
        keys += [str(k) for k in batch["keys"]]
    result = {"batches": batches, "patches": len(keys), "cases": len(set(keys)),
              "autocast": "fp16 (CUDA)" if device.type == "cuda" else "bfloat16 (CPU)",
              "same_logits": _compare(recorded, same, keys), "fp32_forward": _compare(recorded, fp32, keys)}
    result["same_logits"]["argmax_differs"] = 0.0
    result["fp32_forward"]["argmax_differs"] = differs / voxels if voxels else float("nan")
    return result


def online_run(trainer, epochs: int, iterations: int, val_iterations: int | None) -> dict:
    """Step 1: nnU-Net's own ``run_training`` of ``trainer`` for ``epochs`` x ``iterations``."""
    trainer.num_epochs = epochs
    trainer.num_iterations_per_epoch = iterations
    if val_iterations is not None:
        trainer.num_val_iterations_per_epoch = val_iterations
    t0 = time.perf_counter()
    trainer.run_training()
    log = trainer.logger.local_logger.my_fantastic_logging
    dice = trainer.dad_store["dice"]
    return {"epochs": epochs, "iterations": iterations, "training_cases": int(dice.shape[0]),
            "epoch_seconds": [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])],
            "cases_recorded": [int(np.isfinite(dice[:, e]).sum()) for e in range(dice.shape[1])],
            "mean_dice": [float(np.nanmean(dice[:, e])) for e in range(dice.shape[1])],
            "pseudo_dice": [float(np.mean(d)) for d in log["dice_per_class_or_region"]],
            "wall_seconds": time.perf_counter() - t0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--work", type=Path, default=Path("/tmp/diet_gpu_check"), help="nnU-Net folders")
    parser.add_argument("--data", type=Path, default=DATA, help=f"folder with hippocampus/ (default {DATA})")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=250, help="training iterations per epoch (nnU-Net's 250)")
    parser.add_argument("--check-batches", type=int, default=20, help="batches of the AMP comparison")
    parser.add_argument("--ab-iterations", type=int, default=40, help="batches of the timing A/B")
    parser.add_argument("--processes", type=int, default=8, help="preprocessing workers")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="CPU-sized: shipped 40 cases, lite plans, 2 x 3 iterations, few batches")
    args = parser.parse_args()
    t_start = time.perf_counter()
    results = {"started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "command": " ".join(sys.argv)}
    os.environ["NNUNET_DIET_WINDOW"] = "1"  # a few epochs: L from epoch to epoch
    if args.cpu_smoke:
        args.device, args.epochs, args.iterations, args.check_batches, args.ab_iterations = "cpu", 2, 3, 2, 3
        pre = prepare_dataset(args.work, raw=EXAMPLE, dataset_id=990, processes=2, workers="0")
        plans = "nnUNetPlans_lite"  # written by prepare
        val_iterations = 2
    else:
        pre = prepare_dataset(args.work, raw=_raw_hippocampus(args.work, args.data), dataset_id=4, processes=args.processes,
                              workers=None)
        plans = "nnUNetPlans"  # nnU-Net's default plans
        val_iterations = None  # nnU-Net's 50
    import torch

    trainer = build_trainer("nnUNetTrainerDAD", pre, plans, device=args.device)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "no GPU used"
    results.update(plans=plans, machine=f"{platform.node()}: {platform.machine()}, {os.cpu_count()} cores, {gpu}; "
                   f"torch {torch.__version__}, {torch.get_num_threads()} threads; preprocessing "
                   f"{time.perf_counter() - t_start:.0f} s")
    results["online"] = online_run(trainer, args.epochs, args.iterations, val_iterations)
    results["total_seconds"] = time.perf_counter() - t_start
    _write(args.out, results)

    # steps 2 and 3 on the trained network: nnU-Net's on_train_end shut its data loaders down, new ones
    trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    results["amp"] = amp_check(trainer, args.check_batches)
    results["total_seconds"] = time.perf_counter() - t_start
    _write(args.out, results)

    times = ab_times(trainer, args.ab_iterations, time.perf_counter)
    results["timing"] = {"iterations": args.ab_iterations, "cuda": args.device == "cuda",
                         "table": ab_rows(times, "wall"),
                         "median_seconds": {k: statistics.median(v) for k, v in times.items()}}
    results["total_seconds"] = time.perf_counter() - t_start
    _write(args.out, results)
    print("\n".join(_markdown(results)))


if __name__ == "__main__":
    main()
