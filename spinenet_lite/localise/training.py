"""Training data, training loop and measurement of the vertebra localiser.

Introduced in chapter 08, *Real scans*. The localiser's network
(:class:`~spinenet_lite.localise.net.LocaliserNet`) learns a vertebral-body mask per
slice from two sources, both on the working grid of :mod:`spinenet_lite.localise.inference`:

- **SPIDER T2 SPACE** slices (real): the vertebra label (76) minus the posterior elements,
  i.e. only the part anterior to the spinal canal's front edge (:func:`spider_body_mask`).
  The 30 patients are split by patient (:func:`split_patients`: 20 train / 4 val / 6 test).
- **Synthetic studies** of :mod:`spinenet_lite.phantom`: each body's corner quadrilateral
  rasterised per slice (:func:`phantom_body_mask`).

Training (:func:`train_localiser`) takes random 128 x 128 crops, half real and half
synthetic, with light augmentation (rotation, scale, contrast, gamma, noise), and a
BCE + Dice loss. :func:`measure` scores a network on held-out studies: disc levels
found, level accuracy and disc-centre error in mm.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pooch
import torch
from skimage.draw import polygon2mask
from torch.nn import functional as F

from ..datasets.cache import patient_folds
from ..datasets.spider import default_spider_dir
from ..errors import InputError
from ..extract.landmarks import (
    SPIDER_CANAL,
    SPIDER_VERTEBRA,
    corners_from_vertebra_mask,
    read_space_study,
    space_patients,
)
from ..phantom import PhantomConfig, synth_patient
from ..progress import tqdm
from ..results import git_commit, markdown_table, write_results
from ..tasks import LEVELS
from .inference import (
    WORK_SPACING_MM,
    default_weights_path,
    disc_centres,
    load_localiser,
    localise,
    save_localiser,
    to_work_grid,
)
from .net import LocaliserNet, n_parameters


@dataclass
class LocaliserTrainConfig:
    """Everything that decides a localiser training run.

    Attributes
    ----------
    epochs : int
        Epochs of ``steps_per_epoch`` optimiser steps.
    steps_per_epoch : int
    batch_size : int
        Crops per step (half SPIDER, half synthetic when both exist).
    crop : int
        Crop side in working pixels (multiple of 8).
    width : int
        Network width (channels of its first level).
    lr : float
        Adam learning rate (cosine decay to 0).
    n_phantom : int
        Synthetic training studies (``synth_patient(10000 + i, phantom_seed)``).
    phantom_seed : int
        Cohort seed of the synthetic studies.
    slices_per_study : int
        At most this many slices per synthetic study (spread around the middle).
    spider_slice_step : int
        Every n-th SPIDER T2 SPACE slice (neighbouring slices are 1 mm apart).
    split_seed : int
        Seed of the patient split.
    """

    epochs: int = 5
    steps_per_epoch: int = 80
    batch_size: int = 8
    crop: int = 128
    width: int = 8
    lr: float = 3e-3
    n_phantom: int = 30
    phantom_seed: int = 0
    slices_per_study: int = 8
    spider_slice_step: int = 2
    split_seed: int = 0


# ------------------------------------------------------------------ data
def split_patients(patients: list[str], seed: int = 0, n_val: int = 4,
                   n_test: int = 6) -> dict[str, list[str]]:
    """Patient-level split ``{"train", "val", "test"}`` (each list sorted numerically).

    The patients, sorted numerically, in the seeded order of
    :func:`spinenet_lite.datasets.patient_folds` (one patient a fold): the first ``n_test`` go to
    test, the next ``n_val`` to validation, the rest to training.
    """
    def key(s: str) -> tuple[int, str]:
        return (len(s), s)

    ids = sorted(set(patients), key=key)
    if len(ids) < n_val + n_test + 1:
        raise InputError(f"need at least {n_val + n_test + 1} patients to split; got {len(ids)}")
    rank = [f"{i:09d}" for i in range(len(ids))]  # ranks sort as ids do: the shuffle starts from that order
    order = [ids[int(fold[0])] for fold in patient_folds(rank, len(ids), seed)]
    return {"train": sorted(order[n_test + n_val:], key=key),
            "val": sorted(order[n_test:n_test + n_val], key=key),
            "test": sorted(order[:n_test], key=key)}


def spider_body_mask(mask: np.ndarray) -> np.ndarray:
    """Vertebral bodies of a SPIDER label mask: vertebra pixels anterior to the canal.

    Parameters
    ----------
    mask : ndarray, shape (S, H, W), uint8
        SPIDER labels (76 vertebra, 150 canal).

    Returns
    -------
    ndarray, shape (S, H, W), bool
        Vertebra pixels whose column is at most 2 px behind the canal's front edge in that
        row (the slice's own canal; where a slice has none, the front-most canal edge of
        all slices; rows without canal anywhere interpolated between rows).
    """

    m = np.asarray(mask)
    if m.ndim == 2:
        m = m[None]
    S, H, W = m.shape
    canal = m == SPIDER_CANAL
    cols = np.arange(W)
    # (S, H): column of the canal's front edge per slice and row
    first = np.where(canal.any(axis=2), np.where(canal, cols, W).min(axis=2), np.nan).astype(np.float64)
    pooled = np.nanmin(np.where(np.isnan(first), np.inf, first), axis=0)
    pooled[~np.isfinite(pooled)] = np.nan
    rows = np.arange(H)
    good = ~np.isnan(pooled)
    if not good.any():
        return m == SPIDER_VERTEBRA
    pooled = np.interp(rows, rows[good], pooled[good])
    edge = np.where(np.isnan(first), pooled[None], first)
    return (m == SPIDER_VERTEBRA) & (cols[None, None, :] <= edge[:, :, None] + 2)


def phantom_body_mask(corners: np.ndarray, shape: tuple[int, int],
                      scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Rasterise every body's corner quadrilateral per slice.

    Parameters
    ----------
    corners : ndarray, shape (7, S, 4, 2)
        Scan voxel ``(row, col)`` corners, NaN where absent.
    shape : (int, int)
        ``(h, w)`` of the output grid.
    scale : (float, float)
        Scan voxels per output pixel (as returned by :func:`~spinenet_lite.localise.inference.to_work_grid`).

    Returns
    -------
    ndarray, shape (S, h, w), bool
    """
    c = np.asarray(corners, dtype=np.float64)
    out = np.zeros((c.shape[1], *shape), dtype=bool)
    sr, sc = scale
    for v in range(c.shape[0]):
        for s in range(c.shape[1]):
            q = c[v, s]
            if np.isnan(q).any():
                continue
            work = np.stack([(q[:, 0] + 0.5) / sr - 0.5, (q[:, 1] + 0.5) / sc - 0.5], axis=1)
            out[s] |= polygon2mask(shape, work)
    return out


