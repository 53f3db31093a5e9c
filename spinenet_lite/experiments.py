"""The paper's experiments reproduced on the synthetic cohort: Table 2 (branch points),
the ablations (training augmentation, test-time augmentation, class balancing) and
Lootus's protocol.

Every experiment trains two models per setting on the same patient-level 80:10:10 split,
the second with the validation and test sets swapped (the paper's way of getting a
standard deviation), scores each on its test set with :func:`spinenet_lite.evaluate.evaluate`
and writes ``data/results/<name>_<tier>.json`` plus a Markdown table beside it through
:func:`spinenet_lite.results.write_results`. Standard deviations are over the two models
(``numpy.std``, ``ddof=0``: half the gap between them).

A :class:`Runner` caches trained models and evaluations, so that ``experiment all`` trains
the conv5 baseline once for ``table2``, ``ablations`` and ``lootus``, and ``no_tta``
re-scores the baseline models without test-time augmentation.

Introduced in the book's chapter 5 (evaluation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .evaluate import EvalResult, evaluate
from .tasks import BRANCH_POINTS, PAPER_INTRA_RATER, PAPER_LOOTUS, PAPER_TABLE2, TASK_NAMES, TASKS

__all__ = [
    "ABLATIONS",
    "EXPERIMENTS",
    "Runner",
    "ablations",
    "lootus",
    "mean_std",
    "run_experiment",
    "table2",
]

EXPERIMENTS: tuple[str, ...] = ("table2", "ablations", "lootus")
"""Experiment names accepted by :func:`run_experiment` (and ``"all"``)."""

BASELINE_BRANCH_POINT = "conv5"
N_FOLDS = 2

ABLATIONS: dict[str, tuple[dict[str, Any], bool]] = {
    "baseline": ({}, True),
    "no_train_aug": ({"train_augment": False}, True),
    "no_tta": ({}, False),
    "no_class_balance": ({"class_balance": False}, True),
}
"""Variant -> (TrainConfig overrides on the conv5 baseline, test-time augmentation)."""


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of the finite values (``ddof=0``); NaN if none is finite."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": float(v.mean()), "std": float(v.std())}


def _per_task(dicts: Sequence[Mapping[str, float] | None]) -> dict[str, dict[str, float]] | None:
    dicts = [d for d in dicts if d is not None]
    if not dicts:
        return None
    return {t: mean_std([d.get(t, float("nan")) for d in dicts]) for t in dicts[0]}


def _default_train(config: Any, train_data: Any, val_data: Any) -> Any:
    from .train import train

    return train(config, train_data, val_data, progress=False)


def _default_data(config: Any) -> Any:
    from .data import synthetic_dataset

    return synthetic_dataset(config.n_patients, config.seed)


def _label(branch_point: str, overrides: Mapping[str, Any]) -> str:
    return " ".join([branch_point, *(f"{k}={v}" for k, v in overrides.items())])


@dataclass
class Runner:
    """Trains and scores models for the experiments, caching both.

    Parameters
    ----------
    config : TrainConfig
        The tier's configuration (e.g. ``get_tier("teaching", device="cuda")``); its
        ``seed`` seeds the patient split, and model ``k`` of a setting trains with
        ``seed + k``.
    data : DiscDataset, optional
        Default: ``spinenet_lite.data.synthetic_dataset(config.n_patients, config.seed)``.
    train_fn : callable, optional
        ``train_fn(config, train_data, val_data) -> TrainResult`` (``.model``); default
        :func:`spinenet_lite.train.train` without progress bars. Tests pass a tiny one.
    log : callable
        Receives one line per trained / scored model (default: ``print``).
    """

    config: Any
    data: Any = None
    train_fn: Callable[[Any, Any, Any], Any] | None = None
    log: Callable[[str], None] = print
    _models: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _evals: dict[tuple, EvalResult] = field(default_factory=dict, repr=False)
    _runs: dict[tuple, dict[str, Any]] = field(default_factory=dict, repr=False)
    _splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.data is None:
            self.data = _default_data(self.config)
        if self.train_fn is None:
            self.train_fn = _default_train

    def splits(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``[(train, val, test), (train, test, val)]`` disc indices (patient-level 80:10:10)."""
        if self._splits is None:
            from .cache import patient_split

            tr, va, te = patient_split(self.data.patients, self.config.seed)
            if len(va) == 0 or len(te) == 0:
                raise ConfigError(
                    f"{len(np.unique(self.data.patients))} patients are too few for an 80:10:10 split "
                    "with non-empty validation and test sets; use at least 3 patients"
                )
            self._splits = [(tr, va, te), (tr, te, va)]
        return self._splits

    def model(self, branch_point: str, overrides: Mapping[str, Any], fold: int) -> Any:
        """The trained model of one setting and fold (trained on first use)."""
        key = (branch_point, tuple(sorted(overrides.items())), fold)
        if key not in self._models:
            from .seed import seed_everything

            tr, va, _ = self.splits()[fold]
            cfg = self.config.replace(branch_point=branch_point, seed=self.config.seed + fold,
                                      **dict(overrides))
            seed_everything(cfg.seed)
            start = time.perf_counter()
            result = self.train_fn(cfg, self.data.subset(tr), self.data.subset(va))
            wall = time.perf_counter() - start
            self._models[key] = result.model
            self._runs[key] = {"branch_point": branch_point, "overrides": dict(overrides), "fold": fold,
                               "seed": cfg.seed, "best_epoch": getattr(result, "best_epoch", None),
                               "train_time_s": round(wall, 2)}
            self.log(f"trained {_label(branch_point, overrides)} fold {fold} in {wall:.1f} s")
        return self._models[key]

    def score(self, branch_point: str, overrides: Mapping[str, Any], fold: int, tta: bool) -> EvalResult:
        """The test-set :class:`EvalResult` of one setting and fold (cached)."""
        key = (branch_point, tuple(sorted(overrides.items())), fold, bool(tta))
        if key not in self._evals:
            model = self.model(branch_point, overrides, fold)
            _, _, te = self.splits()[fold]
            res = evaluate(model, self.data, idx=te, tta=tta, device=self.config.device,
                           batch_size=self.config.eval_batch_size)
            self._evals[key] = res
            acc = ", ".join(f"{t} {100 * v:.1f}" for t, v in res.per_class_accuracy().items())
            self.log(f"scored {_label(branch_point, overrides)} fold {fold} tta={tta}: {acc}")
        return self._evals[key]

    def folds(self, branch_point: str, overrides: Mapping[str, Any] | None = None,
              tta: bool = True) -> list[EvalResult]:
        """Both folds' results of one setting."""
        return [self.score(branch_point, overrides or {}, k, tta) for k in range(N_FOLDS)]

    def run_records(self) -> list[dict[str, Any]]:
        """Provenance of every model trained so far."""
        return list(self._runs.values())


