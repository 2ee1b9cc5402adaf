"""nnU-Net commands: ``trainer-path``, ``trainers``, ``lite-plans`` and ``prune`` (the split-file tool)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.errors import DietError
from ..core.selection import KEEP_MODES
from ..nnunet.config import centre_of
from ..nnunet.schedules import TRAINERS, variants

EXT_FOLDER = Path(__file__).resolve().parent.parent / "nnunet" / "ext"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trainer-path", help="folder to put in nnUNet_extTrainer (export nnUNet_extTrainer=$(...))",
                       description="Print the folder through which nnU-Net >= 2.8 finds nnUNetTrainerDAD and its "
                                   "short variants: export nnUNet_extTrainer=$(nnunet-diet trainer-path)")
    p.set_defaults(func=lambda args: print(EXT_FOLDER) or 0)

    p = sub.add_parser("trainers", help="list every trainer name nnU-Net finds through trainer-path",
                       description="List the DAD trainers and every short-schedule variant (name, base, epochs, "
                                   "training iterations per epoch), the names to pass to nnUNetv2_train -tr.")
    p.add_argument("--markdown", action="store_true", help="print a markdown table (as in docs/nnunet.md)")
    p.set_defaults(func=run_trainers)

    p = sub.add_parser("lite-plans", help="derive small-network plans for CPU work (same preprocessed data)",
                       description="Write <nnUNet_preprocessed>/<dataset>/<output>.json from the source plans with "
                                   "features_per_stage = features x 2^stage (capped) and a small batch. Train with "
                                   "-p <output>; the preprocessed data is shared.")
    p.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 4 or Dataset004_Hippocampus")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="source plans (default nnUNetPlans)")
    p.add_argument("-o", "--output", default="nnUNetPlans_lite",
                   help="name of the new plans (default nnUNetPlans_lite)")
    p.add_argument("--features", type=int, default=8, help="features of the first stage (default 8)")
    p.add_argument("--max-features", type=int, default=64, help="cap on features per stage (default 64)")
    p.add_argument("--batch-size", type=int, default=2, help="batch size (default 2)")
    p.set_defaults(func=run_lite_plans)

    p = sub.add_parser("prune", help="remove cases from a fold's training list by DAD (or any per-case score)",
                       description="Prune the training list of one fold of splits_final.json (validation untouched) "
                                   "and append it as a new fold (or --replace the fold). The split file is written "
                                   "atomically after a timestamped backup.")
    p.add_argument("-d", "--dataset", required=True, help="dataset id or name")
    p.add_argument("-c", "--configuration", default="3d_fullres")
    p.add_argument("-f", "--fold", type=int, required=True, help="fold whose training list is pruned")
    p.add_argument("-tr", "--trainer", default="nnUNetTrainerDAD", help="trainer that wrote the scores")
    p.add_argument("-p", "--plans", default="nnUNetPlans", help="plans the scores were trained with")
    p.add_argument("--scores", type=Path, default=None,
                   help="per-case CSV (id + score columns) or a fold folder; default: the fold's dad/scores.csv")
    p.add_argument("--score", default="dad", help="score column: dad (default), el2n, el2nx, or any column")
    p.add_argument("--easy-end", choices=["high", "low"], default=None,
                   help="which end of the score is easy (known for dad, el2n, el2nx)")
    p.add_argument("--rate", type=float, default=0.4, help="fraction of training cases removed (default 0.4)")
    p.add_argument("--mode", choices=list(KEEP_MODES), default="ambiguous",
                   help="what is kept: ambiguous (default: both tails rate/2 removed), easy, hard, random")
    p.add_argument("--stratify", action="store_true", help="each centre keeps its share (centres from --centres "
                   "or the scores' group column)")
    p.add_argument("--centres", default=None, help="CSV id,centre or a regex whose first group is the centre")
    p.add_argument("--unscored", choices=["keep", "remove", "error"], default="keep",
                   help="cases with no score (not drawn in the scoring window): keep (default), remove, error")
    p.add_argument("--keep-list", type=Path, default=None, help="CSV with id and keep (1/0) columns, e.g. from "
                   "'nnunet-diet meddel': keep exactly those training cases (instead of --scores/--rate/--mode)")
    p.add_argument("--replace", action="store_true", help="rewrite the fold in place instead of appending a fold")
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run_prune)


def run_trainers(args: argparse.Namespace) -> int:
    rows = [(name, name, "1000", "250") for name in TRAINERS]
    rows += [(v.name, v.base, str(v.epochs), str(v.iterations or 250)) for v in variants()]
    if args.markdown:
        print("| trainer | base | epochs | iterations per epoch |\n|---|---|---|---|")
        print("\n".join(f"| `{name}` | `{base}` | {e} | {i} |" for name, base, e, i in rows))
    else:
        width = max(len(r[0]) for r in rows)
        print(f"{'trainer':<{width}}  epochs  iterations per epoch")
        print("\n".join(f"{name:<{width}}  {e:>6}  {i:>3}" for name, _, e, i in rows))
    return 0


def run_lite_plans(args: argparse.Namespace) -> int:
    from ..nnunet.paths import preprocessed_folder
    from ..nnunet.plans import make_lite_plans

    out, copy = make_lite_plans(preprocessed_folder(args.dataset), args.plans, args.output,
                                base_features=args.features, max_features=args.max_features,
                                batch_size=args.batch_size)
    print(f"wrote {out}" + (f" (the previous file differed: kept as {copy.name})" if copy else ""))
    print(f"train with: nnUNetv2_train {args.dataset} <configuration> <fold> -p {args.output} ...")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Prune one fold's training cases by a score (or a keep-list) and add the pruned fold to the splits."""
    from ..nnunet import splits as sp

    pre, identifiers, splits, created = _dataset_splits(args)
    fold = splits[args.fold]
    scores_path, scores = _read_scores(args, pre, identifiers)
    if args.keep_list:
        result, score, mode = sp.keep_fold(fold["train"], scores, scores_path), "keep", "keep-list"
    else:
        result, score, mode = sp.prune_fold(fold["train"], scores, args.score, args.rate, args.mode,
                                            groups=_strata(args, fold["train"], scores), easy_end=args.easy_end,
                                            seed=args.seed, unscored=args.unscored), args.score, args.mode
    new_fold = {"train": result.train, "val": list(fold["val"])}
    target = args.fold if args.replace else len(splits)
    _print_pruning(args, result, fold, target, score, mode)
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    if args.replace:
        splits[target] = new_fold
    else:
        splits.append(new_fold)
    backup = sp.write_splits(pre / sp.SPLITS_FILE, splits)
    print(("created " if created else "updated ") + str(pre / sp.SPLITS_FILE)
          + (f" (backup: {backup.name})" if backup else ""))
    print(f"retrain with: nnUNetv2_train {args.dataset} {args.configuration} {target} -tr nnUNetTrainer "
          f"-p {args.plans}")
    return 0


