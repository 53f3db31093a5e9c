"""``spinenet-lite experiment NAME --tier T``: the paper's experiments reproduced.

``table2``, ``ablations``, ``lootus`` and ``all`` run through
:func:`spinenet_lite.experiments.paper.run_experiment` (sized per tier by
:data:`spinenet_lite.experiments.paper.EXPERIMENT_TIERS`); ``hotspot_quality`` through
:func:`spinenet_lite.experiments.hotspot_quality.run_hotspot_quality`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiments.paper import ALL_EXPERIMENTS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``experiment`` sub-command."""
    p = subparsers.add_parser(
        "experiment",
        help="reproduce Table 2, the ablations, Lootus's protocol or the hotspot quality study",
        description=(
            "Train two models per setting (validation and test sets swapped), score them with "
            "54-view test-time augmentation and write data/results/<name>_<tier>.json and a "
            "Markdown table. `all` runs table2, ablations and lootus, training the conv5 models "
            "once. `hotspot_quality` scores the evidence hotspots against the lesion masks."
        ),
    )
    p.add_argument("name", choices=(*ALL_EXPERIMENTS, "all"), help="experiment to run")
    p.add_argument("--tier", default="ci", choices=("ci", "teaching", "paper"),
                   help="size of the run (default ci: seconds on a CPU)")
    p.add_argument("--device", default="auto", help='"auto" (default), "cpu" or "cuda"')
    p.add_argument("--seed", type=int, default=0, help="seed of cohort, split and models (default 0)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="results folder (default: $SPINENET_RESULTS_DIR, else data/results of a checkout, "
                        "else ./results)")
    p.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="where synthetic cohorts and disc caches are made (default: data/ of a checkout, "
                        "else the user cache; $SPINENET_DATA_DIR)")
    p.add_argument("--patients", type=int, default=None,
                   help="override the tier's number of patients (not for hotspot_quality)")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="override the tier's number of epochs (not for hotspot_quality)")
    p.add_argument("--width", type=float, default=None,
                   help="override the tier's network width (not for hotspot_quality)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--max-discs", type=int, default=None,
                   help="hotspot_quality only: discs scored per task (default: the tier's)")
    p.add_argument("--weights", type=Path, default=None,
                   help="hotspot_quality only: a trained checkpoint (e.g. data/runs/teaching_conv5_s0/"
                        "best.pt) instead of training one; it must come from the same cohort seed and "
                        "split seed")
    p.add_argument("--eval-patients", type=int, default=None,
                   help="hotspot_quality only: score discs of N new patients (cohort seed + 1) that "
                        "no model saw, instead of the test split")
    p.add_argument("--methods", default=None,
                   help="hotspot_quality only: comma-separated hotspot methods (default: the tier's; "
                        "paper, gradient, smoothgrad, gradcam, integrated_gradients, occlusion)")
    p.add_argument("--train-cohort", default=None, choices=("standard", "decorrelated"),
                   help="hotspot_quality only: train on this cohort preset (default standard; "
                        "decorrelated: endplate and marrow labels independent of degeneration)")
    p.set_defaults(func=run)

    r = subparsers.add_parser(
        "hotspot-recipes",
        help="compare graders (and the paper's averaging choices) on the same new patients",
        description=(
            "Score every --grader on new patients (cohort seed --seed + 1) of the standard and the "
            "decorrelated cohorts: accuracy, agreement with the degeneration rule, the paper's hotspots "
            "against the true lesions, lesion reliance; remake one grader's maps with each averaging "
            "choice; grade the demo study of each --demo-seeds seed with every grader. Writes "
            "data/results/hotspot_recipes_<tier>.json and .md (chapter 07)."),
    )
    r.add_argument("--grader", action="append", required=True, metavar="NAME=WEIGHTS",
                   help="a grader to compare: a name and a registry name or checkpoint (repeat)")
    r.add_argument("--trained-by", action="append", default=[], metavar="NAME=COMMAND",
                   help="how grader NAME was trained (a command line), recorded in the results (repeat)")
    r.add_argument("--tier", default="teaching", choices=("ci", "teaching", "paper"))
    r.add_argument("--seed", type=int, default=0, help="seed (default 0): new patients are cohort seed + 1")
    r.add_argument("--eval-patients", type=int, default=100, metavar="N",
                   help="new patients of each cohort (default 100)")
    r.add_argument("--max-discs", type=int, default=30, metavar="K",
                   help="truly abnormal discs scored per task (default 30)")
    r.add_argument("--counterfactual-discs", type=int, default=20, metavar="K",
                   help="of them, discs rendered again without their lesion (default 20)")
    r.add_argument("--averaging-grader", default=None, metavar="NAME",
                   help="the grader whose maps the averaging choices remake (default: the last)")
    r.add_argument("--demo-seeds", type=int, default=5, metavar="K",
                   help="demo studies (seeds 0..K-1) graded by every grader (default 5; 0: none)")
    r.add_argument("--device", default="auto")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    r.add_argument("--out-dir", type=Path, default=None, help="results folder (default data/results)")
    r.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                   help="where the new patients' cohorts and caches are made ($SPINENET_DATA_DIR)")
    r.set_defaults(func=run_recipes)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    """``["a=x", "b=y"]`` -> ``{"a": "x", "b": "y"}``; a value without ``=`` or a repeated name is refused."""
    from ..errors import InputError

    out: dict[str, str] = {}
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name or not rest:
            raise InputError(f"{flag} takes NAME=VALUE; got {v!r}")
        if name in out:
            raise InputError(f"{flag} names {name!r} twice")
        out[name] = rest
    return out


