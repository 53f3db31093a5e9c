"""Vertebra localiser: corners of T12 ... S1 on every slice of a scan with no annotations.

Introduced in chapter 08, *Real scans*. Three steps:

1. **Working grid.** Each slice is normalised by its own 1st / 99th intensity percentiles
   (:func:`normalise_slice`), resampled to square :data:`WORK_SPACING_MM` mm pixels and
   zero-padded to a multiple of 8 (:func:`to_work_grid`).
2. **Segmentation.** The small U-Net of :mod:`spinenet_lite.localise.net` gives a
   vertebral-body probability per pixel, for all slices in batches.
3. **Geometry.** :func:`spinenet_lite.extract.landmarks.corners_from_vertebra_mask` on the
   thresholded maps: connected components, components off the line of the spine dropped
   (:data:`OFF_AXIS`), order along the spine, levels counted **up** from the lowest body
   of the middle slice (S1, :data:`ANCHOR`), a minimum-area rectangle per body, consistent
   naming across slices. The corners are mapped back to the scan's voxel grid.

The shipped weights (``data/weights/localiser.pt``) were made by
``spinenet-lite train-localiser`` (:mod:`spinenet_lite.localise.training`); their sha256,
data split and measured accuracy are in ``data/results/localiser_teaching.json``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import InputError, LandmarkError, TooFewDiscsError, WeightsError
from ..extract.landmarks import corners_from_vertebra_mask
from ..io.scan import Scan
from ..paths import weights_dirs
from ..tasks import LEVELS, VERTEBRAE
from .net import MULTIPLE, LocaliserNet

WORK_SPACING_MM: float = 1.5
"""Pixel size (mm) of the grid the network sees."""
THRESHOLD: float = 0.5
"""Body probability above which a pixel is body."""
MIN_BODY_AREA_MM2: float = 120.0
"""Connected components smaller than this are not bodies."""
OFF_AXIS: float = 0.5
"""Components farther than this many body widths off the line of the spine are dropped."""
ANCHOR: str = "middle"
"""The lowest body of the middle slice names the levels (see ``corners_from_vertebra_mask(anchor=...)``)."""
LOWEST_REAL: str = "L5"
"""The name of the lowest body the localiser finds on a real scan (``localise(lowest="auto")``).