def _dataset_splits(args: argparse.Namespace) -> tuple[Path, list[str], list[dict], bool]:
    """The preprocessed folder, its case identifiers (of the plans' configuration) and its splits
    (created as nnU-Net would when missing; ``created`` says so); the fold must exist."""
    from ..nnunet import splits as sp
    from ..nnunet.paths import preprocessed_folder

    pre = preprocessed_folder(args.dataset)
    plans_file = pre / f"{args.plans}.json"
    if not plans_file.is_file():
        raise DietError(f"{plans_file}: no such plans file")
    configs = json.loads(plans_file.read_text()).get("configurations", {})
    if args.configuration not in configs:
        raise DietError(f"{plans_file}: no configuration {args.configuration!r} (has: {', '.join(configs)})")
    identifiers = sp.case_identifiers(pre, configs[args.configuration]["data_identifier"])
    splits, created = sp.load_or_create_splits(pre, identifiers)
    if not 0 <= args.fold < len(splits):
        raise DietError(f"fold {args.fold} does not exist: {pre / sp.SPLITS_FILE} has folds 0-{len(splits) - 1}")
    return pre, identifiers, splits, created


def _read_scores(args: argparse.Namespace, pre: Path, identifiers: list[str]):
    """``(path, table)`` of the keep-list or the scores (default: the scoring fold's ``dad/scores.csv``;
    a fold folder or its ``dad/`` folder stands for its ``scores.csv``); every id must be a case."""
    from ..nnunet import splits as sp
    from ..nnunet.paths import results_fold_folder

    path = args.keep_list or args.scores or results_fold_folder(
        args.dataset, args.trainer, args.plans, args.configuration, args.fold) / "dad" / "scores.csv"
    if path.is_dir():
        path = (path / "dad" if (path / "dad").is_dir() else path) / "scores.csv"
    table = sp.read_scores(path, "keep" if args.keep_list else args.score)
    unknown = sorted(set(table["id"]) - set(identifiers))
    if unknown:
        raise DietError(f"{path}: {len(unknown)} id(s) are not cases of {pre.name}, e.g. {unknown[0]}")
    return path, table


def _strata(args: argparse.Namespace, train: list[str], scores) -> list[str] | None:
    """The centre of each training case for ``--stratify`` (``--centres``, else the scores' ``group``)."""
    if not args.stratify:
        return None
    if args.centres:
        return centre_of(train, args.centres)
    if "group" in scores.columns:
        return scores.set_index("id").loc[train, "group"].astype(str).to_numpy()
    raise DietError("--stratify needs --centres or a 'group' column in the scores")


def _print_pruning(args: argparse.Namespace, result, fold: dict, target: int, score: str, mode: str) -> None:
    """What the pruned fold will hold: unscored cases, the per-region table and the rate reached."""
    from ..nnunet import splits as sp

    n_unscored = int(result.table["score"].isna().sum()) if mode != "random" else 0
    if n_unscored:
        print(f"note: {n_unscored} training case(s) have no {score} (not drawn in the scoring window): "
              + {"keep": "kept", "remove": "removed"}[args.unscored])
    print(sp.summary_table(result).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    action = f"replace fold {target}" if args.replace else f"append fold {target}"
    removed = len(result.removed) / len(fold["train"])
    rate = f"rate {removed:.3g}" + (f" (asked {args.rate:g})" if not args.keep_list and
                                    abs(removed - args.rate) >= 1 / len(fold["train"]) else "")
    print(f"{action}: {len(result.train)} training cases (removed {len(result.removed)}, mode {mode}, "
          f"{rate}, score {score}), {len(fold['val'])} validation cases unchanged")
