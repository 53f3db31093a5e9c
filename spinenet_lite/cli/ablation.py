"""``spinenet-lite spider-ablation``: the real-scan CNN recipes, one change at a time, nested CV."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``spider-ablation`` sub-command."""
    p = subparsers.add_parser(
        "spider-ablation",
        help="nested CV of the fine-tuning recipes on the SPIDER mid-sagittal PNGs (ordinal loss, ...)",
        description=(
            "Fine-tune the synthetic model on the SPIDER mid-sagittal discs with one change at a time "
            "(ordinal loss on Pfirrmann, intensity augmentation, mixup, a longer cosine schedule, the T2 "
            "SPACE patients' discs too, all of them), beside the synthetic model zero-shot, the classical "
            "trees and the ensemble of the recipes. Outer folds: experiment-spider's; every model is "
            "trained on four fifths of its outer training fold and the recipe with the best score on the "
            "other fifth is the fold's selected one (nested CV). Writes results.recipes of "
            "data/results/spider_recipes_<tier>.json (+ .md); with --save-weights the recipe chosen by the "
            "inner folds is trained on every disc and saved."
        ),
    )
    p.add_argument("--tier", default="teaching", choices=("ci", "teaching", "paper"))
    p.add_argument("--data-dir", type=Path, default=None, help="SPIDER folder (default: the shared one)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipes", default=None,
                   help="comma-separated recipes to train (default: all of "
                        "spinenet_lite.experiments.spider_ablation.ABLATION_RECIPES)")
    p.add_argument("--synthetic", type=Path, default=None,
                   help="synthetic-cohort checkpoint (default data/weights/spinenet_synthetic.pt)")
    p.add_argument("--save-weights", type=Path, default=None,
                   help="train the recipe the inner folds chose on every disc and save it here")
    p.add_argument("--out-dir", type=Path, default=None, help="results folder (default data/results)")
    p.add_argument("--workers", type=int, default=1, help="processes for the (recipe, fold) jobs")
    p.add_argument("--cache-dir", type=Path, default=None, help="disc cache folder (default data/cache)")
    p.set_defaults(func=run_ablation)


def run_ablation(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite spider-ablation``."""
    from ..engine.weights import sha256_file
    from ..experiments.spider_ablation import (
        ABLATION_BASE,
        ABLATION_RECIPES,
        ablate,
        ablation_markdown,
        fit_recipe,
        summary,
        training_set,
    )
    from ..experiments.spider_baseline import BASELINE_TIERS, write_recipes_section
    from ..experiments.spider_cv import SPIDER_TIERS
    from ..experiments.spider_discs import cached_discs
    from ..experiments.spider_grading import save_weights, synthetic_weights
    from ..results import git_commit

    commit = git_commit()  # the code that runs, read before a run that may outlast a commit
    recipes = (list(ABLATION_RECIPES) if args.recipes is None
               else [r.strip() for r in args.recipes.split(",") if r.strip()])
    bad = [r for r in recipes if r not in ABLATION_RECIPES]
    if bad:
        raise InputError(f"unknown recipe(s) {', '.join(bad)}; use {', '.join(ABLATION_RECIPES)}")
    start = time.perf_counter()
    discs = cached_discs(args.data_dir, source="midsag", cache_dir=args.cache_dir, progress=None)
    space = None  # the T2 SPACE discs, centre slice replicated as a PNG's: only for the recipes that use them
    if any(ABLATION_RECIPES[r].with_space for r in recipes):
        space = cached_discs(args.data_dir, source="space", cache_dir=args.cache_dir, progress=None,
                             pad="replicate")
    res = ablate(discs, space=space, tier=args.tier, seed=args.seed, recipes=recipes,
                 synthetic=args.synthetic, workers=args.workers, progress=None)
    syn = Path(args.synthetic) if args.synthetic is not None else synthetic_weights()
    res["synthetic"] = {"path": str(syn), "sha256": sha256_file(syn)}
    res["command"] = (f"spinenet-lite spider-ablation --tier {args.tier} --seed {args.seed} "
                      f"--workers {args.workers}"
                      + (f" --recipes {','.join(recipes)}" if args.recipes is not None else "")
                      + (f" --synthetic {args.synthetic}" if args.synthetic else "")
                      + (f" --save-weights {args.save_weights}" if args.save_weights else ""))
    if args.save_weights is not None and res["ship"] is not None:
        name = res["ship"]
        data = training_set(discs, space if ABLATION_RECIPES[name].with_space else None)
        model = fit_recipe(name, data, tier=args.tier, seed=args.seed, synthetic=args.synthetic)
        path = save_weights(model, args.save_weights, {"recipe": name, "tier": args.tier, "seed": args.seed,
                                                       "source": "midsag", "pad": "replicate",
                                                       "n_discs": len(data)})
        res["weights"] = {"path": str(path), "sha256": sha256_file(path), "recipe": name,
                          "n_discs": len(data)}
    wall = time.perf_counter() - start
    md = ablation_markdown(res) + f"\nCommand: `{res['command']}` ({wall:.0f} s wall time).\n"
    config = {"tier": SPIDER_TIERS[args.tier], "base": ABLATION_BASE[args.tier],
              "trees": BASELINE_TIERS[args.tier],
              "recipes": {r: {"overrides": {k: (list(v) if isinstance(v, tuple) else v)
                                            for k, v in ABLATION_RECIPES[r].overrides.items()},
                              "epochs_factor": ABLATION_RECIPES[r].epochs_factor,
                              "with_space": ABLATION_RECIPES[r].with_space} for r in recipes},
              "source": "midsag", "pad": "replicate"}
    md += _baseline_section(args)
    path = write_recipes_section("recipes", summary(res), res, tier=args.tier, config=config, seed=args.seed,
                                 wall_time_s=wall, out_dir=args.out_dir, markdown=md, commit=commit)
    print(md, end="")
    print(f"-> {path}")
    return 0


def _baseline_section(args: argparse.Namespace) -> str:
    """The committed classical baseline's table (all outer-training discs), for the same .md file."""
    import json

    from ..experiments.spider_baseline import RECIPES_EXPERIMENT, baseline_markdown, cnn_reference
    from ..paths import results_dir

    folder = Path(args.out_dir) if args.out_dir is not None else results_dir()
    path = folder / f"{RECIPES_EXPERIMENT}_{args.tier}.json"
    if not path.is_file():
        return ""
    details = (json.loads(path.read_text()).get("results") or {}).get("baseline_details")
    if not details:
        return ""
    cnn = cnn_reference(args.tier, args.out_dir)
    return ("\n## The classical baseline on every outer-training disc (`experiment-spider --recipes "
            "baseline`)\n\n"
            + baseline_markdown(details, cnn, details.get("folds_match_cnn"))
            + f"\nCommand: `{details.get('command', '')}`.\n")
