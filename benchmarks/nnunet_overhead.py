"""What recording costs nnU-Net: per-iteration overhead, per-epoch bookkeeping, exact-mode evaluation.

One in-process ``nnUNetTrainerDADAdam`` on the shipped hippocampus cases (fold 0, lite plans): each
batch is trained three times, through the stock ``nnUNetTrainer.train_step`` (the loss wrapper sees no
case keys and records nothing), through ``nnUNetTrainerDAD.train_step`` (per-case TP/FP/FN and error
norms from the highest-resolution output) and the same with ``NNUNET_DIET_ERROR_NORMS=0`` (Dice only,
what DAD needs), in rotating order so that none always runs first. Times are the process's CPU time
(all torch threads): on a machine shared with other jobs the wall time swings, CPU time much less. Also timed: the end-of-epoch work (aggregate, record, DAD trajectory, atomic store save) and
one exact-mode evaluation of every training case on its fixed patch.

The overhead to trust is the paired one: the median over batches of (variant - stock) on the same batch,
run next to each other, against the median stock step, printed with a 95 % bootstrap confidence interval
over the batches; with a few hundred batches on a quiet machine the interval is narrower than 1 %. The
minor page faults per step (memory the allocator took fresh from the kernel) show allocation costs that
the timing of ``patch_sums`` alone, on warm buffers, does not.

Run:  .venv/bin/python benchmarks/nnunet_overhead.py [--work /tmp/diet_bench] [--iterations 100]
      [--features 8 --max-features 64 | --default-plans] [--no-exact]
      (the first run plans and preprocesses the data: ~30 s)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/diet_bench"))
    parser.add_argument("--iterations", type=int, default=100, help="batches, each trained with and without")
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--max-features", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--default-plans", action="store_true",
                        help="nnU-Net's default network (nnUNetPlans) instead of lite plans")
    parser.add_argument("--no-exact", action="store_true", help="skip the exact-mode timing")
    args = parser.parse_args()

    import torch

    from inprocess import ab_rows, ab_times, make_trainer

    trainer = make_trainer("nnUNetTrainerDADAdam", args.work, features=None if args.default_plans else args.features,
                           max_features=args.max_features, device=args.device)
    # after make_trainer: nnunetv2 reads its folders from the environment at import
    from nnunet_diet.core.dad import dad_trajectory
    from nnunet_diet.nnunet.exact import ExactEvaluator
    from nnunet_diet.nnunet.recorder import case_values, patch_sums
    plans_name = trainer.plans_manager.plans_name

    # CPU time of this process (all torch threads) is what recording adds; wall time is also shown but
    # swings with whatever else runs on the machine
    clock = time.perf_counter if args.device == "cuda" else time.process_time
    faults: dict[str, list[int]] = {}
    times = ab_times(trainer, args.iterations, clock, faults)

    # the added work alone: patch_sums on one real (output, target) pair, as the loss wrapper calls it
    batch = next(trainer.dataloader_train)
    with torch.no_grad():
        output = trainer.network(batch["data"].to(trainer.device))
    target = [t.to(trainer.device) for t in batch["target"]]
    t_sums = {}
    for norms in (True, False):
        t0 = clock()
        for _ in range(50):
            patch_sums(output[0], target[0], trainer.label_manager, error_norms=norms)
        t_sums[norms] = (clock() - t0) / 50

    t0 = time.perf_counter()
    ids, sums, _ = trainer._dad_acc.aggregate()
    trainer.dad_store.record(0, ids, case_values(sums))
    for e in range(1, 200):  # a store of 200 recorded epochs, as at the end of a long run
        trainer.dad_store.record(e, ids, case_values(sums))
    t1 = time.perf_counter()
    dad_trajectory(trainer.dad_store["dice"], 10)
    trainer.dad_store.save(args.work / "overhead_store.npz")
    t_epoch_end = time.perf_counter() - t1
    t_record = (t1 - t0) / 200

    train_ids = list(trainer.dad_store.ids)
    t_exact = None
    if not args.no_exact:
        evaluator = ExactEvaluator(trainer.get_tr_and_val_datasets()[0], train_ids,
                                   trainer.configuration_manager.patch_size, trainer.label_manager,
                                   batch_size=trainer.batch_size)
        evaluator.evaluate(trainer.network, trainer.device)  # first pass reads and caches the patches
        t0 = time.perf_counter()
        evaluator.evaluate(trainer.network, trainer.device)
        t_exact = time.perf_counter() - t0

    kind = "process CPU" if clock is time.process_time else "wall"
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; plans {plans_name} "
          f"(patch {list(trainer.configuration_manager.patch_size)}, batch {trainer.batch_size}); "
          f"{len(train_ids)} training cases; {args.iterations} batches")
    print("\n".join(ab_rows(times, kind, faults)))
    med_s = statistics.median(times["stock"])
    for norms, label in ((True, "with error norms"), (False, "Dice only")):
        print(f"patch_sums alone ({label}; the work recording adds per iteration): {t_sums[norms] * 1e3:.2f} ms "
              f"= {100 * t_sums[norms] / med_s:.2f} % of the median stock iteration ({kind} time)")
    print(f"end of epoch: record {t_record * 1e3:.2f} ms; DAD trajectory + atomic save of a "
          f"{len(train_ids)} x 200 store {t_epoch_end * 1e3:.1f} ms")
    if t_exact is not None:
        print(f"exact mode: one evaluation of {len(train_ids)} cases {t_exact:.2f} s "
              f"= {t_exact / med_s:.1f} stock iterations")


if __name__ == "__main__":
    main()
