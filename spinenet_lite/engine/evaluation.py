"""Evaluation as in Section 5 of the paper: 54-view test-time augmentation, average
per-class accuracy, confusion matrices, Lootus's protocol and the reference rows.

:func:`predict` turns disc volumes into class probabilities per task (optionally the
mean over the paper's 54 test views); :func:`evaluate` scores a model on a
:class:`~spinenet_lite.datasets.cache.DiscDataset` and returns an :class:`EvalResult` holding,
beside the model's numbers, the label-noise ceiling and the intra-rater agreement on the
same discs and the paper's own numbers.

Introduced in the book's chapter 5 (evaluation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import resolve_device
from ..errors import InputError
from ..metrics import classification as metrics
from ..nn.augment import apply_transforms, tta_transforms
from ..progress import tqdm
from ..results import markdown_table, to_jsonable
from ..tasks import MISSING, N_CLASSES, PAPER_INTRA_RATER, PAPER_LOOTUS, PAPER_TABLE2, TASK_NAMES, TASKS

__all__ = ["EvalResult", "evaluate", "predict", "predict_labels", "paper_reference", "run_model"]

N_TTA_VIEWS = 54
"""Number of test-time views: 9 crops x 2 slice flips x 3 slice windows."""


def _as_float_tensor(volumes: Any, device):
    """(N, 9, H, W) uint8 or float array / tensor -> float32 tensor in [0, 1] on ``device``."""
    import torch

    x = volumes if isinstance(volumes, torch.Tensor) else torch.from_numpy(np.asarray(volumes))
    if x.ndim == 3:
        raise InputError(
            f"volumes has shape {tuple(x.shape)}: one disc volume; pass a batch (N, 9, H, W), "
            "e.g. volume[None]"
        )
    if x.ndim != 4 or x.shape[1] != 9:
        raise InputError(
            f"volumes must have shape (N, 9, 112, 224) (discs, slices, rows, columns), got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        return x.to(device=device, dtype=torch.float32) / 255.0
    if not (x.is_floating_point()):
        raise InputError(f"volumes must be uint8 (intensity x 255) or float in [0, 1], got {x.dtype}")
    x = x.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(x).all()):
        raise InputError("volumes hold NaN or infinite values; re-extract the discs")
    return x


def _tile_transforms(t: Any, reps: int) -> Any:
    """Repeat a batch of ``V`` per-sample transforms ``reps`` times -> ``reps * V`` transforms."""
    import torch

    if not dataclasses.is_dataclass(t):
        raise TypeError(f"expected a Transforms dataclass, got {type(t).__name__}")
    new = {}
    for f in dataclasses.fields(t):
        v = getattr(t, f.name)
        if isinstance(v, torch.Tensor) and v.ndim >= 1:
            new[f.name] = v.repeat(reps, *([1] * (v.ndim - 1)))
    return dataclasses.replace(t, **new)


def _tta_views(device):
    """The paper's 54 test views (``augment.tta_transforms``) and the function applying them."""

    return tta_transforms(device), apply_transforms