def run_recipes(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite hotspot-recipes``."""
    from ..errors import InputError
    from ..paths import use_data_dir

    graders = _pairs(args.grader, "--grader")
    trained_by = _pairs(args.trained_by, "--trained-by")
    unknown = set(trained_by) - set(graders)
    if unknown:
        raise InputError(f"--trained-by names no --grader: {', '.join(sorted(unknown))}")
    if args.demo_seeds < 0:
        raise InputError(f"--demo-seeds must be >= 0; got {args.demo_seeds}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    from ..app.demo import demo_agreement
    from ..engine.weights import load_grader
    from ..experiments.hotspot_recipes import run_hotspot_recipes

    models = {name: load_grader(w, device="cpu" if args.device == "auto" else args.device)[0]
              for name, w in graders.items()}
    demo = {name: demo_agreement(w, range(args.demo_seeds), device=args.device) for name, w in graders.items()
            } if args.demo_seeds else None
    with use_data_dir(args.data_dir):
        res = run_hotspot_recipes(models, args.tier, args.seed, args.device, eval_patients=args.eval_patients,
                                  max_discs=args.max_discs, counterfactual_discs=args.counterfactual_discs,
                                  averaging_grader=args.averaging_grader, demo=demo, training=trained_by,
                                  out_dir=args.out_dir)
    from ..experiments.hotspot_recipes import markdown_table

    print(markdown_table(res))
    return 0


def run(args: argparse.Namespace) -> int:
    """Handler of ``spinenet-lite experiment``: :func:`_run` with ``--data-dir`` as the data root."""
    from ..paths import use_data_dir

    with use_data_dir(args.data_dir):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    if args.name == "hotspot_quality":
        given = [f"--{k.replace('_', '-')}" for k in ("patients", "max_epochs", "width")
                 if getattr(args, k) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} do not apply to hotspot_quality (its sizes come from "
                              "the tier); drop them or use --max-discs")
        if args.threads is not None:
            import torch

            torch.set_num_threads(args.threads)
        from ..experiments.hotspot_quality import run_hotspot_quality

        model = eval_data = None
        if args.weights is not None:
            from ..engine.checkpoint import load_model

            model = load_model(args.weights)
        if args.eval_patients is not None:
            from ..datasets.synthetic import synthetic_dataset

            eval_data = synthetic_dataset(args.eval_patients, args.seed + 1)
        extra = {}
        if args.methods is not None:
            extra["methods"] = tuple(m.strip() for m in args.methods.split(",") if m.strip())
        if args.train_cohort is not None:
            extra["train_cohort"] = args.train_cohort
        run_hotspot_quality(args.tier, seed=args.seed, device=args.device, max_discs=args.max_discs,
                            out_dir=args.out_dir, model=model, eval_data=eval_data, **extra)
        return 0
    for flag in ("max_discs", "weights", "eval_patients", "methods", "train_cohort"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to hotspot_quality only; drop it")
    from ..experiments.paper import run_experiment

    run_experiment(args.name, args.tier, device=args.device, seed=args.seed, out_dir=args.out_dir,
                   n_patients=args.patients, max_epochs=args.max_epochs, width=args.width,
                   num_threads=args.threads)
    return 0
