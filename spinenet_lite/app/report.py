"""The study report of ``spinenet-lite predict``: figures and one self-contained HTML file.

:func:`write_report` writes ``overview.png`` (the sagittal slice with every graded disc's
crop box, its level and the hotspots of its findings), one ``disc_<level>.png`` per disc
(slices 2, 5 and 8 of the 9-slice volume, then the same slices under each finding's hotspot
overlay) and ``report.html``: every image inlined as a base64 PNG, styles inline, no script
and no network access, so the file opens anywhere, offline, and can be mailed as it is.

The functions take a :class:`spinenet_lite.app.prediction.Prediction`.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..explain.saliency import to_scan_overlay
from ..tasks import LEVELS, TASK_NAMES, TASKS, get_task
from .prediction import is_finding

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .prediction import Prediction

__all__ = ["DISC_SLICES", "disc_figure", "figure_png", "overview_figure", "render_html", "write_report"]

DISC_SLICES: tuple[int, ...] = (1, 4, 7)
"""Volume slices shown per disc (0-based): 2, 5 and 8 of 9, i.e. both sides and the middle."""

HOT_CMAP = "hot"
_DPI = 80


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=_DPI, layout="constrained")


def figure_png(fig: Figure) -> bytes:
    """A figure as PNG bytes (the figure is not shown or kept by pyplot).

    zlib level 3 instead of Pillow's default 6: lossless all the same (pixels identical),
    about a quarter less time in ``savefig`` for the overview and a file of about the same
    size (its flat background compresses as well at either level).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, pil_kwargs={"compress_level": 3})
    return buf.getvalue()


def _window(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image, [0.5, 99.5]) if image.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _norm01(m: np.ndarray) -> np.ndarray:
    m = np.nan_to_num(np.asarray(m, dtype=np.float32))
    top = float(m.max()) if m.size else 0.0
    return m / top if top > 0 else np.zeros_like(m)


def _short(task: str, cls: str) -> str:
    return f"{get_task(task).title}: {cls}"


def overview_slice(pred: Prediction) -> int:
    """The scan slice shown in the overview: the most common mid-sagittal slice of the discs."""
    mids = [g.mid_slice for g in pred.discs.geometries]
    if not mids:
        return pred.scan.n_slices // 2
    values, counts = np.unique(mids, return_counts=True)
    return int(values[np.argmax(counts)])