def run_model(
    model: Any,
    volumes: Any,
    *,
    tta: bool = False,
    probabilities: bool = True,
    batch_size: int = 128,
    device: Any = None,
    bf16: bool = False,
    channels_last: bool = False,
    tasks: Sequence[str] = TASK_NAMES,
    progress: bool | None = False,
) -> dict[str, Any]:
    """The one inference loop: ``model``'s outputs for every disc, in batches, without gradients.

    :func:`predict` (probabilities, the paper's 54-view TTA), the training loop's
    :func:`~spinenet_lite.engine.training.predict_logits` (plain logits, bf16 on CUDA) and
    :func:`~spinenet_lite.explain.predict_classes` all call it. It stays one function (over 100
    lines with its parameters) on purpose: the batching, the TTA tiling and the forward share
    the model, device, view and output locals, and one loop is easier to check than pieces.

    Parameters
    ----------
    model : nn.Module
        Maps ``(B, 9, H, W)`` float32 to ``{task: (B, C_t) logits}``; moved to ``device`` and
        run in eval mode (its training flag is restored afterwards).
    volumes : array_like or Tensor, shape (N, 9, H, W)
        uint8 (intensity x 255) or float in [0, 1]; numpy arrays, memory maps and tensors.
    tta : bool
        Average over the paper's 54 test views (see :func:`predict`); False: the plain view.
    probabilities : bool
        True: softmax probabilities (averaged over the views); False: logits (``tta`` False).
    batch_size : int
        Number of (disc, view) inputs per forward pass.
    device : str, torch.device or None
        See :func:`spinenet_lite.config.resolve_device`; None and ``"auto"``: the model's device.
    bf16, channels_last : bool
        bfloat16 autocast and the channels-last layout, on CUDA only.
    tasks : sequence of str
        The outputs to return (and that the model must give).
    progress : bool or None
        Show a tqdm bar (``None``: only on a TTY).

    Returns
    -------
    dict of str to Tensor (N, C_t) float32 on the CPU
    """
    import torch


    if int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    if tta and not probabilities:
        raise InputError("the 54-view TTA averages probabilities; pass probabilities=True")
    batch_size = int(batch_size)
    dev = resolve_device(device, model)
    n = len(volumes)
    if n == 0:
        return {t: torch.zeros((0, N_CLASSES[t])) for t in tasks}
    # check shape / dtype on the first disc before any work
    _as_float_tensor(volumes[:1], "cpu")
    cuda = dev.type == "cuda"
    if tta:
        views, apply = _tta_views(dev)
        n_views = int(views.shift_x.shape[0])
        discs_per_chunk = max(1, batch_size // n_views)
    else:
        n_views = 1
        discs_per_chunk = batch_size

    def outputs_of(x: torch.Tensor) -> dict[str, torch.Tensor]:
        if cuda and channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and bf16):
            logits = model(x)
        missing = [t for t in tasks if not isinstance(logits, dict) or t not in logits]
        if missing:
            raise InputError(f"the model's forward must return a dict of logits keyed by task names; "
                             f"it has no output for task(s) {', '.join(missing)}")
        if probabilities:
            return {t: torch.softmax(logits[t].float(), dim=1) for t in tasks}
        return {t: logits[t].float() for t in tasks}

    out: dict[str, list[torch.Tensor]] = {t: [] for t in tasks}
    bar = tqdm(total=n, desc="predict" + (" (54-view TTA)" if tta else ""), unit="disc",
               disable=(None if progress is None else not progress), leave=False)
    was_training = model.training
    model = model.to(dev).eval()
    try:
        with torch.no_grad():
            for lo in range(0, n, discs_per_chunk):
                hi = min(n, lo + discs_per_chunk)
                x = _as_float_tensor(volumes[lo:hi], dev)
                b = hi - lo
                if tta:
                    x = apply(x.repeat_interleave(n_views, dim=0), _tile_transforms(views, b),
                              intensity=False)
                acc: dict[str, list[torch.Tensor]] = {t: [] for t in tasks}
                for s in range(0, len(x), batch_size):
                    o = outputs_of(x[s:s + batch_size])
                    for t in tasks:
                        acc[t].append(o[t])
                for t in tasks:
                    v = torch.cat(acc[t])
                    out[t].append((v.reshape(b, n_views, -1).mean(dim=1) if tta else v).cpu())
                bar.update(b)
    finally:
        model.train(was_training)
        bar.close()
    return {t: torch.cat(v) for t, v in out.items()}


def predict(
    model: Any,
    volumes: Any,
    *,
    tta: bool = True,
    batch_size: int = 128,
    device: Any = "auto",
    progress: bool | None = False,
) -> dict[str, np.ndarray]:
    """Class probabilities per task, optionally averaged over the 54 test-time views.

    Parameters
    ----------
    model : SpineNet
        ``forward(x (B, 9, H, W)) -> {task: logits (B, C_t)}``; put in eval mode here.
    volumes : ndarray or Tensor, shape (N, 9, H, W)
        uint8 (intensity x 255, as in the disc cache) or float in [0, 1]. Not modified.
    tta : bool
        True: the mean of the softmax over the paper's 54 views (centre crop and 8 crops
        at ±16 px, x slice-order flip, x slice window shifted by -1 / 0 / +1). False: the
        plain centre view.
    batch_size : int
        Number of (disc, view) inputs per forward pass.
    device : str or torch.device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``...
    progress : bool or None
        Show a tqdm bar (``None``: only on a TTY).

    Returns
    -------
    dict
        ``{task: ndarray (N, C_t) float32}``, rows summing to 1, keyed by ``TASK_NAMES``.
    """
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    dev = resolve_device(device)
    probs = run_model(model, volumes, tta=tta, batch_size=batch_size, device=dev, progress=progress)
    return {t: probs[t].numpy() for t in TASK_NAMES}


