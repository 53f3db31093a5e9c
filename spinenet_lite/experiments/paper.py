"""The paper's experiments reproduced on the synthetic cohort: Table 2 (branch points),
the ablations (training augmentation, test-time augmentation, class balancing) and
Lootus's protocol.

Every experiment trains two models per setting on the same patient-level 80:10:10 split,
the second with the validation and test sets swapped (the paper's way of getting a
standard deviation), scores each on its test set with :func:`spinenet_lite.engine.evaluation.evaluate`
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

from ..config import TIER_NAMES, TIER_TABLE, get_tier, resolve_device
from ..datasets.cache import load_cache
from ..datasets.synthetic import data_root, dataset_name, synthetic_dataset
from ..engine.evaluation import EvalResult, evaluate
from ..engine.training import train
from ..errors import ConfigError
from ..results import git_commit, read_results, results_dir, write_results
from ..tasks import BRANCH_POINTS, PAPER_LOOTUS, TASK_NAMES
from .paper_tables import (
    ablations_markdown,
    convergence_markdown,
    fold_record,
    lootus_markdown,
    mean_std,
    references,
    summary,
    table2_markdown,
)

__all__ = [
    "ABLATIONS",
    "ALL_EXPERIMENTS",
    "EXPERIMENTS",
    "EXPERIMENT_TIERS",
    "SIZING_KEYS",
    "ChapterResults",
    "Runner",
    "ablations",
    "chapter_results",
    "convergence",
    "lootus",
    "experiment_config",
    "experiment_data",
    "mean_std",
    "run_experiment",
    "table2",
]

EXPERIMENTS: tuple[str, ...] = ("table2", "ablations", "lootus")
"""Experiment names accepted by :func:`run_experiment` (and ``"all"``)."""

ALL_EXPERIMENTS: tuple[str, ...] = (*EXPERIMENTS, "convergence", "hotspot_quality")
"""Every experiment ``spinenet-lite experiment`` knows. ``all`` runs :data:`EXPERIMENTS`;
``convergence`` (the conv5 baseline trained for as long as the tier allows, with its
learning curves) and ``hotspot_quality`` (in :mod:`spinenet_lite.experiments.hotspot_quality`) run
on their own."""

CURVE_KEYS: tuple[str, ...] = ("epoch", "lr", "train_loss", "val_loss", "val_mean_acc")
"""Per-epoch values of every trained model kept in the results files (``models[i]["curve"]``)."""

EXPERIMENT_TIERS: dict[str, dict[str, Any]] = {name: t["experiments"] for name, t in TIER_TABLE.items()}
"""Per-tier overrides applied on top of :func:`spinenet_lite.config.get_tier` by the
experiments (the training tiers size ONE model; a sweep trains sixteen): the ``experiments``
column of :data:`spinenet_lite.config.TIER_TABLE`, where each tier's sizes are explained. Every
key is a :class:`~spinenet_lite.config.TrainConfig` field except ``max_eval_discs`` (score only
the first that many test discs of each model; None: all). Recorded in every results file
(``config`` and ``results["sizing"]``)."""

SIZING_KEYS: tuple[str, ...] = ("max_eval_discs",)
"""Keys of :data:`EXPERIMENT_TIERS` that are not TrainConfig fields."""

BASELINE_BRANCH_POINT = "conv5"
N_FOLDS = 2

ABLATIONS: dict[str, tuple[dict[str, Any], bool]] = {
    "baseline": ({}, True),
    "no_train_aug": ({"train_augment": False}, True),
    "no_tta": ({}, False),
    "no_class_balance": ({"class_balance": False}, True),
}
"""Variant -> (TrainConfig overrides on the conv5 baseline, test-time augmentation)."""


def _default_train(config: Any, train_data: Any, val_data: Any) -> Any:

    return train(config, train_data, val_data, progress=False)


def _default_data(config: Any) -> Any:
    return experiment_data(config.n_patients, config.seed)


def experiment_data(n_patients: int, seed: int, *, root: Any = None, progress: bool = True) -> Any:
    """The synthetic data set of ``n_patients`` patients (cohort ``seed``).

    Patient ``i`` of a cohort is identical whatever the cohort's size, so when a disc cache
    of the same seed with more patients is already on disk (e.g. the training tier's), its
    first ``n_patients`` patients are used instead of synthesising a new cohort.

    Parameters
    ----------
    n_patients : int
    seed : int
    root : path, optional
        Data folder (:func:`spinenet_lite.datasets.synthetic.data_root`).
    progress : bool

    Returns
    -------
    DiscDataset
        ``6 * n_patients`` discs (in memory when cut from a larger cache, else memory-mapped).
    """
    import re


    n = int(n_patients)
    base = data_root(root)
    if not (base / "cache" / dataset_name(n, seed) / "meta.json").exists():
        bigger = []
        for d in (base / "cache").glob(f"syn_s{int(seed)}_n*"):
            m = re.fullmatch(rf"syn_s{int(seed)}_n(\d+)", d.name)
            if m and int(m.group(1)) > n and (d / "meta.json").exists():
                bigger.append((int(m.group(1)), d))
        if bigger:
            ds = load_cache(min(bigger)[1])
            keep = {f"P{i:05d}" for i in range(n)}
            idx = np.flatnonzero(np.isin(np.asarray(ds.patients).astype(str), sorted(keep)))
            if len(np.unique(np.asarray(ds.patients)[idx])) == n:
                return ds.subset(idx)
    return synthetic_dataset(n, seed, root=root, progress=progress)


def experiment_config(tier: str, **overrides: Any) -> Any:
    """The :class:`~spinenet_lite.config.TrainConfig` of the experiments at ``tier``:
    ``get_tier(tier)`` with :data:`EXPERIMENT_TIERS` ``[tier]`` and then ``overrides``
    (``None`` values ignored) applied.

    Raises
    ------
    ConfigError
        Unknown tier or field, invalid value.
    """

    base = get_tier(tier)
    sized = {k: v for k, v in EXPERIMENT_TIERS.get(tier, {}).items() if k not in SIZING_KEYS}
    return base.replace(**sized).replace(**overrides)


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
        Default: ``spinenet_lite.datasets.synthetic.synthetic_dataset(config.n_patients, config.seed)``.
    train_fn : callable, optional
        ``train_fn(config, train_data, val_data) -> TrainResult`` (``.model``); default
        :func:`spinenet_lite.engine.training.train` without progress bars. Tests pass a tiny one.
    log : callable
        Receives one line per trained / scored model (default: ``print``).
    max_eval_discs : int, optional
        Score only the first that many discs of each test set (a ``ci`` speed-up); None: all.
    """

    config: Any
    data: Any = None
    train_fn: Callable[[Any, Any, Any], Any] | None = None
    log: Callable[[str], None] = print
    max_eval_discs: int | None = None
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
            from ..datasets.cache import patient_split

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
            from ..seed import seed_everything

            tr, va, _ = self.splits()[fold]
            cfg = self.config.replace(branch_point=branch_point, seed=self.config.seed + fold,
                                      **dict(overrides))
            seed_everything(cfg.seed, deterministic=cfg.deterministic)
            start = time.perf_counter()
            result = self.train_fn(cfg, self.data.subset(tr), self.data.subset(va))
            wall = time.perf_counter() - start
            self._models[key] = result.model
            self._runs[key] = {"branch_point": branch_point, "overrides": dict(overrides), "fold": fold,
                               "seed": cfg.seed, "best_epoch": getattr(result, "best_epoch", None),
                               "epochs_run": len(getattr(result, "history", None) or []) or None,
                               "curve": [{k: rec.get(k) for k in CURVE_KEYS}
                                         for rec in getattr(result, "history", None) or []],
                               "train_time_s": round(wall, 2)}
            self.log(f"trained {_label(branch_point, overrides)} fold {fold} in {wall:.1f} s")
        return self._models[key]

    def score(self, branch_point: str, overrides: Mapping[str, Any], fold: int, tta: bool) -> EvalResult:
        """The test-set :class:`EvalResult` of one setting and fold (cached)."""
        key = (branch_point, tuple(sorted(overrides.items())), fold, bool(tta))
        if key not in self._evals:
            model = self.model(branch_point, overrides, fold)
            _, _, te = self.splits()[fold]
            if self.max_eval_discs is not None:
                te = te[: max(1, int(self.max_eval_discs))]
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
        "branch_points": {bp: summary(rs) for bp, rs in per_bp.items()},
        "references": references(all_results),
        "folds": {bp: [fold_record(r, k) for k, r in enumerate(rs)] for bp, rs in per_bp.items()},
    }
    return results, table2_markdown(results)


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
        "variants": {v: summary(rs) for v, rs in per_variant.items()},
        "references": references(all_results),
        "folds": {v: [fold_record(r, k) for k, r in enumerate(rs)] for v, rs in per_variant.items()},
    }
    return results, ablations_markdown(results)


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
    results = {"lootus": ours, "ceiling": ceil, "paper": paper, "per_class_accuracy": summary(rs),
               "folds": [fold_record(r, k) for k, r in enumerate(rs)]}
    return results, lootus_markdown(results)