def _references(results: Sequence[EvalResult]) -> dict[str, Any]:
    return {
        "ceiling": _per_task([r.ceiling for r in results]),
        "intra_rater": _per_task([r.intra_rater for r in results]),
        "paper_intra_rater": dict(PAPER_INTRA_RATER),
        "paper_conv5": {t: {"mean": m, "std": s} for t, (m, s) in PAPER_TABLE2["conv5"].items()},
    }


def _summary(results: Sequence[EvalResult]) -> dict[str, dict[str, float]]:
    return _per_task([r.per_class_accuracy() for r in results]) or {}


def _fold_record(res: EvalResult, fold: int) -> dict[str, Any]:
    return {"fold": fold, "per_class_accuracy": res.per_class_accuracy(), "lootus": res.lootus,
            "n_discs": res.n_discs, "n_patients": res.n_patients,
            "confusion": {t: v["confusion"] for t, v in res.tasks.items()}}


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    m, s = (v["mean"], v["std"]) if isinstance(v, Mapping) else (v, None)
    if m is None or not np.isfinite(m):
        return "n/a"
    return f"{100 * m:.1f}" if s is None or not np.isfinite(s) else f"{100 * m:.1f} ± {100 * s:.1f}"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| --- " + "| ---: " * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _task_table(columns: Mapping[str, Mapping[str, Any] | None]) -> str:
    header = ["Task", *columns]
    rows = [[task.title, *(_fmt((col or {}).get(task.name)) for col in columns.values())] for task in TASKS]
    return _markdown_table(header, rows)


