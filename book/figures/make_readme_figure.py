"""Make ``book/figures/readme_study.png``, the README's figure.

Run from the repository root: ``python book/figures/make_readme_figure.py``.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from spinenet_lite.phantom import synth_patient  # noqa: E402
from spinenet_lite.tasks import LEVELS, TASKS  # noqa: E402
from spinenet_lite.viz.data import plot_study_overview  # noqa: E402

# Patient 7 of cohort 0 with degenerated lower discs and every binary finding at one level.
true = np.zeros((len(LEVELS), len(TASKS)), dtype=int)
true[:, 0] = [0, 0, 1, 2, 3, 4]        # Pfirrmann I, I, II, III, IV, V
true[:, 1] = [0, 0, 0, 1, 2, 3]        # narrowing
true[3, 2:] = 1                        # L3-L4: endplate defects and marrow changes
true[5, [3, 4]] = 1                    # L5-S1: lower endplate defect, upper marrow change
study = synth_patient(7, 0, true_labels=true)
fig = plot_study_overview(study)
out = Path(__file__).with_name("readme_study.png")
fig.savefig(out, dpi=90)
print(f"wrote {out}")