def _mask_to_work(mask: np.ndarray, size: tuple[int, int], pad_to: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(mask.astype(np.float32))[:, None]
    r = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)[:, 0] > 0.5
    r = F.pad(r, (0, pad_to[1] - size[1], 0, pad_to[0] - size[0]))
    return r.numpy()


@dataclass
class SliceSet:
    """Training slices on the working grid (variable sizes).

    Attributes
    ----------
    images : list of ndarray (h, w) float16
        Normalised intensities.
    masks : list of ndarray (h, w) bool
        Body masks.
    source : list of str
        ``"spider"`` or ``"phantom"`` per slice.
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    source: list[str]

    def __len__(self) -> int:
        return len(self.images)


def spider_slices(spider_dir: str | os.PathLike, patients: list[str], step: int = 1) -> SliceSet:
    """Every ``step``-th T2 SPACE slice of ``patients`` with its body mask, on the working grid."""

    imgs, masks = [], []
    for p in patients:
        scan, mask = read_space_study(spider_dir, p)
        keep = np.arange(0, scan.n_slices, step)
        x, size, _ = to_work_grid(scan.volume[keep], scan.pixel_spacing)
        body = _mask_to_work(spider_body_mask(mask[keep]), size, tuple(x.shape[2:]))
        imgs += [a[0].numpy().astype(np.float16) for a in x]
        masks += list(body)
    return SliceSet(imgs, masks, ["spider"] * len(imgs))


def phantom_slices(indices: list[int], seed: int, per_study: int = 8, fast_every: int = 3) -> SliceSet:
    """Slices of synthetic studies ``synth_patient(i, seed)`` with rasterised body masks.

    Every ``fast_every``-th study uses :meth:`PhantomConfig.fast` (1 mm pixels), the
    others the default configuration.
    """

    imgs, masks = [], []
    for k, i in enumerate(indices):
        cfg = PhantomConfig.fast() if fast_every and k % fast_every == 0 else PhantomConfig()
        st = synth_patient(int(i), int(seed), cfg)
        S = st.scan.n_slices
        keep = np.unique(np.linspace(0, S - 1, min(per_study, S)).round().astype(int))
        x, size, scale = to_work_grid(st.scan.volume[keep], st.scan.pixel_spacing)
        body = phantom_body_mask(st.corners[:, keep], tuple(x.shape[2:]), scale)
        imgs += [a[0].numpy().astype(np.float16) for a in x]
        masks += list(body)
    return SliceSet(imgs, masks, ["phantom"] * len(imgs))


# ------------------------------------------------------------------ training
def _crop(img: np.ndarray, mask: np.ndarray, crop: int,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    ph, pw = max(0, crop - h), max(0, crop - w)
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)))
        mask = np.pad(mask, ((0, ph), (0, pw)))
        h, w = img.shape
    # centre crops on the mask half of the time so that most crops hold bodies
    if mask.any() and rng.random() < 0.5:
        rr, cc = np.nonzero(mask)
        j = rng.integers(len(rr))
        r0 = int(np.clip(rr[j] - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, h - crop))
        c0 = int(np.clip(cc[j] - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, w - crop))
    else:
        r0, c0 = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return img[r0:r0 + crop, c0:c0 + crop], mask[r0:r0 + crop, c0:c0 + crop]


def make_batch(data: SliceSet, n: int, crop: int, rng: np.random.Generator,
               augment: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A random augmented batch ``x (n, 1, crop, crop)`` float32, ``y (n, 1, crop, crop)`` float32.

    Half the crops come from SPIDER slices and half from synthetic ones (when both exist).
    Augmentation: rotation +-12 deg, scale 0.85-1.2, contrast 0.8-1.25, brightness +-0.1,
    gamma 0.7-1.4, Gaussian noise (sd up to 0.05).
    """
    groups = [np.array([i for i, s in enumerate(data.source) if s == src]) for src in ("spider", "phantom")]
    groups = [g for g in groups if len(g)]
    if not groups:
        raise InputError("no training slices")
    xs, ys = [], []
    for k in range(n):
        g = groups[k % len(groups)]
        i = int(g[rng.integers(len(g))])
        a, b = _crop(data.images[i].astype(np.float32), data.masks[i], crop, rng)
        xs.append(a)
        ys.append(b.astype(np.float32))
    x = torch.from_numpy(np.stack(xs))[:, None]
    y = torch.from_numpy(np.stack(ys))[:, None]
    if not augment:
        return x, y
    ang = np.deg2rad(rng.uniform(-12, 12, n))
    sc = rng.uniform(0.85, 1.2, n)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = np.cos(ang) / sc
    theta[:, 0, 1] = -np.sin(ang) / sc
    theta[:, 1, 0] = np.sin(ang) / sc
    theta[:, 1, 1] = np.cos(ang) / sc
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).float()
    gamma = torch.from_numpy(rng.uniform(0.7, 1.4, (n, 1, 1, 1)).astype(np.float32))
    x = x.clamp(min=0) ** gamma
    x = x * torch.from_numpy(rng.uniform(0.8, 1.25, (n, 1, 1, 1)).astype(np.float32))
    x = x + torch.from_numpy(rng.uniform(-0.1, 0.1, (n, 1, 1, 1)).astype(np.float32))
    noise = torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32))
    x = x + noise * torch.from_numpy(rng.uniform(0.0, 0.05, (n, 1, 1, 1)).astype(np.float32))
    return x, y