The network learnt bodies from SPIDER's T2 SPACE masks, which never label the sacrum, and from
phantom studies, whose sacrum is drawn. On real scans it does not mark the sacrum: on the middle
slice of the 20 SPIDER patients it was trained on, its lowest body was L5 on 19 (measured before
this rule was set; `spinenet-lite score-localiser` reports it on the patients no rule saw). On a
phantom study the lowest body is S1."""
WEIGHTS_VERSION: int = 1
"""Format version written into (and required of) a localiser weights file."""


def default_weights_path() -> Path:
    """``$SPINENET_LOCALISER_WEIGHTS``, else ``localiser.pt`` in the first weights folder holding it.

    The folders are :func:`spinenet_lite.paths.weights_dirs` (``data/weights`` of a checkout, the
    user cache); nothing is downloaded here (:func:`spinenet_lite.engine.weights.load_localiser`
    does that, hash-checked). Without a copy: the path in the first folder.
    """
    env = os.environ.get("SPINENET_LOCALISER_WEIGHTS")
    if env:
        return Path(env)
    folders = weights_dirs()
    return next((d / "localiser.pt" for d in folders if (d / "localiser.pt").is_file()),
                folders[0] / "localiser.pt")


@dataclass
class Localisation:
    """What the localiser found in one scan.

    Attributes
    ----------
    corners : ndarray, shape (7, S, 4, 2), float32
        Voxel ``(row, col)`` corners of ``VERTEBRAE`` (T12 ... S1) per slice, order sup-ant,
        sup-post, inf-post, inf-ant; NaN where a body was not found.
    levels : list of str
        Disc levels (from ``LEVELS``) with both bodies found on at least one slice.
    probability : ndarray, shape (S, h, w), float32
        Body probability on the working grid (``WORK_SPACING_MM`` mm pixels, padded).
    scale : tuple of float
        ``(row, col)`` scan voxels per working pixel: scan ``row = (r + 0.5) * scale[0] - 0.5``.
    n_bodies : ndarray, shape (S,), int
        Bodies found per slice.
    warnings : list of str
        Messages of the geometry step (bodies missing or dropped).
    """

    corners: np.ndarray
    levels: list[str]
    probability: np.ndarray
    scale: tuple[float, float]
    n_bodies: np.ndarray
    warnings: list[str] = field(default_factory=list)

    def disc_centres(self) -> np.ndarray:
        """Disc centres ``(6, S, 2)`` voxel ``(row, col)``: mean of the four facing corners."""
        return disc_centres(self.corners)


def disc_centres(corners: np.ndarray) -> np.ndarray:
    """Disc centres from vertebra corners.

    Parameters
    ----------
    corners : ndarray, shape (7, S, 4, 2)
        Vertebra corners (any unit).

    Returns
    -------
    ndarray, shape (6, S, 2), float64
        Mean of vertebra ``i``'s inferior corners (3, 2) and vertebra ``i + 1``'s superior
        corners (0, 1), one per disc of ``LEVELS``; NaN where either body is absent.
    """
    c = np.asarray(corners, dtype=np.float64)
    return (c[:-1, :, 2] + c[:-1, :, 3] + c[1:, :, 0] + c[1:, :, 1]) / 4.0


def normalise_slice(image: np.ndarray) -> np.ndarray:
    """Map one slice's 1st / 99th intensity percentiles to 0 / 1 (clipped to [-0.5, 2]).

    Parameters
    ----------
    image : ndarray, shape (H, W), float

    Returns
    -------
    ndarray, shape (H, W), float32
    """
    im = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(im, [1.0, 99.0])
    if hi - lo < 1e-6:
        hi = lo + 1.0
    return np.clip((im - lo) / (hi - lo), -0.5, 2.0).astype(np.float32)


def work_shape(shape: tuple[int, int], pixel_spacing: tuple[float, float],
               spacing_mm: float = WORK_SPACING_MM) -> tuple[int, int]:
    """Working-grid size ``(h, w)`` (before padding) of a slice of ``shape`` scan pixels."""
    return (max(1, int(round(shape[0] * pixel_spacing[0] / spacing_mm))),
            max(1, int(round(shape[1] * pixel_spacing[1] / spacing_mm))))


def to_work_grid(
    images: np.ndarray, pixel_spacing: tuple[float, float], spacing_mm: float = WORK_SPACING_MM,
) -> tuple[torch.Tensor, tuple[int, int], tuple[float, float]]:
    """Normalise and resample slices to the working grid, padded to a multiple of 8.

    Parameters
    ----------
    images : ndarray, shape (S, H, W), float
        Slices in scan voxels.
    pixel_spacing : (float, float)
        Row, column spacing in mm.
    spacing_mm : float
        Working pixel size.

    Returns
    -------
    x : Tensor, shape (S, 1, h_pad, w_pad), float32
        Normalised slices; zero in the padding (bottom and right).
    size : (int, int)
        ``(h, w)`` before padding.
    scale : (float, float)
        Scan voxels per working pixel along rows and columns.
    """
    imgs = np.asarray(images)
    if imgs.ndim == 2:
        imgs = imgs[None]
    S, H, W = imgs.shape
    h, w = work_shape((H, W), pixel_spacing, spacing_mm)
    norm = torch.from_numpy(np.stack([normalise_slice(im) for im in imgs]))[:, None]
    x = F.interpolate(norm, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    x = F.pad(x, (0, pw, 0, ph))
    return x.contiguous(), (h, w), (H / h, W / w)


def load_localiser(weights: str | os.PathLike | None = None,
                   device: str | torch.device = "cpu") -> LocaliserNet:
    """Load a localiser network from a weights file.

    Parameters
    ----------
    weights : path, optional
        A file written by :func:`save_localiser`; default :func:`default_weights_path`.
    device : str or torch.device

    Raises
    ------
    WeightsError
        The file is missing, not a torch file, or not localiser weights.
    """
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise WeightsError(f"localiser weights {path} not found; train them with "
                           "`spinenet-lite train-localiser --out data/weights/localiser.pt` "
                           "or pass --weights")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise WeightsError(f"{path} is not a readable localiser weights file ({type(exc).__name__}: {exc}); "
                           "re-download or retrain it") from None
    if not isinstance(blob, dict) or blob.get("kind") != "spinenet_lite.localiser" \
            or "state_dict" not in blob:
        raise WeightsError(f"{path} is a torch file but not localiser weights (no 'kind' = "
                           "'spinenet_lite.localiser'); pass the file written by train-localiser")
    if int(blob.get("version", -1)) != WEIGHTS_VERSION:
        raise WeightsError(f"{path} has localiser weights version {blob.get('version')}; this code reads "
                           f"version {WEIGHTS_VERSION}; retrain with train-localiser")
    net = LocaliserNet(width=int(blob.get("width", 8)))
    try:
        net.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path}: the weights do not fit the localiser network ({exc}); "
                           "retrain them") from None
    if float(blob.get("spacing_mm", WORK_SPACING_MM)) != WORK_SPACING_MM:
        raise WeightsError(f"{path} was trained at {blob.get('spacing_mm')} mm pixels; this code works at "
                           f"{WORK_SPACING_MM} mm")
    return net.to(device).eval()


def save_localiser(net: LocaliserNet, path: str | os.PathLike, **meta: object) -> Path:
    """Write ``net`` with its format metadata (and JSON-able ``meta``) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"kind": "spinenet_lite.localiser", "version": WEIGHTS_VERSION, "width": net.width,
            "spacing_mm": WORK_SPACING_MM,
            "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}}
    blob.update(meta)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


