"""``spinenet-lite evaluate-spider``, ``experiment-spider`` and ``spider-derive``: real SPIDER scans."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate-spider`` and ``experiment-spider`` sub-commands."""
    p = subparsers.add_parser(
        "evaluate-spider",
        help="grade every graded disc of a SPIDER-layout folder and score it",
        description=(
            "Localise, extract and grade (54-view test-time augmentation) every graded disc of "
            "every T2 study in a folder with the SPIDER layout, then score per task (average "
            "per-class accuracy, n, confusion) and with Lootus's protocol. Each study gets the grader "
            "and slice padding `predict` gives it (spinenet_lite.engine.grading): a mid-sagittal PNG "
            "spinenet_real_2d with its slice in all nine positions, a T2 SPACE study spinenet_real "
            "zero-padded; the results file records them (name, sha256, padding)."
        ),
    )
    p.add_argument("data_dir", type=Path,
                   help="folder with radiological_gradings.csv, overview.csv, t2_midsag/")
    p.add_argument("--out", required=True, type=Path, help="results JSON to write")
    p.add_argument("--weights", default=None,
                   help="one grader for every study: a shipped name or a checkpoint (default: each study's "
                        "grader as predict chooses it; the shipped real-scan graders were trained on the "
                        "shared SPIDER subset, so their scores there are in-sample)")
    p.add_argument("--device", default="cpu", help='"cpu" (default), "cuda" or "auto"')
    p.add_argument("--source", default="midsag", choices=("midsag", "space"),
                   help="mid-sagittal PNGs with the localiser (default) or T2 SPACE with mask corners")
    p.add_argument("--no-tta", action="store_true", help="score the centre view only")
    p.add_argument("--pad", choices=("zero", "replicate"), default=None,
                   help="disc-volume slices a study does not cover: empty as the paper does, or copies of "
                        "the nearest slice (default: as predict pads the study: replicate for one slice, "
                        "else zero)")
    p.set_defaults(func=run_evaluate)

    q = subparsers.add_parser(
        "experiment-spider",
        help="5-fold patient-level cross-validation on SPIDER: scratch, zero-shot, fine-tuned, baseline",
        description=(
            "Cross-validate (a) SpineNet trained on SPIDER from scratch, (b) the synthetic-cohort "
            "model zero-shot and (c) synthetic pre-training then SPIDER fine-tuning; write "
            "data/results/spider_cv_<tier>.json (+ .md) and, with --save-weights, train the best "
            "recipe on all discs and save it. `--recipes baseline` cross-validates the classical "
            "baseline (hand-crafted features of each disc on the mid-sagittal PNGs, gradient-boosted "
            "trees) on the same patient folds and writes results.baseline of "
            "data/results/spider_recipes_<tier>.json."
        ),
    )
    q.add_argument("--tier", default="teaching", choices=("ci", "teaching", "paper"))
    q.add_argument("--data-dir", type=Path, default=None, help="SPIDER folder (default: the shared one)")
    q.add_argument("--source", default=None, choices=("midsag", "space"),
                   help="discs from T2 SPACE masks (default for the CNN recipes) or mid-sagittal PNGs with "
                        "the localiser (default, and the only source, for the baseline)")
    q.add_argument("--slices", default="centre", choices=("centre", "all", "mixed"),
                   help="space only: keep the centre slice of each disc volume (default; like a mid-sagittal "
                        "PNG), all slices (the 1 mm T2 SPACE slices resampled to 4 mm, zero-padded to 9), or "
                        "mixed: all slices, and the trained recipes also learn from each disc's centre slice "
                        "alone; scored on both")
    q.add_argument("--pad", choices=("zero", "replicate"), default=None,
                   help="slice positions a disc volume does not cover: zeros as the paper does, or copies of "
                        "the nearest slice (a model for single 2D images, trained and scored on the slice in "
                        "all nine positions); default: as predict pads the study (replicate for the "
                        "one-slice mid-sagittal PNGs, zero for T2 SPACE)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--synthetic", type=Path, default=None,
                   help="synthetic-cohort checkpoint (default data/weights/spinenet_synthetic.pt)")
    q.add_argument("--recipes", default="scratch,zero_shot,finetune",
                   help="comma-separated recipes: scratch, zero_shot, finetune, and baseline (the classical "
                        "model, written to spider_recipes_<tier>.json)")
    q.add_argument("--save-weights", type=Path, default=None,
                   help="train the best recipe on every disc and save it here")
    q.add_argument("--out-dir", type=Path, default=None, help="results folder (default data/results)")
    q.add_argument("--workers", type=int, default=1, help="processes for the (recipe, fold) jobs")
    q.add_argument("--cache-dir", type=Path, default=None, help="disc cache folder (default data/cache)")
    q.set_defaults(func=run_experiment)
    _register_derive(subparsers)