def predict_labels(probs: dict[str, np.ndarray]) -> np.ndarray:
    """Arg-max class per task.

    Parameters
    ----------
    probs : dict
        ``{task: (N, C_t)}`` as returned by :func:`predict`.

    Returns
    -------
    ndarray of int16, shape (N, T)
        Columns in ``TASK_NAMES`` order.
    """
    return np.stack([np.asarray(probs[t]).argmax(axis=1) for t in TASK_NAMES], axis=1).astype(np.int16)


def paper_reference(branch_point: str = "conv5") -> dict[str, Any]:
    """The paper's numbers for one branch point, as fractions keyed by task.

    Returns
    -------
    dict
        ``{"per_class_accuracy": {task: mean}, "std": {task: std}, "intra_rater": {task:
        float}, "lootus": {protocol: {"previous": float, "spinenet": float}}}``.
    """
    if branch_point not in PAPER_TABLE2:
        raise InputError(f"unknown branch point {branch_point!r}; use one of {', '.join(PAPER_TABLE2)}")
    row = PAPER_TABLE2[branch_point]
    return {
        "branch_point": branch_point,
        "per_class_accuracy": {t: row[t][0] for t in TASK_NAMES},
        "std": {t: row[t][1] for t in TASK_NAMES},
        "intra_rater": dict(PAPER_INTRA_RATER),
        "lootus": {k: {"previous": a, "spinenet": b} for k, (a, b) in PAPER_LOOTUS.items()},
    }