@torch.no_grad()
def body_probability(net: LocaliserNet, x: torch.Tensor, batch_size: int = 8) -> np.ndarray:
    """Sigmoid body probability ``(S, h, w)`` float32 of working-grid slices ``x (S, 1, h, w)``."""
    dev = next(net.parameters()).device
    out = []
    for i in range(0, x.shape[0], batch_size):
        out.append(torch.sigmoid(net(x[i:i + batch_size].to(dev)))[:, 0].float().cpu())
    return torch.cat(out).numpy()


def _grow(box: np.ndarray, px: float) -> np.ndarray:
    """Enlarge a rectangle ``(4, 2)`` by ``px`` on every side (pixel centres -> pixel edges)."""
    u = box[1] - box[0]
    v = box[3] - box[0]
    u = u / (np.linalg.norm(u) or 1.0)
    v = v / (np.linalg.norm(v) or 1.0)
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    return box + px * (signs[:, :1] * u + signs[:, 1:] * v)


def corners_from_probability(prob: np.ndarray, size: tuple[int, int], scale: tuple[float, float],
                             threshold: float = THRESHOLD, lowest: str = "S1"
                             ) -> tuple[np.ndarray, list[str]]:
    """Vertebra corners in scan voxels from working-grid body probabilities.

    Parameters
    ----------
    prob : ndarray, shape (S, h_pad, w_pad), float
    size : (int, int)
        Unpadded working size.
    scale : (float, float)
        Scan voxels per working pixel.
    threshold : float
    lowest : {"S1", "L5"}
        The name of the lowest body found (``corners_from_vertebra_mask(lowest=...)``).

    Returns
    -------
    corners : ndarray, shape (7, S, 4, 2), float32
        Scan voxel ``(row, col)``; NaN where absent.
    messages : list of str
        Warnings of the geometry step.

    """

    mask = np.asarray(prob)[:, : size[0], : size[1]] > threshold
    min_area = max(4, int(MIN_BODY_AREA_MM2 / WORK_SPACING_MM**2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            work, _ = corners_from_vertebra_mask(mask, vertebra_label=None, min_area=min_area,
                                                 off_axis=OFF_AXIS, anchor=ANCHOR, lowest=lowest)
        except LandmarkError:
            work = np.full((len(VERTEBRAE), mask.shape[0], 4, 2), np.nan, dtype=np.float32)
            warnings.warn("no vertebral body found in any slice", stacklevel=1)
    messages = [str(w.message) for w in caught]
    out = np.full(work.shape, np.nan, dtype=np.float32)
    ok = ~np.isnan(work).any(axis=(2, 3))
    sr, sc = scale
    for v, s in zip(*np.nonzero(ok)):
        box = _grow(work[v, s].astype(np.float64), 0.5)
        out[v, s, :, 0] = (box[:, 0] + 0.5) * sr - 0.5
        out[v, s, :, 1] = (box[:, 1] + 0.5) * sc - 0.5
    return out, messages


def localise(scan: Scan, *, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu",
             net: LocaliserNet | None = None, min_discs: int = 1, threshold: float = THRESHOLD,
             batch_size: int = 8, lowest: str = "auto") -> Localisation:
    """Find the vertebral bodies T12 ... S1 and their corners on every slice of ``scan``.

    Parameters
    ----------
    scan : Scan
        One sagittal series (``S >= 1`` slices; a single 2D image works). Not modified.
    weights : path, optional
        Localiser weights; default :func:`default_weights_path`. Ignored when ``net`` is given.
    device : str or torch.device
    net : LocaliserNet, optional
        An already loaded network (e.g. during training).
    min_discs : int
        Raise :class:`TooFewDiscsError` when fewer disc levels than this are found.
    threshold : float
        Body probability threshold.
    batch_size : int
        Slices per forward pass.
    lowest : {"auto", "S1", "L5"}
        The name of the lowest body found: ``"auto"`` is S1 on a phantom study
        (``scan.is_phantom``) and :data:`LOWEST_REAL` (L5) on a real one, whose sacrum the
        network does not mark; S1 is then L5's box moved one level down.

    Returns
    -------
    Localisation
        ``corners (7, S, 4, 2)`` float32 scan voxels (see :class:`Localisation`).

    Raises
    ------
    InputError
        ``scan`` is not a :class:`Scan`.
    TooFewDiscsError
        Fewer than ``min_discs`` disc levels (pairs of neighbouring bodies) were found.
    WeightsError
        The weights cannot be loaded.
    """
    if not isinstance(scan, Scan):
        raise InputError(f"localise needs a spinenet_lite Scan; got {type(scan).__name__} "
                         "(load one with dicom_io.load_scan or image_io.load_image)")
    if lowest not in ("auto", "S1", "L5"):
        raise InputError(f"lowest must be 'auto', 'S1' or 'L5'; got {lowest!r}")
    if lowest == "auto":
        lowest = "S1" if scan.is_phantom else LOWEST_REAL
    if net is None:
        net = load_localiser(weights, device)
    was_training = net.training
    net.eval()
    x, size, scale = to_work_grid(scan.volume, scan.pixel_spacing)
    prob = body_probability(net, x, batch_size=batch_size)
    if was_training:
        net.train()
    corners, messages = corners_from_probability(prob, size, scale, threshold, lowest)
    ok = ~np.isnan(corners).any(axis=(2, 3))  # (7, S)
    pairs = ok[:-1] & ok[1:]
    levels = [LEVELS[i] for i in range(len(LEVELS)) if pairs[i].any()]
    if len(levels) < min_discs:
        names = [v for v, k in zip(VERTEBRAE, ok.any(axis=1)) if k]
        raise TooFewDiscsError(
            f"the localiser found {len(names)} vertebral bodies ({', '.join(names) or 'none'}) and "
            f"{len(levels)} disc levels; {min_discs} needed. Check that the series covers T12 to the "
            "sacrum and that its pixel spacing is right")
    return Localisation(corners=corners, levels=levels, probability=prob, scale=scale,
                        n_bodies=ok.sum(axis=0), warnings=messages)