def seg_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss (scalar)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def dice_score(net: LocaliserNet, data: SliceSet) -> float:
    """Mean Dice of thresholded predictions over whole slices of ``data`` (eval mode)."""
    was = net.training
    net.eval()
    scores = []
    with torch.no_grad():
        for img, m in zip(data.images, data.masks):
            p = torch.sigmoid(net(torch.from_numpy(img.astype(np.float32))[None, None]))[0, 0].numpy() > 0.5
            scores.append((2 * (p & m).sum() + 1) / (p.sum() + m.sum() + 1))
    net.train(was)
    return float(np.mean(scores)) if scores else float("nan")


def train_localiser(train: SliceSet, config: LocaliserTrainConfig, *, seed: int = 0,
                    val: SliceSet | None = None,
                    progress: bool = True) -> tuple[LocaliserNet, list[dict[str, float]]]:
    """Train a :class:`LocaliserNet` on ``train``.

    Parameters
    ----------
    train : SliceSet
    config : LocaliserTrainConfig
    seed : int
        Seeds the network's initialisation and the batch sampler.
    val : SliceSet, optional
        Scored with :func:`dice_score` after every epoch.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    net : LocaliserNet
        In eval mode, on the CPU.
    history : list of dict
        Per epoch: ``epoch``, ``loss`` (mean training loss), ``val_dice``, ``time_s``.
    """

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = LocaliserNet(config.width)
    total = config.epochs * config.steps_per_epoch
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=max(total, 2),
                                                pct_start=0.1 if total >= 20 else 0.5)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    bar = tqdm(total=total, desc="train-localiser", disable=not progress)
    net.train()
    for epoch in range(config.epochs):
        losses = []
        for _ in range(config.steps_per_epoch):
            x, y = make_batch(train, config.batch_size, config.crop, rng)
            loss = seg_loss(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
               "val_dice": dice_score(net, val) if val is not None and len(val) else float("nan"),
               "time_s": time.perf_counter() - t0}
        history.append(rec)
    bar.close()
    return net.eval(), history