@dataclass
class EvalResult:
    """The scores of one model on one set of discs, with their references.

    Attributes
    ----------
    tasks : dict
        ``{task: {"per_class_accuracy": float, "n": int, "confusion": ndarray (C, C),
        "recall": ndarray (C,)}}`` against the observed (rater) labels.
    lootus : dict
        ``{"pfirrmann_within_1": float, "narrowing_binary": float}``.
    ceiling : dict or None
        Label-noise ceiling per task (true labels scored against the observed ones); None
        when the data set has no true labels (real scans).
    ceiling_lootus : dict or None
        Lootus's protocols scored for the true labels against the observed ones.
    intra_rater : dict or None
        Agreement of the two readings per task; None without a second reading.
    true_labels_accuracy : dict or None
        Per-class accuracy of the model against the phantom's true labels.
    paper : dict
        :func:`paper_reference` for the conv5 branch point.
    n_discs, n_patients : int
    tta : bool
    predictions : ndarray (N, T) int16
    probs : dict of ndarray (N, C_t) float32
    """

    tasks: dict[str, dict[str, Any]]
    lootus: dict[str, float]
    ceiling: dict[str, float] | None
    ceiling_lootus: dict[str, float] | None
    intra_rater: dict[str, float] | None
    true_labels_accuracy: dict[str, float] | None
    paper: dict[str, Any]
    n_discs: int
    n_patients: int
    tta: bool
    predictions: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, len(TASKS)), np.int16))
    probs: dict[str, np.ndarray] = field(repr=False, default_factory=dict)

    def per_class_accuracy(self) -> dict[str, float]:
        """``{task: average per-class accuracy}``."""
        return {t: v["per_class_accuracy"] for t, v in self.tasks.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (fractions in [0, 1], keyed by task; no probabilities)."""

        return to_jsonable({
            "per_class_accuracy": self.per_class_accuracy(),
            "tasks": self.tasks,
            "lootus": self.lootus,
            "ceiling": self.ceiling,
            "ceiling_lootus": self.ceiling_lootus,
            "intra_rater": self.intra_rater,
            "true_labels_accuracy": self.true_labels_accuracy,
            "paper": self.paper,
            "n_discs": self.n_discs,
            "n_patients": self.n_patients,
            "tta": self.tta,
        })

    def to_markdown(self) -> str:
        """Two Markdown tables (per task; Lootus's protocol), percentages with one decimal."""
        def pct(v: Any) -> str:
            return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"

        tasks = markdown_table(
            ["Task", "Ours", "n", "Label-noise ceiling", "Intra-rater (ours)", "Paper (conv5)",
             "Paper intra-rater"],
            [[task.title, pct(self.tasks[task.name]["per_class_accuracy"]), self.tasks[task.name]["n"],
              pct((self.ceiling or {}).get(task.name)), pct((self.intra_rater or {}).get(task.name)),
              pct(self.paper["per_class_accuracy"][task.name]), pct(self.paper["intra_rater"][task.name])]
             for task in TASKS],
            align="-rrrrrr")
        lootus = markdown_table(
            ["Protocol", "Ours", "Label-noise ceiling", "Paper: Lootus et al.", "Paper: SpineNet"],
            [[k, pct(v), pct((self.ceiling_lootus or {}).get(k)), pct(self.paper["lootus"][k]["previous"]),
              pct(self.paper["lootus"][k]["spinenet"])] for k, v in self.lootus.items()],
            align="-rrrr")
        return (f"Average per-class accuracy (%) on {self.n_discs} discs of {self.n_patients} patients"
                f" ({'54-view TTA' if self.tta else 'no TTA'}).\n\n" + tasks + "\n"
                "Lootus's protocol (%): Pfirrmann correct within one grade; narrowing normal / abnormal.\n\n"
                + lootus)


class _Rows:
    """Lazy row selection ``volumes[idx]`` read chunk by chunk (keeps memmaps on disk)."""

    def __init__(self, volumes: Any, idx: np.ndarray) -> None:
        self.volumes, self.idx = volumes, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, sl: slice) -> np.ndarray:
        return np.asarray(self.volumes[self.idx[sl]])


def _optional_labels(dataset: Any, name: str, idx: np.ndarray) -> np.ndarray | None:
    a = getattr(dataset, name, None)
    if a is None:
        return None
    a = np.asarray(a)[idx]
    if a.size == 0 or np.all(a == MISSING):
        return None
    return a


def evaluate(
    model: Any,
    dataset: Any,
    idx: Any = None,
    tta: bool = True,
    *,
    batch_size: int = 128,
    device: Any = "auto",
    progress: bool | None = False,
) -> EvalResult:
    """Score ``model`` on the discs ``idx`` of ``dataset`` against its observed labels.

    Parameters
    ----------
    model : SpineNet
    dataset : DiscDataset
        With ``.volumes`` (N, 9, H, W) uint8, ``.labels`` (N, T) int (observed, the
        reference), and optionally ``.true_labels`` and ``.reread_labels`` (N, T)
        (synthetic cohorts) and ``.patients`` (N,).
    idx : array_like of int, optional
        Indices of the discs to score (e.g. the test split); default all.
    tta : bool
        54-view test-time augmentation (see :func:`predict`).
    batch_size, device, progress
        Passed to :func:`predict`.

    Returns
    -------
    EvalResult
    """
    for attr in ("volumes", "labels"):
        if not hasattr(dataset, attr):
            raise InputError(f"dataset has no .{attr}; pass a DiscDataset "
                             "(spinenet_lite.datasets.cache.load_cache)")
    n_all = len(dataset.labels)
    idx = np.arange(n_all) if idx is None else np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise InputError("no discs to evaluate: the index list is empty")
    if idx.min() < -n_all or idx.max() >= n_all:
        raise InputError(f"disc indices must lie in 0..{n_all - 1}, got {idx.min()}..{idx.max()}")
    idx = idx % n_all
    observed = np.asarray(dataset.labels)[idx]
    probs = predict(model, _Rows(dataset.volumes, idx), tta=tta, batch_size=batch_size, device=device,
                    progress=progress)
    pred = predict_labels(probs)

    true = _optional_labels(dataset, "true_labels", idx)
    reread = _optional_labels(dataset, "reread_labels", idx)
    patients = getattr(dataset, "patients", None)
    n_patients = len(np.unique(np.asarray(patients)[idx])) if patients is not None else 0
    ceiling = metrics.label_noise_ceiling(true, observed) if true is not None else None
    return EvalResult(
        tasks=metrics.task_metrics(observed, pred),
        lootus=metrics.lootus_metrics(observed, pred),
        ceiling=ceiling,
        ceiling_lootus=metrics.lootus_metrics(observed, true) if true is not None else None,
        intra_rater=metrics.intra_rater_agreement(observed, reread) if reread is not None else None,
        true_labels_accuracy=(
            {t: v["per_class_accuracy"] for t, v in metrics.task_metrics(true, pred).items()}
            if true is not None else None
        ),
        paper=paper_reference("conv5"),
        n_discs=int(idx.size),
        n_patients=int(n_patients),
        tta=bool(tta),
        predictions=pred,
        probs=probs,
    )