def convergence(runner: Runner) -> tuple[dict[str, Any], str]:
    """The conv5 baseline (both folds) with its learning curves: how close to the label-noise
    ceiling the method gets when it trains for ``runner.config.max_epochs`` epochs.

    Returns
    -------
    results : dict
        ``{"per_class_accuracy": {task: {"mean", "std"}}, "lootus": {...}, "references":
        {...}, "curves": [[{epoch, lr, train_loss, val_loss, val_mean_acc}, ...] per fold],
        "gap_to_ceiling": {task: ceiling mean - accuracy mean}, "folds": [...]}``.
    markdown : str
    """
    rs = runner.folds(BASELINE_BRANCH_POINT)
    acc = summary(rs)
    refs = references(rs)
    ceiling = refs["ceiling"] or {}
    gap = {t: ceiling[t]["mean"] - acc[t]["mean"] for t in acc if t in ceiling}
    runs = sorted((r for r in runner.run_records()
                   if r["branch_point"] == BASELINE_BRANCH_POINT and not r["overrides"]),
                  key=lambda r: r["fold"])
    results = {"per_class_accuracy": acc,
               "lootus": {k: mean_std([r.lootus[k] for r in rs]) for k in PAPER_LOOTUS},
               "references": refs, "curves": [r["curve"] for r in runs],
               "gap_to_ceiling": gap, "folds": [fold_record(r, k) for k, r in enumerate(rs)]}
    return results, convergence_markdown(results, [r["epochs_run"] for r in runs])


