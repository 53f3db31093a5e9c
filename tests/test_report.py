"""The HTML report and its figures, on a hand-made Prediction (no network needed)."""

from __future__ import annotations

import base64
import io
import re
import warnings

import numpy as np
import pytest
from PIL import Image

from spinenet_lite.app import Prediction
from spinenet_lite.app.report import DISC_SLICES, disc_figure, overview_figure, render_html, write_report
from spinenet_lite.extract.discs import extract_discs
from spinenet_lite.phantom import PhantomConfig, synth_patient
from spinenet_lite.tasks import LEVELS, N_CLASSES, TASK_NAMES


@pytest.fixture(scope="module")
def pred():
    st = synth_patient(2, 0, PhantomConfig.fast())
    st.scan.patient_id = '<script>alert("x")</script>'
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        discs = extract_discs(st.scan, st.corners, levels=["L4-L5", "L5-S1"])
    labels = np.zeros((2, len(TASK_NAMES)), np.int16)
    labels[1, 0] = 4                          # L5-S1 Pfirrmann V: a finding
    labels[1, TASK_NAMES.index("upper_endplate")] = 1
    labels[0, 1] = 1                          # L4-L5 mild narrowing: not a finding
    probs = {}
    for k, t in enumerate(TASK_NAMES):
        p = np.full((2, N_CLASSES[t]), 0.1, np.float32)
        p[np.arange(2), labels[:, k]] = 1.0
        probs[t] = p / p.sum(1, keepdims=True)
    maps = {}
    for lv, t in [("L5-S1", "pfirrmann"), ("L5-S1", "upper_endplate")]:
        m = np.zeros((9, 112, 224), np.float32)
        m[:, 40:70, 80:140] = 0.4  # red in the 'hot' map once normalised by the peak below
        m[:, 0, 0] = 1.0
        maps[(lv, t)] = m
    return Prediction(source="/some/where <&>", scan=st.scan, corners=st.corners, discs=discs, probs=probs,
                      labels=labels, maps=maps, weights={"name": "w.pt", "path": "w.pt", "sha256": "ab" * 32},
                      version="0.1.0", notes=["disc T12-L1 skipped: <test>"])


def test_findings_of_the_fixture(pred):
    assert pred.findings() == [("L5-S1", "pfirrmann"), ("L5-S1", "upper_endplate")]
    assert pred.grade("L5-S1", "pfirrmann")[0] == "V" and pred.grade("L1-L2", "pfirrmann") is None


def test_disc_figure_rows_and_overlay(pred):
    a = disc_figure(pred, "L4-L5")
    b = disc_figure(pred, "L5-S1")
    assert a.dtype == np.uint8 and a.shape[2] == 3
    assert a.shape[1] == len(DISC_SLICES) * 224 + (len(DISC_SLICES) - 1) * 4
    assert a.shape[0] == 126 and b.shape[0] == 3 * 126  # volume row + one row per finding
    hot = b[126 + 14 + 55, 110].astype(int)  # inside the hotspot square of the first finding row
    assert hot[0] > hot[2] + 60, "the hotspot is drawn in warm colours over the grey volume"


def test_disc_figure_of_a_replicated_one_slice_study(pred):
    import dataclasses

    from spinenet_lite.io.scan import Scan

    sc = pred.scan
    one = Scan(volume=sc.volume[sc.n_slices // 2:sc.n_slices // 2 + 1], pixel_spacing=sc.pixel_spacing,
               slice_spacing=sc.slice_spacing)
    maps = {k: np.zeros_like(m) for k, m in pred.maps.items()}
    maps[("L5-S1", "pfirrmann")][2, 40:70, 80:140] = 0.4  # evidence on one of the nine copies only
    maps[("L5-S1", "pfirrmann")][2, 0, 0] = 1.0
    flat = dataclasses.replace(pred, scan=one, pad="replicate", maps=maps)
    b = disc_figure(flat, "L5-S1")
    assert b.shape[1] == 448 and b.shape[0] == 3 * (14 + 224)  # the one slice, twice the size, per row
    hot = b[14 + 224 + 14 + 110, 220].astype(int)  # the mean over the copies still shows where it was
    assert hot[0] > hot[2] + 60
    # the same study padded with zeros is shown as a nine-slice volume
    assert disc_figure(dataclasses.replace(flat, pad="zero"), "L5-S1").shape[1] == 3 * 224 + 2 * 4


def test_overview_figure(pred):
    fig = overview_figure(pred)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert texts == {"L4-L5", "L5-S1"}


def test_html_self_contained_and_escaped(pred, tmp_path):
    files = write_report(pred, tmp_path)
    assert set(files) == {"report", "overview", "disc_L4-L5", "disc_L5-S1"}
    text = files["report"].read_text(encoding="utf-8")
    assert "<script>alert" not in text and "&lt;script&gt;" in text
    assert "&lt;test&gt;" in text and "/some/where &lt;&amp;&gt;" in text
    assert not re.search(r'(src|href)\s*=\s*"(?!data:)', text) and "<script" not in text
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) == 3
    for b64 in imgs:
        with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
            im.verify()
    # every level has a row; the ungraded ones say so
    for lv in LEVELS:
        assert f"<th>{lv}</th>" in text
    assert text.count("not graded") == 4
    assert text.count('class="finding"') == 2 * 2  # two findings, in the main table and the disc's table
    assert "ab" * 32 in text


def test_render_without_images(pred):
    text = render_html(pred, {})
    assert "<img" not in text and "Findings:" in text


def test_figure_png_is_lossless(pred):
    # the faster zlib level must not change a pixel of what Pillow's default level writes
    from spinenet_lite.app.report import figure_png

    fig = overview_figure(pred)
    default = io.BytesIO()
    fig.savefig(default, format="png", dpi=fig.dpi)
    a = np.asarray(Image.open(io.BytesIO(figure_png(fig))))
    b = np.asarray(Image.open(io.BytesIO(default.getvalue())))
    assert a.shape == b.shape and a.size > 0 and np.array_equal(a, b)