# ------------------------------------------------------------------ measurement
def score_study(pred: np.ndarray, truth: np.ndarray, pixel_spacing: tuple[float, float],
                slices: np.ndarray | None = None, tol_mm: float = 3.0) -> dict[str, Any]:
    """Compare predicted and true corners of one study.

    Parameters
    ----------
    pred, truth : ndarray, shape (7, S, 4, 2)
        Voxel corners, NaN where absent.
    pixel_spacing : (float, float)
        mm per voxel (row, col).
    slices : ndarray of int, optional
        Only these slices (default all).
    tol_mm : float
        A true disc counts as found when the predicted disc of the same level lies within this.

    Returns
    -------
    dict
        ``n_true`` (true discs: level x slice), ``n_found`` (a predicted disc of the same
        level exists), ``n_within`` (and within ``tol_mm``), ``n_pred`` (predicted discs on
        slices with truth), ``n_level_ok`` (predicted discs whose nearest true disc on that
        slice has the same level), ``errors_mm`` (list of centre errors of found discs).
    """
    ps = np.asarray(pixel_spacing, dtype=np.float64)
    pc = disc_centres(pred) * ps
    tc = disc_centres(truth) * ps
    if slices is not None:
        pc, tc = pc[:, slices], tc[:, slices]
    has_t = ~np.isnan(tc).any(-1)
    has_p = ~np.isnan(pc).any(-1)
    found = has_t & has_p
    err = np.linalg.norm(pc - tc, axis=-1)
    n_pred = n_ok = 0
    for s in range(tc.shape[1]):
        tl = np.nonzero(has_t[:, s])[0]
        if not len(tl):
            continue
        for i in np.nonzero(has_p[:, s])[0]:
            n_pred += 1
            d = np.linalg.norm(tc[tl, s] - pc[i, s], axis=-1)
            n_ok += int(tl[np.argmin(d)] == i)
    return {"n_true": int(has_t.sum()), "n_found": int(found.sum()),
            "n_within": int((found & (err <= tol_mm)).sum()),
            "n_pred": n_pred, "n_level_ok": n_ok, "errors_mm": err[found].tolist()}


