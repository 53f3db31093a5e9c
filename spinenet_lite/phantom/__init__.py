"""The synthetic lumbar-spine MRI cohort: sagittal T2 studies with known lesions.

One patient is one 3D sagittal T2 study of T12 to S1 (plus context above and below),
rendered from a per-patient geometry (:mod:`.anatomy`), true labels correlated with level
and age (:mod:`.pathology`), two noisy readings of a rater (:mod:`.raters`), lesion
shapes drawn voxel by voxel (:mod:`.render`) and a varying acquisition
(:mod:`.acquisition`). Patient ``i`` of cohort ``seed`` depends only on ``(seed, i)``.

Public surface: :class:`PhantomConfig`, :class:`PhantomStudy`, :func:`synth_patient`,
:func:`patient_labels`, :func:`sample_labels`, :func:`write_cohort`, :func:`read_cohort`,
:func:`load_patient`, :class:`Cohort`; :func:`cohort_config` names the cohort presets
(``"standard"``, ``"decorrelated"``) and ``synth_patient(..., drop_lesions=...)`` renders the
counterfactual study without some lesions.
"""

from .cohort import Cohort, load_patient, read_cohort, write_cohort
from .config import COHORT_PRESETS, PhantomConfig, cohort_config
from .pathology import sample_age, sample_labels
from .raters import read_labels, reading_agreement
from .study import LESION_TASKS, PhantomStudy, patient_id, patient_labels, synth_patient

__all__ = [
    "COHORT_PRESETS",
    "LESION_TASKS",
    "Cohort",
    "PhantomConfig",
    "PhantomStudy",
    "cohort_config",
    "load_patient",
    "patient_id",
    "patient_labels",
    "read_cohort",
    "read_labels",
    "reading_agreement",
    "sample_age",
    "sample_labels",
    "synth_patient",
    "write_cohort",
]