def run_evaluate(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite evaluate-spider``."""
    from ..datasets.spider import spider_available
    from ..experiments.spider_grading import evaluate_spider
    from ..results import to_jsonable

    if not spider_available(args.data_dir):
        raise InputError(f"{args.data_dir} is not a SPIDER-layout folder (radiological_gradings.csv and "
                         "overview.csv are needed)")
    start = time.perf_counter()
    out = evaluate_spider(args.data_dir, weights=args.weights, device=args.device, source=args.source,
                          tta=not args.no_tta, progress=None, pad=args.pad)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(to_jsonable(out), indent=2) + "\n")
    acc = ", ".join(f"{t} {100 * v['per_class_accuracy']:.1f}" for t, v in out["tasks"].items())
    used = "; ".join(f"{g['n_studies']} {g['study_kind'].replace('_', '-')} studies: {g['grader']}, "
                     f"{g['pad']} padding" for g in out["grading"])
    print(f"{out['n_discs']} discs of {out['n_studies']} studies in {time.perf_counter() - start:.0f} s "
          f"({used}): {acc}; Lootus Pfirrmann +-1 {100 * out['lootus']['pfirrmann_within_1']:.1f}, "
          f"binary narrowing {100 * out['lootus']['narrowing_binary']:.1f} -> {args.out}")
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite experiment-spider``."""
    from ..engine.weights import sha256_file
    from ..experiments.spider_cv import (
        RECIPES,
        SPIDER_TIERS,
        cross_validate,
        fit,
        goals_check,
        markdown_table,
    )
    from ..experiments.spider_discs import cached_discs, source_pad
    from ..experiments.spider_grading import mean_score, save_weights
    from ..results import git_commit, write_results

    commit = git_commit()  # the code that runs, read before a run that may outlast a commit
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    bad = [r for r in recipes if r not in (*RECIPES, "baseline")]
    if bad:
        raise InputError(f"unknown recipe(s) {', '.join(bad)}; use {', '.join((*RECIPES, 'baseline'))}")
    if args.source is None:
        args.source = "midsag" if "baseline" in recipes else "space"
    if "baseline" in recipes:
        if args.source != "midsag" or args.slices != "centre":
            raise InputError("the baseline measures each disc on the mid-sagittal PNGs: use it with --source "
                             "midsag (the default for --recipes baseline) and --slices centre")
        _run_baseline(args, commit)
        recipes = [r for r in recipes if r != "baseline"]
        if not recipes:
            return 0
    start = time.perf_counter()
    if args.slices != "centre" and args.source != "space":
        raise InputError(f"--slices {args.slices} needs --source space (a mid-sagittal PNG is one slice)")
    mixed = args.slices == "mixed"
    if args.pad not in (None, "zero") and args.slices != "centre":
        raise InputError(f"--pad {args.pad} applies to one-slice discs: use it with --slices centre")
    args.pad = source_pad(args.source, args.pad)  # the one rule's padding when not given
    discs = cached_discs(args.data_dir, source=args.source, cache_dir=args.cache_dir, progress=None,
                         pad=args.pad, **({} if args.slices == "centre" else {"centre_only": False}))
    cv = cross_validate(discs, tier=args.tier, seed=args.seed, recipes=recipes, synthetic=args.synthetic,
                        workers=args.workers, progress=None, single_slice_copies=mixed)
    for r in recipes:
        cv["recipes"][r]["goals"] = goals_check(cv["recipes"][r]["pooled"])
    trained = [r for r in recipes if r != "zero_shot"] or recipes
    best = max(trained, key=lambda r: mean_score(cv["recipes"][r]["pooled"]))
    cv["best_recipe"] = best
    cv["source"] = args.source
    cv["slices"] = args.slices
    cv["pad"] = args.pad
    if any(r != "scratch" for r in recipes):
        from ..experiments.spider_grading import synthetic_weights

        syn = Path(args.synthetic) if args.synthetic is not None else synthetic_weights()
        cv["synthetic"] = {"path": str(syn), "sha256": sha256_file(syn)}
    if args.save_weights is not None:
        model = fit(best, discs, tier=args.tier, seed=args.seed, synthetic=args.synthetic,
                    single_slice_copies=mixed)
        path = save_weights(model, args.save_weights, {"recipe": best, "tier": args.tier, "seed": args.seed,
                                                       "source": args.source, "n_discs": len(discs)})
        cv["weights"] = {"path": str(path), "sha256": sha256_file(path),
                         "recipe": best,
                         "command": f"spinenet-lite experiment-spider --tier {args.tier} --source "
                                    f"{args.source} --slices {args.slices} --pad {args.pad} "
                                    f"--seed {args.seed} "
                                    f"--recipes {','.join(recipes)}"
                                    + (f" --synthetic {args.synthetic}" if args.synthetic else "")
                                    + f" --save-weights {args.save_weights}"}
    md = markdown_table(cv) + f"\nBest trained recipe: {best}.\n"
    name = ("spider_cv" + ("_midsag" if args.source == "midsag" else "") + ("_mixed" if mixed else "")
            + ("_replicated" if args.pad == "replicate" else ""))
    path = write_results(name, args.tier, cv, config={"tier": SPIDER_TIERS[args.tier],
                                                             "source": args.source, "slices": args.slices,
                                                             "pad": args.pad,
                                                             "recipes": recipes},
                         seed=args.seed, device="cpu", wall_time_s=time.perf_counter() - start,
                         out_dir=args.out_dir, markdown=md, commit=commit)
    print(md, end="")
    print(f"-> {path}")
    return 0


def _run_baseline(args: argparse.Namespace, commit: str) -> None:
    """``experiment-spider --recipes baseline``: the classical baseline into spider_recipes_<tier>.json."""
    from ..experiments.spider_baseline import (
        BASELINE_TIERS,
        baseline_markdown,
        baseline_summary,
        cnn_reference,
        cross_validate_baseline,
        same_folds,
        write_recipes_section,
    )
    from ..experiments.spider_cv import SPIDER_TIERS
    from ..experiments.spider_discs import cached_discs, source_pad

    start = time.perf_counter()
    pad = source_pad("midsag", args.pad)
    discs = cached_discs(args.data_dir, source="midsag", cache_dir=args.cache_dir, progress=None, pad=pad)
    cv = cross_validate_baseline(discs, tier=args.tier, seed=args.seed)
    cnn = cnn_reference(args.tier, args.out_dir)
    match = same_folds(cv, cnn, args.seed)
    wall = time.perf_counter() - start
    cv["folds_match_cnn"] = match
    cv["command"] = (f"spinenet-lite experiment-spider --tier {args.tier} --recipes baseline "
                     f"--seed {args.seed}" + (f" --data-dir {args.data_dir}" if args.data_dir else ""))
    md = baseline_markdown(cv, cnn, match) + f"\nCommand: `{cv['command']}` ({wall:.0f} s wall time).\n"
    config = {"model": "HistGradientBoostingClassifier", "class_weight": "balanced",
              "trees": BASELINE_TIERS[args.tier], "n_folds": SPIDER_TIERS[args.tier]["n_folds"],
              "source": "midsag", "disc_cache_pad": pad, "features": cv["feature_names"]}
    path = write_recipes_section("baseline", baseline_summary(cv["pooled"]), cv, tier=args.tier,
                                 config=config, seed=args.seed, wall_time_s=wall, out_dir=args.out_dir,
                                 markdown=md, commit=commit)
    print(md, end="")
    print(f"-> {path}")


def _register_derive(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``spider-derive`` sub-command."""
    d = subparsers.add_parser(
        "spider-derive",
        help="derive the chapters' SPIDER folder (PNGs, masks, CSVs) from the original .mha release",
        description=(
            "Write the folder the chapters read (t2_midsag/, t2_space/images and masks/, "
            "radiological_gradings.csv, overview.csv; training subset only) from the original SPIDER "
            "release (Zenodo record 10159290, CC BY 4.0) unpacked in RELEASE_DIR. Then point the "
            "chapters at it: export SPINENET_SPIDER_DIR=OUT_DIR."
        ),
    )
    d.add_argument("release_dir", type=Path, help="the unpacked release (images/, masks/, the two CSV files)")
    d.add_argument("out_dir", type=Path, help="the folder to write (new or empty)")
    d.add_argument("--download", action="store_true",
                   help="first download (several GB, hash-checked, cached) and unpack the release into "
                        "RELEASE_DIR when it is not there yet")
    d.add_argument("--overwrite", action="store_true", help="write into a non-empty OUT_DIR")
    d.set_defaults(func=run_derive)


def run_derive(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite spider-derive``."""
    from ..datasets.spider_derive import check_release, derive_subset
    from ..datasets.spider_release import fetch_release

    if args.download:
        try:
            check_release(args.release_dir)
        except InputError:
            fetch_release(args.release_dir)
    start = time.perf_counter()
    out = derive_subset(args.release_dir, args.out_dir, overwrite=args.overwrite)
    print(f"{out} in {time.perf_counter() - start:.0f} s")
    for line in out.skipped:
        print(f"skipped {line}")
    return 0