def _summarise(rows: list[dict[str, Any]], tol_mm: float) -> dict[str, Any]:
    tot = {k: sum(r[k] for r in rows) for k in ("n_true", "n_found", "n_within", "n_pred", "n_level_ok")}
    errs = np.concatenate([np.asarray(r["errors_mm"], dtype=float) for r in rows]) if rows else np.zeros(0)
    return {
        "n_studies": len(rows), **tot,
        "found": tot["n_found"] / max(tot["n_true"], 1),
        f"found_within_{tol_mm:g}mm": tot["n_within"] / max(tot["n_true"], 1),
        "level_accuracy": tot["n_level_ok"] / max(tot["n_pred"], 1),
        "centre_error_mm_median": float(np.median(errs)) if len(errs) else float("nan"),
        "centre_error_mm_mean": float(np.mean(errs)) if len(errs) else float("nan"),
        "centre_error_mm_p90": float(np.percentile(errs, 90)) if len(errs) else float("nan"),
    }


def measure(net: LocaliserNet, studies: list[tuple[Any, np.ndarray, int]],
            tol_mm: float = 3.0, lowest: str = "auto") -> dict[str, Any]:
    """Score the localiser on studies with known corners.

    Parameters
    ----------
    net : LocaliserNet
    studies : list of (Scan, ndarray (7, S, 4, 2), int)
        Scan, true corners and its middle slice index.
    tol_mm : float
    lowest : str
        How the localiser names its lowest body (:func:`~spinenet_lite.localise.inference.localise`).

    Returns
    -------
    dict
        ``all_slices`` and ``mid_slice`` summaries (see :func:`score_study` for the counts;
        ``found``, ``found_within_<tol>mm``, ``level_accuracy`` fractions in [0, 1], centre
        errors in mm), plus ``six_levels_mid`` (fraction of studies with all six levels on
        the middle slice).
    """
    rows_all, rows_mid, six = [], [], 0
    for scan, truth, mid in studies:
        loc = localise(scan, net=net, min_discs=0, lowest=lowest)
        rows_all.append(score_study(loc.corners, truth, scan.pixel_spacing, tol_mm=tol_mm))
        rows_mid.append(score_study(loc.corners, truth, scan.pixel_spacing, np.array([mid]), tol_mm=tol_mm))
        dc = disc_centres(loc.corners)[:, mid]
        six += int((~np.isnan(dc).any(-1)).sum() == len(LEVELS))
    return {"all_slices": _summarise(rows_all, tol_mm), "mid_slice": _summarise(rows_mid, tol_mm),
            "six_levels_mid": six / max(len(studies), 1)}