def table2(runner: Runner, branch_points: Sequence[str] = BRANCH_POINTS) -> tuple[dict[str, Any], str]:
    """Table 2: average per-class accuracy per task for every branch point.

    Returns
    -------
    results : dict
        ``{"branch_points": {bp: {task: {"mean", "std"}}}, "references": {...},
        "folds": {bp: [per-fold record]}}`` (fractions in [0, 1]).
    markdown : str
        Ours and the paper's Table 2, same layout, in percent.
    """
    for bp in branch_points:
        if bp not in BRANCH_POINTS:
            raise ConfigError(f"unknown branch point {bp!r}; use some of {', '.join(BRANCH_POINTS)}")
    per_bp = {bp: runner.folds(bp) for bp in branch_points}
    all_results = [r for rs in per_bp.values() for r in rs]
    results = {
        "branch_points": {bp: _summary(rs) for bp, rs in per_bp.items()},
        "references": _references(all_results),
        "folds": {bp: [_fold_record(r, k) for k, r in enumerate(rs)] for bp, rs in per_bp.items()},
    }
    refs = results["references"]
    md = ("## Table 2 reproduced: average per-class accuracy (%), mean ± std over two models\n\n"
          + _task_table({"Label-noise ceiling": refs["ceiling"],
                         "Intra-rater (synthetic)": refs["intra_rater"], **results["branch_points"]})
          + "\n## The paper's Table 2 (%)\n\n"
          + _task_table({"Intra-rater": PAPER_INTRA_RATER,
                         **{bp: {t: {"mean": m, "std": s} for t, (m, s) in PAPER_TABLE2[bp].items()}
                            for bp in BRANCH_POINTS}}))
    return results, md


def ablations(runner: Runner, variants: Sequence[str] = tuple(ABLATIONS)) -> tuple[dict[str, Any], str]:
    """The ablations against the conv5 baseline: no training augmentation, no test-time
    augmentation, no class balancing.

    Returns
    -------
    results : dict
        ``{"variants": {name: {task: {"mean", "std"}}}, "references": {...}, "folds": {...}}``.
    markdown : str
    """
    for v in variants:
        if v not in ABLATIONS:
            raise ConfigError(f"unknown ablation {v!r}; use some of {', '.join(ABLATIONS)}")
    per_variant = {v: runner.folds(BASELINE_BRANCH_POINT, ABLATIONS[v][0], ABLATIONS[v][1]) for v in variants}
    all_results = [r for rs in per_variant.values() for r in rs]
    results = {
        "variants": {v: _summary(rs) for v, rs in per_variant.items()},
        "references": _references(all_results),
        "folds": {v: [_fold_record(r, k) for k, r in enumerate(rs)] for v, rs in per_variant.items()},
    }
    refs = results["references"]
    md = ("## Ablations (conv5): average per-class accuracy (%), mean ± std over two models\n\n"
          + _task_table({**results["variants"], "Label-noise ceiling": refs["ceiling"],
                         "Paper (conv5)": refs["paper_conv5"]}))
    return results, md


