"""Figures of the data chapter."""

import numpy as np
from matplotlib.figure import Figure

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