def spider_test_studies(spider_dir: str | os.PathLike,
                        patients: list[str]) -> list[tuple[Any, np.ndarray, int]]:
    """``(scan, truth corners from the masks, middle slice)`` for SPIDER T2 SPACE patients."""
    import warnings


    out = []
    for p in patients:
        scan, mask = read_space_study(spider_dir, p)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            truth, _ = corners_from_vertebra_mask(mask)
        out.append((scan, truth, scan.n_slices // 2))
    return out


def phantom_test_studies(indices: list[int], seed: int) -> list[tuple[Any, np.ndarray, int]]:
    """``(scan, true corners, mid-sagittal slice)`` of ``synth_patient(i, seed)`` (default config)."""

    out = []
    for i in indices:
        st = synth_patient(int(i), int(seed))
        out.append((st.scan, st.corners, st.mid_slice))
    return out


# ------------------------------------------------------------------ the committed run
def _sha256(path: Path) -> str:
    """The project's one file hash, :func:`pooch.file_hash` (as ``engine.weights.sha256_file``)."""
    return pooch.file_hash(str(path), alg="sha256")


def _markdown(results: dict[str, Any]) -> str:
    rows = []
    for name in ("spider", "phantom"):
        for sl in ("mid_slice", "all_slices"):
            r = results.get("test", {}).get(name, {}).get(sl)
            if r:
                rows.append([f"{name} ({r['n_studies']} studies)", sl.replace("_", " "), r["n_true"],
                             f"{r['found']:.1%}", f"{r['found_within_3mm']:.1%}",
                             f"{r['level_accuracy']:.1%}", f"{r['centre_error_mm_median']:.2f}",
                             f"{r['centre_error_mm_p90']:.2f}"])
    header = ["test set", "slices", "true discs", "found", "found within 3 mm", "level accuracy",
              "median error (mm)", "p90 (mm)"]
    return ("# Vertebra localiser (teaching weights)\n\n"
            f"Weights `{results['weights']}` sha256 `{results['sha256']}`, "
            f"made by `{results['command']}`.\n\n" + markdown_table(header, rows))


def run_training(out: str | os.PathLike, config: LocaliserTrainConfig | None = None, *, seed: int = 0,
                 spider_dir: str | os.PathLike | None = None, n_phantom_test: int = 20, progress: bool = True,
                 results_tier: str | None = "teaching", command: str = "") -> dict[str, Any]:
    """Build the data, train, save the weights, measure on the test sets and write results.

    Parameters
    ----------
    out : path
        Weights file to write.
    config : LocaliserTrainConfig, optional
    seed : int
    spider_dir : path, optional
        SPIDER subset folder; default :func:`~spinenet_lite.datasets.spider.default_spider_dir`.
        When it is absent, only synthetic data is used (and recorded as such).
    n_phantom_test : int
        Held-out synthetic studies ``synth_patient(0 ... n-1, phantom_seed)`` (the committed
        cohort's first patients; training uses indices from 10000).
    progress : bool
    results_tier : str or None
        Write ``data/results/localiser_<tier>.json`` (+ ``.md``); None: do not write.
    command : str
        The command line to record.

    Returns
    -------
    dict
        The results (also written).
    """

    config = config or LocaliserTrainConfig()
    t0 = time.perf_counter()
    commit = git_commit()  # the code that runs, read before a run that may outlast a commit
    sdir = Path(spider_dir) if spider_dir is not None else default_spider_dir()
    have_spider = (sdir / "t2_space" / "images").is_dir()
    split = (split_patients(space_patients(sdir), config.split_seed) if have_spider
             else {"train": [], "val": [], "test": []})
    train = phantom_slices(list(range(10000, 10000 + config.n_phantom)), config.phantom_seed,
                           config.slices_per_study)
    val = SliceSet([], [], [])
    if have_spider:
        sp = spider_slices(sdir, split["train"], config.spider_slice_step)
        train = SliceSet(sp.images + train.images, sp.masks + train.masks, sp.source + train.source)
        val = spider_slices(sdir, split["val"], 4)
    t_data = time.perf_counter() - t0
    net, history = train_localiser(train, config, seed=seed, val=val, progress=progress)
    t_train = time.perf_counter() - t0 - t_data
    path = save_localiser(net, out, seed=int(seed), split_train=",".join(split["train"]))
    phantom_test = phantom_test_studies(list(range(n_phantom_test)), config.phantom_seed)
    test: dict[str, Any] = {"phantom": measure(net, phantom_test)}
    if have_spider:
        test["spider"] = measure(net, spider_test_studies(sdir, split["test"]))

    results = {
        "weights": str(path.as_posix()) if not path.is_absolute() else path.name,
        "sha256": _sha256(path), "size_bytes": path.stat().st_size, "command": command,
        "n_parameters": n_parameters(net), "work_spacing_mm": WORK_SPACING_MM,
        "split": split,
        "phantom_train": f"synth_patient(10000..{10000 + config.n_phantom - 1}, seed={config.phantom_seed})",
        "phantom_test": f"synth_patient(0..{n_phantom_test - 1}, seed={config.phantom_seed}), "
                        "default PhantomConfig",
        "n_train_slices": {"spider": sum(s == "spider" for s in train.source),
                           "phantom": sum(s == "phantom" for s in train.source)},
        "history": history, "data_time_s": t_data, "train_time_s": t_train, "test": test,
    }
    if results_tier:
        write_results("localiser", results_tier, results, config=asdict(config), seed=seed, device="cpu",
                      wall_time_s=time.perf_counter() - t0, markdown=_markdown(results), commit=commit)
    return results


LEVEL_RULES: dict[str, str] = {"lowest_is_S1": "S1", "auto": "auto"}
"""The level-naming rules :func:`score_levels` compares: the rule before (the lowest body found is
S1 on every scan) and ``localise(lowest="auto")`` (L5 on a real scan)."""


def score_levels(weights: str | os.PathLike | None = None, spider_dir: str | os.PathLike | None = None, *,
                 results_tier: str | None = "teaching", command: str = "") -> dict[str, Any]:
    """The shipped localiser's level naming on every SPIDER T2 SPACE split, under each rule.

    The truth is ``corners_from_vertebra_mask(mask)`` with ``lowest="auto"`` (the masks' lowest
    body is L5 when a disc lies below it). :data:`spinenet_lite.localise.inference.LOWEST_REAL`
    was set looking at the ``train`` patients only; ``val`` and ``test`` are the patients no
    rule was tuned on. Writes ``data/results/localiser_levels_<tier>.json`` (+ ``.md``).

    Returns
    -------
    dict
        ``{"spider": {rule: {split: measure(...)}}, "phantom": {rule: measure(...)}, "split",
        "weights", "sha256"}``.
    """
    t0 = time.perf_counter()
    commit = git_commit()
    sdir = Path(spider_dir) if spider_dir is not None else default_spider_dir()
    if not (sdir / "t2_space" / "images").is_dir():
        raise InputError(f"{sdir} has no t2_space/images: the level check needs the SPIDER subset")
    path = Path(weights) if weights is not None else default_weights_path()
    net = load_localiser(path)
    config = LocaliserTrainConfig()
    split = split_patients(space_patients(sdir), config.split_seed)
    studies = {part: spider_test_studies(sdir, patients) for part, patients in split.items()}
    phantom = phantom_test_studies(list(range(20)), config.phantom_seed)
    results: dict[str, Any] = {
        "weights": path.name, "sha256": _sha256(path), "command": command, "split": split,
        "rules": dict(LEVEL_RULES),
        "spider": {rule: {part: measure(net, st, lowest=low) for part, st in studies.items()}
                   for rule, low in LEVEL_RULES.items()},
        "phantom": {rule: measure(net, phantom, lowest=low) for rule, low in LEVEL_RULES.items()},
    }
    if results_tier:
        def row(name: str, rule: str, sl: str, r: dict[str, Any]) -> list[str]:
            return [name, rule, sl.replace("_", " "), f"{r['level_accuracy']:.1%}",
                    f"{r['found_within_3mm']:.1%}", f"{r['centre_error_mm_median']:.2f}"]
        rows = [row(f"SPIDER {part} ({len(split[part])})", rule, sl, results["spider"][rule][part][sl])
                for rule in LEVEL_RULES for part in split for sl in ("mid_slice", "all_slices")]
        rows += [row("phantom (20)", rule, "mid_slice", results["phantom"][rule]["mid_slice"])
                 for rule in LEVEL_RULES]
        md = ("# Localiser level naming\n\n" + markdown_table(
            ["studies", "rule", "slices", "level accuracy", "found within 3 mm", "median error (mm)"], rows))
        write_results("localiser_levels", results_tier, results, config=asdict(config), seed=0, device="cpu",
                      wall_time_s=time.perf_counter() - t0, markdown=md, commit=commit)
    return results