def lootus(runner: Runner) -> tuple[dict[str, Any], str]:
    """Lootus's protocol for the conv5 model (Pfirrmann within ±1 grade; narrowing normal /
    abnormal).

    Returns
    -------
    results : dict
        ``{"lootus": {protocol: {"mean", "std"}}, "ceiling": {protocol: {"mean", "std"}},
        "paper": {protocol: {"previous", "spinenet"}}, "per_class_accuracy": {task: {...}}}``.
    markdown : str
    """
    rs = runner.folds(BASELINE_BRANCH_POINT)
    protocols = list(PAPER_LOOTUS)
    ours = {k: mean_std([r.lootus[k] for r in rs]) for k in protocols}
    ceil = {k: mean_std([(r.ceiling_lootus or {}).get(k, float("nan")) for r in rs]) for k in protocols}
    paper = {k: {"previous": a, "spinenet": b} for k, (a, b) in PAPER_LOOTUS.items()}
    results = {"lootus": ours, "ceiling": ceil, "paper": paper, "per_class_accuracy": _summary(rs),
               "folds": [_fold_record(r, k) for k, r in enumerate(rs)]}
    rows = [[k, _fmt(ours[k]), _fmt(ceil[k]), _fmt(paper[k]["previous"]), _fmt(paper[k]["spinenet"])]
            for k in protocols]
    md = ("## Lootus's protocol (%): Pfirrmann within one grade; narrowing normal / abnormal\n\n"
          + _markdown_table(["Protocol", "Ours (conv5)", "Label-noise ceiling", "Paper: Lootus et al.",
                             "Paper: SpineNet"], rows))
    return results, md


_FUNCS: dict[str, Callable[[Runner], tuple[dict[str, Any], str]]] = {
    "table2": table2, "ablations": ablations, "lootus": lootus,
}


def run_experiment(
    name: str,
    tier: str = "ci",
    *,
    device: str = "auto",
    seed: int = 0,
    out_dir: str | Path | None = None,
    runner: Runner | None = None,
    train_fn: Callable[[Any, Any, Any], Any] | None = None,
    data: Any = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> dict[str, Path]:
    """Run one experiment (or ``"all"``, sharing the conv5 models) and write its results.

    Parameters
    ----------
    name : str
        ``"table2"``, ``"ablations"``, ``"lootus"`` or ``"all"``.
    tier : str
        ``"ci"``, ``"teaching"`` or ``"paper"`` (see :mod:`spinenet_lite.config`).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    seed : int
        Seed of the cohort, the patient split and the first model of each setting.
    out_dir : path, optional
        Default ``data/results`` (or ``$SPINENET_RESULTS_DIR``).
    runner : Runner, optional
        Reuse trained models across calls.
    train_fn, data, log
        Passed to a new :class:`Runner`.
    **overrides
        TrainConfig fields (``n_patients``, ``max_epochs``, ``width``...); None ignored.

    Returns
    -------
    dict
        ``{experiment: path of the JSON written}``.
    """
    from .config import get_tier
    from .results import write_results

    names = list(EXPERIMENTS) if name == "all" else [name]
    for n in names:
        if n not in _FUNCS:
            raise ConfigError(f"unknown experiment {name!r}; use one of {', '.join(EXPERIMENTS)} or all")
    config = get_tier(tier, device=device, seed=seed, **{k: v for k, v in overrides.items() if v is not None})
    if runner is None:
        runner = Runner(config, data=data, train_fn=train_fn, log=log)
    paths: dict[str, Path] = {}
    from .config import resolve_device

    dev = str(resolve_device(config.device))
    for n in names:
        start = time.perf_counter()
        results, md = _FUNCS[n](runner)
        results["n_patients"] = int(len(np.unique(runner.data.patients)))
        results["n_discs"] = int(len(runner.data.patients))
        results["models"] = runner.run_records()
        results["tasks"] = list(TASK_NAMES)
        paths[n] = write_results(n, tier, results, config=config, seed=seed, device=dev,
                                 wall_time_s=time.perf_counter() - start, out_dir=out_dir,
                                 markdown=f"<!-- {n}, tier {tier}, seed {seed} -->\n\n" + md)
        log(f"wrote {paths[n]}")
    return paths