_FUNCS: dict[str, Callable[[Runner], tuple[dict[str, Any], str]]] = {
    "table2": table2, "ablations": ablations, "lootus": lootus, "convergence": convergence,
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
        ``"table2"``, ``"ablations"``, ``"lootus"``, ``"convergence"`` or ``"all"`` (the
        first three).
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

    commit = git_commit()  # the code that runs, read before a run that may outlast a commit
    names = list(EXPERIMENTS) if name == "all" else [name]
    for n in names:
        if n not in _FUNCS:
            raise ConfigError(f"unknown experiment {name!r}; use one of {', '.join(_FUNCS)} or all")
    config = experiment_config(tier, device=device, seed=seed, **overrides)
    if runner is None:
        runner = Runner(config, data=data, train_fn=train_fn, log=log,
                        max_eval_discs=EXPERIMENT_TIERS.get(tier, {}).get("max_eval_discs"))
    paths: dict[str, Path] = {}

    dev = str(resolve_device(config.device))
    for n in names:
        start = time.perf_counter()
        results, md = _FUNCS[n](runner)
        results["n_patients"] = int(len(np.unique(runner.data.patients)))
        results["n_discs"] = int(len(runner.data.patients))
        results["models"] = runner.run_records()
        results["tasks"] = list(TASK_NAMES)
        results["sizing"] = {"tier_overrides": dict(EXPERIMENT_TIERS.get(tier, {})),
                             "overrides": {k: v for k, v in overrides.items() if v is not None}}
        paths[n] = write_results(n, tier, results, config=config, seed=seed, device=dev, commit=commit,
                                 wall_time_s=time.perf_counter() - start, out_dir=out_dir,
                                 markdown=f"<!-- {n}, tier {tier}, seed {seed} -->\n\n" + md)
        log(f"wrote {paths[n]}")
    return paths


@dataclass
class ChapterResults:
    """The results files a chapter shows (see :func:`chapter_results`).

    Attributes
    ----------
    records : dict
        ``{tier: {experiment: record}}`` (records as :func:`spinenet_lite.results.read_results`
        returns them), for every tier with a full set of files, plus the tier computed here.
    main_tier : str
        The tier whose numbers the chapter discusses.
    computed : str or None
        The tier computed in this session (its files in a scratch folder), else None.
    note : str
        One paragraph for the reader: which tier made which table, what was computed.
    """

    records: dict[str, dict[str, dict[str, Any]]]
    main_tier: str
    computed: str | None
    note: str

    def results(self, experiment: str, tier: str | None = None) -> dict[str, Any]:
        """``results`` of one experiment at ``tier`` (default :attr:`main_tier`)."""
        tier = self.main_tier if tier is None else tier
        if tier not in self.records:
            raise ConfigError(f"no results at tier {tier!r}; the tiers here are {', '.join(self.records)}")
        if experiment not in self.records[tier]:
            raise ConfigError(f"no {experiment!r} results at tier {tier!r}; make them with "
                              f"`spinenet-lite experiment {experiment} --tier {tier}`")
        return self.records[tier][experiment]["results"]

    def has(self, experiment: str, tier: str | None = None) -> bool:
        """Whether ``experiment`` has results at ``tier`` (default :attr:`main_tier`)."""
        return experiment in self.records.get(self.main_tier if tier is None else tier, {})


OPTIONAL_CHAPTER_EXPERIMENTS: tuple[str, ...] = ("convergence",)
"""Read by :func:`chapter_results` beside :data:`EXPERIMENTS` when their files exist."""


def _read_all(tier: str, out_dir: Any) -> dict[str, dict[str, Any]] | None:

    folder = Path(out_dir) if out_dir is not None else results_dir()
    if not all((folder / f"{n}_{tier}.json").exists() for n in EXPERIMENTS):
        return None
    optional = [n for n in OPTIONAL_CHAPTER_EXPERIMENTS if (folder / f"{n}_{tier}.json").exists()]
    names = [*EXPERIMENTS, *optional]
    return {n: read_results(n, tier, folder) for n in names}


def chapter_results(
    tier: str,
    *,
    seed: int = 0,
    device: str = "auto",
    run_missing: bool | None = None,
    out_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
    **overrides: Any,
) -> ChapterResults:
    """The results the evaluation chapter shows: the committed files, computed when missing.

    Reads ``<out_dir>/{table2,ablations,lootus}_<t>.json`` (and ``convergence_<t>.json``
    when present) for the ``teaching`` and ``paper`` tiers and for ``tier``. The chapter
    discusses (:attr:`ChapterResults.main_tier`) a tier computed here other than ``ci``,
    else the largest committed tier (``paper``, then ``teaching``). When the files of
    ``tier`` are absent and
    ``run_missing`` (default: only for ``tier == "ci"``, a sweep of seconds), runs
    ``run_experiment("all", tier, ...)`` into ``work_dir`` (default: a new temporary
    folder, so the repository's results stay as committed). When nothing at all is
    available, the ``ci`` sweep is computed as a fallback.

    Parameters
    ----------
    tier : str
        The chapter's tier.
    seed, device
        Passed to :func:`run_experiment` when computing.
    run_missing : bool, optional
        Compute the missing tier (``teaching`` takes ~40 min on a 2-core CPU).
    out_dir : path, optional
        Folder of the committed results (default ``data/results``).
    work_dir : path, optional
        Where computed results go.
    log : callable
        Progress lines of a computed sweep.
    **overrides
        TrainConfig fields for a computed sweep (``n_patients``, ``max_epochs``, ``width``;
        None ignored).

    Returns
    -------
    ChapterResults
    """
    import tempfile


    if tier not in TIER_NAMES:
        raise ConfigError(f"unknown tier {tier!r}; use one of {', '.join(TIER_NAMES)}")
    records: dict[str, dict[str, dict[str, Any]]] = {}
    for t in dict.fromkeys(("teaching", "paper", tier)):
        rec = _read_all(t, out_dir)
        if rec is not None:
            records[t] = rec
    computed = None
    notes = []
    if tier not in records:
        if run_missing is None:
            run_missing = tier == "ci"
        target = tier if run_missing else ("ci" if not records else None)
        if target is not None:
            work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="spinenet_exp_"))
            run_experiment("all", target, device=device, seed=seed, out_dir=work, log=log, **overrides)
            records[target] = _read_all(target, work)
            computed = target
        if target != tier:
            notes.append(f"No results files for tier {tier!r} in data/results; run "
                         f"`spinenet-lite experiment all --tier {tier}` to make them.")
        if computed:
            notes.append(f"The {computed!r} tier was computed in this session"
                         + (" as a stand-in: its numbers only show the plumbing, not the method."
                            if computed == "ci" else "."))
    if computed is not None and computed != "ci":
        main = computed
    else:  # the largest committed tier: the paper's network when its files exist
        main = next((t for t in ("paper", "teaching") if t in records), computed or tier)
    for t, rec in records.items():
        cfg = rec["table2"].get("config", {})
        res = rec["table2"]["results"]
        commit = str(rec["table2"].get("commit", "?"))[:10]
        src = "computed now" if t == computed else f"data/results/*_{t}.json, commit {commit}"
        notes.append(f"Tier {t!r} ({src}): {res.get('n_patients', '?')} patients, "
                     f"width {cfg.get('width', '?')}, {cfg.get('max_epochs', '?')} epochs, "
                     f"device {rec['table2'].get('device', '?')}.")
    notes.append(f"The tables below discuss tier {main!r}.")
    return ChapterResults(records, main, computed, "\n".join(notes))
