"""Figures of the data chapter."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from spinenet_lite.errors import InputError
from spinenet_lite.phantom import PhantomConfig, patient_labels, synth_patient
from spinenet_lite.tasks import LEVELS, TASKS
from spinenet_lite.viz import data as viz_data


def _forced(k):
    labels = np.zeros((len(LEVELS), len(TASKS)), dtype=int)
    labels[:, 0] = k
    labels[:, 1] = min(k, 3)
    labels[2, 2:] = 1  # L2-L3: every binary finding
    return labels


def test_gallery_finds_forced_examples_with_masks_in_the_crop():
    cfg = PhantomConfig.fast()
    studies = (synth_patient(50 + k, 0, cfg, true_labels=_forced(k)) for k in range(5))
    examples = viz_data.collect_examples(studies)
    for task in TASKS:
        assert all(e is not None for e in examples[task.name]), task.name
        if task.is_binary:
            abnormal = examples[task.name][1]
            assert abnormal.level == 2 and abnormal.mask.any()
            assert not examples[task.name][0].mask.any()
    assert isinstance(viz_data.plot_task_gallery(examples), Figure)


def test_study_figures_and_disc_box():
    study = synth_patient(0, 0, PhantomConfig.fast())
    for fig in (viz_data.plot_study_vs_real(study.scan, None, corners=study.corners, real_note="absent"),
                viz_data.plot_slices(study.scan, n=4), viz_data.plot_study_overview(study)):
        assert isinstance(fig, Figure)
    s = study.scan.n_slices // 2
    rows, cols = viz_data.disc_box(study.corners, 3, s, 10.0, study.scan.pixel_spacing)
    assert rows.stop > rows.start and cols.stop > cols.start
    corners = study.corners.copy()
    corners[3, s] = np.nan
    assert viz_data.disc_box(corners, 3, s, 10.0, study.scan.pixel_spacing) is None


def test_rater_noise_figure_reports_agreement():
    readings = [patient_labels(i, 0) for i in range(40)]
    true, obs, rer = (np.concatenate([r[k] for r in readings]) for k in (1, 2, 3))
    fig = viz_data.plot_rater_noise(true, obs, rer)
    assert "agreement" in fig.axes[0].get_title()


def _chapter1_labels(k: int) -> np.ndarray:
    """The labels chapter 1 forced before issue 17: study k < 5 every disc at grade k of the ordinal
    tasks (narrowing min(k, 3)), study 5 grade II with every binary finding."""
    labels = np.zeros((len(LEVELS), len(TASKS)), dtype=int)
    for col, task in enumerate(TASKS):
        labels[:, col] = int(k == 5) if task.is_binary else min(k if k < 5 else 1, task.n_classes - 1)
    return labels


def _all(examples):
    return [e for v in examples.values() for e in v]


def test_gallery_rows_never_repeat_a_disc():
    # The bug: narrowing class k was cut from the same disc (study k, T12-L1) as Pfirrmann class k,
    # so the narrowing row showed the Pfirrmann row's images.
    cfg = PhantomConfig.fast()
    examples = viz_data.collect_examples(synth_patient(100 + k, 0, cfg, true_labels=_chapter1_labels(k))
                                         for k in range(6))
    shown = _all(examples)
    assert all(e is not None for e in shown)
    assert len({(e.study_index, e.level) for e in shown}) == len(shown)
    for pf, na in zip(examples["pfirrmann"], examples["narrowing"]):
        assert pf.image.shape != na.image.shape or not np.array_equal(pf.image, na.image)


def test_gallery_labels_show_every_finding_alone():
    cfg = PhantomConfig.fast()
    sets = viz_data.gallery_labels()
    studies = [synth_patient(100 + i, 0, cfg, true_labels=lab) for i, lab in enumerate(sets)]
    examples = viz_data.collect_examples(iter(studies))
    shown = _all(examples)
    assert len({(e.study_index, e.level) for e in shown}) == len(shown) == sum(t.n_classes for t in TASKS)
    for col, task in enumerate(TASKS):
        for k, e in enumerate(examples[task.name]):
            true = studies[e.study_index].labels["true"][e.level]
            assert e.klass == k and true[col] == k and e.others == ()
            abnormal = k > viz_data.NORMAL_UP_TO[task.name]
            assert viz_data.disc_findings(true) == ((task.name,) if abnormal else ())
            if task.is_binary:
                assert e.mask.any() == (k == 1)
    fig = viz_data.plot_task_gallery(examples)
    assert "+" not in " ".join(ax.get_title() for ax in fig.axes)


def test_gallery_names_the_other_findings_when_none_is_alone():
    labels = np.zeros((len(LEVELS), len(TASKS)), dtype=int)
    col = {t.name: i for i, t in enumerate(TASKS)}
    labels[3, col["upper_marrow"]] = labels[3, col["lower_marrow"]] = 1  # marrow changes only together
    labels[1, col["pfirrmann"]] = 4  # Pfirrmann V with severe narrowing
    labels[1, col["narrowing"]] = 3
    examples = viz_data.collect_examples([synth_patient(7, 0, PhantomConfig.fast(), true_labels=labels)])
    assert examples["lower_marrow"][1].others == ("upper_marrow",)
    assert examples["narrowing"][3].others == ("pfirrmann",) and examples["narrowing"][3].level == 1
    assert examples["narrowing"][1] is None  # no mild narrowing in this cohort
    assert examples["upper_endplate"][0].others == ()  # normal classes: a disc without any finding
    titles = [ax.get_title() for ax in viz_data.plot_task_gallery(examples).axes]
    assert any(t.endswith("+ upper marrow") for t in titles)
    assert any(t.endswith("+ pfirrmann") for t in titles)


def _real(image: np.ndarray):
    from spinenet_lite.io.scan import Scan

    return Scan(volume=image[None].astype(np.float32), pixel_spacing=(0.5, 0.5), slice_spacing=4.0,
                patient_id="SPIDER-x")


def test_real_slice_is_shown_with_a_percentile_window():
    rng = np.random.default_rng(0)
    image = np.zeros((60, 80), np.float32)  # half zero padding, as some SPIDER PNGs
    image[:, 40:] = rng.uniform(0.1, 0.5, (60, 40))
    image[0, 40:44] = 1.0  # a few hot pixels
    lo, hi = viz_data.intensity_window(image)
    fg = image[:, 40:].ravel()
    assert (lo, hi) == pytest.approx(tuple(np.percentile(fg, [1, 99])))
    assert hi < 0.5 and lo > 0.1
    study = synth_patient(0, 0, PhantomConfig.fast())
    fig = viz_data.plot_study_vs_real(study.scan, _real(image))
    assert fig.axes[1].get_images()[0].get_clim() == pytest.approx((lo, hi))
    assert viz_data.intensity_window(np.ones((3, 3))) == (1.0, 2.0)
    with pytest.raises(InputError):
        viz_data.intensity_window(image, 50, 10)


def test_pick_spider_example_skips_clipped_images(tmp_path):
    from PIL import Image

    (tmp_path / "t2_midsag").mkdir()
    (tmp_path / "overview.csv").write_text(
        'new_file_name,PixelSpacing,SliceThickness,SpacingBetweenSlices\n1_t2,"[0.5, 0.5]",4,4\n'
        '2_t2,"[0.5, 0.5]",4,4\n3_t2,"[0.5, 0.5]",4,4\n')
    (tmp_path / "radiological_gradings.csv").write_text("Patient,IVD label\n")
    ramp = np.tile(np.linspace(0, 255, 50), (40, 1))
    clipped = np.clip(ramp * 1.5, 0, 255)  # a third of the image at 255
    for pid, img in (("1", clipped), ("2", clipped), ("3", ramp)):
        Image.fromarray(img.round().astype(np.uint8)).save(tmp_path / "t2_midsag" / f"{pid}_t2.png")
    assert viz_data.clipped_fraction(clipped) > 0.3 and viz_data.clipped_fraction(ramp) < 0.03
    assert viz_data.pick_spider_example(tmp_path, max_clipped=0.03) == "3"
    assert viz_data.pick_spider_example(tmp_path, max_clipped=0.03, limit=2) == "1"  # least clipped


def test_pick_spider_example_on_the_shared_folder():
    from spinenet_lite.datasets import spider

    if not spider.spider_available():
        pytest.skip(f"SPIDER not found at {spider.default_spider_dir()} (set SPINENET_SPIDER_DIR)")
    pid = viz_data.pick_spider_example()
    image = spider.read_midsag(pid).volume[0]
    assert viz_data.clipped_fraction(image) <= 0.01