def overview_figure(pred: Prediction) -> Figure:
    """The sagittal overview: one slice, each graded disc's crop box and level, finding hotspots.

    Boxes of discs with at least one finding are red, others green; the hotspots of all
    findings (each normalised to its maximum) are drawn back onto the scan through the
    extraction geometry.
    """

    scan = pred.scan
    s = overview_slice(pred)
    img = scan.volume[s]
    h, w = img.shape
    ps = scan.pixel_spacing
    aspect = ps[0] / ps[1]
    height = 7.0
    fig = _figure((max(3.0, height * (w * ps[1]) / max(h * ps[0], 1e-6)) + 1.2, height))
    ax = fig.add_subplot()
    lo, hi = _window(img)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=aspect, interpolation="bilinear")
    if pred.maps:
        keys = list(pred.maps)
        geoms = [pred.discs.geometries[pred.levels.index(lv)] for lv, _ in keys]
        over = to_scan_overlay([pred.maps[k] for k in keys], geoms, scan.shape)[s]
        ax.imshow(np.ma.masked_less(over, 0.15), cmap=HOT_CMAP, vmin=0, vmax=1, alpha=0.6, aspect=aspect)
    with_finding = {lv for lv, _ in pred.findings()}
    for lv, g in zip(pred.levels, pred.discs.geometries):
        box = g.box_corners()
        colour = "#ff4040" if lv in with_finding else "#40ff40"
        xy = np.vstack([box, box[:1]])
        ax.plot(xy[:, 1], xy[:, 0], color=colour, lw=1.0)
        ax.text(box[:, 1].min() - 2, box[:, 0].mean(), lv, color="yellow", fontsize=9, ha="right",
                va="center", fontweight="bold", clip_on=False)
    left = min([-0.5] + [float(g.box_corners()[:, 1].min()) - 0.12 * w for g in pred.discs.geometries])
    ax.set_xlim(left, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(f"{scan.patient_id}: slice {s + 1} of {scan.n_slices} (red: a finding)", fontsize=10)
    return fig


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _caption(text: str, width: int, height: int = 14) -> np.ndarray:
    """A black strip ``(height, width, 3)`` uint8 with ``text`` in white (Pillow's default font)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (width, height), (0, 0, 0))
    ImageDraw.Draw(im).text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(im)


def _overlay(gray: np.ndarray, m01: np.ndarray | None, alpha: float = 0.65, floor: float = 0.1) -> np.ndarray:
    from matplotlib import colormaps

    g = np.repeat(np.clip(np.nan_to_num(gray), 0, 1)[..., None], 3, axis=-1)
    if m01 is not None:
        col = colormaps[HOT_CMAP](np.clip(m01, 0, 1))[..., :3]
        a = np.where(m01 >= floor, alpha, 0.0)[..., None]
        g = (1 - a) * g + a * col
    return (g * 255 + 0.5).astype(np.uint8)


def disc_figure(pred: Prediction, level: str) -> np.ndarray:
    """One disc as an RGB mosaic: its volume at :data:`DISC_SLICES`, then one row per finding.

    Each row has a caption strip (``volume``, or the finding with its probability) above
    the slices side by side; finding rows show the hotspot (normalised to its maximum,
    values under 10 % transparent) over the volume. A one-slice study whose slice was copied
    into all nine positions (``pred.pad == "replicate"``) shows that slice once, under the
    hotspot averaged over the nine copies.

    Returns
    -------
    ndarray of uint8, shape (R * (14 + 112), 3 * 224 + 2 * 4, 3)
        or ``(R * (14 + 224), 448, 3)`` for a replicated one-slice study (its slice at twice
        the size).
    """
    i = pred.levels.index(level)
    vol = pred.discs.volumes[i]
    one = pred.scan.n_slices == 1 and pred.pad == "replicate"
    shown = (vol.shape[0] // 2,) if one else DISC_SLICES
    head = ("the study's one slice (graded in all nine positions)" if one
            else f"volume, slices {', '.join(str(z + 1) for z in shown)} of {vol.shape[0]}")
    rows: list[tuple[str, np.ndarray | None]] = [(f"{level}: {head}", None)]
    for k, t in enumerate(TASK_NAMES):
        if (level, t) in pred.maps:
            cls = get_task(t).classes[int(pred.labels[i, k])]
            p = float(pred.probs[t][i, int(pred.labels[i, k])])
            m = pred.maps[(level, t)]
            if one:
                m = np.repeat(m.mean(axis=0, keepdims=True), m.shape[0], axis=0)
            rows.append((f"{_short(t, cls)} (p = {p:.2f}): hotspot" + (", mean of the 9" if one else ""),
                         _norm01(m)))
    gap = np.full((vol.shape[1], 4, 3), 255, np.uint8)
    blocks = []
    for name, m in rows:
        tiles = []
        for j, z in enumerate(shown):
            if j:
                tiles.append(gap)
            tiles.append(_overlay(vol[z], None if m is None else m[z]))
        strip = np.concatenate(tiles, axis=1)
        if one:  # one tile: twice the size, so that it and its caption stay legible
            strip = strip.repeat(2, axis=0).repeat(2, axis=1)
        blocks.append(_caption(name, strip.shape[1]))
        blocks.append(strip)
    return np.concatenate(blocks, axis=0)


# ------------------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left}th{background:#f2f2f2}
td.finding{background:#ffe0e0;font-weight:bold}td.na{color:#999}
.meta{font-size:.85em;color:#555}.note{background:#fff6d6;padding:.4em .6em;margin:.3em 0;font-size:.85em}
img{max-width:100%;height:auto}
.disclaimer{font-size:.8em;color:#666;border-top:1px solid #ccc;margin-top:2em;padding-top:.5em}
"""


def _img(png: bytes, alt: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _grades_table(pred: Prediction, levels: list[str]) -> str:

    head = "".join(f"<th>{html.escape(t.title)}</th>" for t in TASKS)
    body = []
    for lv in levels:
        cells = []
        if lv not in pred.levels:
            cells = [f'<td class="na" colspan="{len(TASKS)}">not graded (see notes)</td>']
        else:
            i = pred.levels.index(lv)
            for k, t in enumerate(TASK_NAMES):
                c = int(pred.labels[i, k])
                p = float(pred.probs[t][i, c])
                cls = "finding" if is_finding(t, c) else ""
                cells.append(f'<td class="{cls}">{html.escape(get_task(t).classes[c])} '
                             f'<span class="meta">({p:.2f})</span></td>')
        body.append(f"<tr><th>{html.escape(lv)}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>level</th>{head}</tr>{''.join(body)}</table>"


def render_html(pred: Prediction, pngs: dict[str, bytes]) -> str:
    """The report as one HTML string; ``pngs`` maps ``"overview"`` and ``"disc_<level>"`` to PNG bytes."""
    e = html.escape
    w = pred.weights or {}
    loc = pred.localiser
    found = pred.findings()
    summary = (", ".join(f"{lv} {get_task(t).title.lower()}" for lv, t in found) if found
               else "no findings (every task normal, Pfirrmann I-II, narrowing none or mild)")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>SpineNet report: {e(pred.scan.patient_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>SpineNet report: {e(pred.scan.patient_id)}</h1>",
        '<p class="meta">',
        f"input <code>{e(pred.source)}</code><br>",
        f"scan {pred.scan.shape[0]} slices of {pred.scan.shape[1]} x {pred.scan.shape[2]} pixels, "
        f"{pred.scan.pixel_spacing[0]:.3g} x {pred.scan.pixel_spacing[1]:.3g} mm, slice spacing "
        f"{pred.scan.slice_spacing:.3g} mm<br>",
        f"grader <code>{e(str(w.get('name', '?')))}</code> "
        f"sha256 <code>{e(str(w.get('sha256', '?')))}</code>; slice positions the scan does not cover: "
        f"{'copies of the nearest slice' if pred.pad == 'replicate' else 'zeros (the paper)'}"
        + (f"; slices averaged into {pred.slab_mm:g} mm slabs" if pred.slab_mm else "") + "<br>",
        "vertebrae: " + (f"localiser <code>{e(str(loc.get('name')))}</code> sha256 <code>"
                         f"{e(str(loc.get('sha256')))}</code>" if loc
                         else "corners given by the caller") + "<br>",
        f"spinenet_lite {e(pred.version)}, 54-view test-time augmentation, hotspots: the paper's "
        f"augmentation-averaged saliency; written {e(_dt.datetime.now().strftime('%Y-%m-%d %H:%M'))}",
        "</p>",
        f"<p><b>Findings:</b> {e(summary)}.</p>",
    ]
    for note in pred.notes:
        parts.append(f'<div class="note">{e(note)}</div>')
    parts.append("<h2>Overview</h2>")
    if "overview" in pngs:
        parts.append(_img(pngs["overview"], "sagittal overview with disc levels"))
    parts.append("<h2>Grades</h2>")
    parts.append(_grades_table(pred, list(LEVELS)))
    parts.append('<p class="meta">class (probability, mean over the 54 test views); '
                 "highlighted: a finding (Pfirrmann III or worse, narrowing moderate or worse, "
                 "or an abnormal binary task), whose hotspot is shown below.</p>")
    for lv in pred.levels:
        parts.append(f"<h2>{e(lv)}</h2>")
        key = f"disc_{lv}"
        if key in pngs:
            parts.append(_img(pngs[key], f"disc {lv} volume and hotspots"))
        parts.append(_grades_table(pred, [lv]))
    parts.append('<p class="disclaimer">Research software reproducing Jamaludin et al., "SpineNet: '
                 'Automatically Pinpointing Classification Evidence in Spinal MRIs", MICCAI 2016. '
                 "Not a medical device: not for diagnosis.</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(pred: Prediction, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``overview.png``, ``disc_<level>.png`` and the self-contained ``report.html``.

    Returns
    -------
    dict of str to Path
        ``{"report": ..., "overview": ..., "disc_<level>": ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, bytes] = {"overview": figure_png(overview_figure(pred))}
    for lv in pred.levels:
        pngs[f"disc_{lv}"] = _png(disc_figure(pred, lv))
    files: dict[str, Path] = {}
    for key, data in pngs.items():
        p = out / f"{key}.png"
        p.write_bytes(data)
        files[key] = p
    report = out / "report.html"
    report.write_text(render_html(pred, pngs), encoding="utf-8")
    files["report"] = report
    return files

