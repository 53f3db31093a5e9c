"""Every number of the synthetic cohort in one place: :class:`PhantomConfig`.

Sizes are in mm, angles in degrees, intensities relative to cerebrospinal fluid
(CSF = 1.0) before the scanner scale. The defaults follow
``shared/reference/facts.md`` and the paper's Table 1; the rater-noise parameters are
tuned so that two independent readings agree about as well as the paper's intra-rater
figures (see :mod:`spinenet_lite.phantom.raters`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..tasks import N_CLASSES, PAPER_MISSING_RATE, PAPER_PREVALENCE, TASK_NAMES


def _paper_prevalence() -> dict[str, tuple[float, ...]]:
    return {k: tuple(v) for k, v in PAPER_PREVALENCE.items()}


def _paper_missing() -> dict[str, float]:
    return dict(PAPER_MISSING_RATE)


@dataclass
class PhantomConfig:
    """Parameters of the synthetic lumbar-spine cohort.

    Attributes
    ----------
    prevalence : dict of str to tuple of float
        Marginal class frequencies of the **true** labels per task (sum to 1).
    missing_rate : dict of str to float
        Probability that a reading leaves a task's label missing.
    level_shift : tuple of 6 float
        Shift of the latent degeneration score per disc level (T12-L1 ... L5-S1), in
        standard deviations: more degeneration at L4-5 and L5-S1.
    age_mean, age_sd, age_range : float, float, (float, float)
        Patient age in years (normal, clipped).
    age_weight, patient_weight : float
        Share of the latent degeneration variance explained by age and by a per-patient
        effect (the rest is per disc).
    task_loading : dict of str to float
        Correlation of each task's latent score with the degeneration score
        (``pfirrmann`` is the degeneration score itself, loading 1).
    rater_adjacent : dict of str to float
        Ordinal tasks: probability that one reading moves the true grade by one step.
    rater_flip : dict of str to (float, float)
        Binary tasks: probability that a reading flips a true normal / a true abnormal.
    lordosis_mean, lordosis_sd, lordosis_range : float, float, (float, float)
        T12-S1 lordosis angle in degrees.
    lordosis_share : tuple of 6 float
        Share of the lordosis taken by each disc's wedge (T12-L1 ... L5-S1); the rest is
        taken by the L5 body.
    body_height : tuple of 7 float
        Mean vertebral-body height (mm) of T12 ... S1.
    body_depth : tuple of 7 float
        Mean body depth, anterior to posterior (mm).
    body_width : (float, float)
        Range of the body width, left to right (mm).
    disc_height : tuple of 6 float
        Mean mid-disc height (mm) of a normal disc, T12-L1 ... L5-S1.
    narrowing_height : tuple of 4 float
        Disc-height factor per narrowing class (normal ... severe).
    pfirrmann_height : tuple of 5 float
        Extra disc-height factor per Pfirrmann class.
    nucleus_signal : tuple of 5 float
        Nucleus intensity (CSF = 1) per Pfirrmann class.
    annulus_signal, marrow_signal, cortex_signal, csf_signal, cord_signal, fat_signal, muscle_signal : float
        Tissue intensities (CSF = 1).
    canal_depth, canal_width : float
        Dural sac: anterior-posterior depth and left-right width (mm).
    endplate_depth, endplate_radius : (float, float)
        Endplate defect: depth into the body and anterior-posterior radius (mm).
    marrow_thickness : (float, float)
        Marrow-change band thickness under the endplate (mm).
    pixel_spacing : (float, float)
        In-plane spacing range (mm), square pixels.
    fov : (float, float)
        Head-foot field of view range (mm).
    fov_ap_ratio : (float, float)
        Anterior-posterior over head-foot field of view.
    slice_thickness : (float, float)
        Range of the slice thickness (mm); drawn log-normal around the median.
    slice_thickness_median : float
        Median slice thickness (mm).
    slice_gap : (float, float)
        Gap between slices as a fraction of the thickness.
    n_slices : (int, int)
        Range of the number of slices.
    lateral_coverage : (float, float)
        Left-right coverage the protocol aims at (mm); the slice count follows.
    snr : (float, float)
        Signal (CSF) to noise (Gaussian sigma per channel) ratio range.
    bias_amplitude : (float, float)
        Amplitude of the smooth multiplicative bias field (fraction).
    scanner_scale : (float, float)
        Range (log-uniform) of the scanner intensity scale.
    """

    prevalence: dict[str, tuple[float, ...]] = field(default_factory=_paper_prevalence)
    missing_rate: dict[str, float] = field(default_factory=_paper_missing)
    level_shift: tuple[float, ...] = (-0.75, -0.5, -0.3, -0.05, 0.6, 0.7)
    age_mean: float = 46.0
    age_sd: float = 13.0
    age_range: tuple[float, float] = (18.0, 85.0)
    age_weight: float = 0.3
    patient_weight: float = 0.2
    task_loading: dict[str, float] = field(default_factory=lambda: {
        "pfirrmann": 1.0, "narrowing": 0.8, "upper_endplate": 0.45, "lower_endplate": 0.45,
        "upper_marrow": 0.5, "lower_marrow": 0.5})
    rater_adjacent: dict[str, float] = field(default_factory=lambda: {
        "pfirrmann": 0.21, "narrowing": 0.19})
    rater_flip: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "upper_endplate": (0.03, 0.13), "lower_endplate": (0.025, 0.11),
        "upper_marrow": (0.015, 0.06), "lower_marrow": (0.015, 0.07)})
    lordosis_mean: float = 37.0
    lordosis_sd: float = 13.0
    lordosis_range: tuple[float, float] = (8.0, 75.0)
    lordosis_share: tuple[float, ...] = (0.02, 0.06, 0.12, 0.18, 0.26, 0.28)
    body_height: tuple[float, ...] = (25.0, 26.5, 27.2, 27.8, 28.0, 28.0, 26.0)
    body_depth: tuple[float, ...] = (31.0, 32.5, 34.0, 35.0, 35.5, 35.5, 34.0)
    body_width: tuple[float, float] = (45.0, 50.0)
    disc_height: tuple[float, ...] = (8.5, 10.0, 11.6, 12.5, 13.8, 13.0)
    narrowing_height: tuple[float, ...] = (1.0, 0.8, 0.62, 0.42)
    pfirrmann_height: tuple[float, ...] = (1.0, 1.0, 0.97, 0.93, 0.85)
    nucleus_signal: tuple[float, ...] = (0.95, 0.78, 0.5, 0.3, 0.14)
    annulus_signal: float = 0.17
    marrow_signal: float = 0.5
    cortex_signal: float = 0.08
    csf_signal: float = 1.0
    cord_signal: float = 0.36
    fat_signal: float = 0.78
    muscle_signal: float = 0.24
    canal_depth: float = 14.0
    canal_width: float = 21.0
    endplate_depth: tuple[float, float] = (3.0, 8.0)
    endplate_radius: tuple[float, float] = (3.0, 7.0)
    marrow_thickness: tuple[float, float] = (5.0, 10.0)
    pixel_spacing: tuple[float, float] = (0.5, 1.0)
    fov: tuple[float, float] = (260.0, 320.0)
    fov_ap_ratio: tuple[float, float] = (0.72, 0.9)
    slice_thickness: tuple[float, float] = (2.6, 6.0)
    slice_thickness_median: float = 4.0
    slice_gap: tuple[float, float] = (0.0, 0.15)
    n_slices: tuple[int, int] = (11, 21)
    lateral_coverage: tuple[float, float] = (55.0, 80.0)
    snr: tuple[float, float] = (14.0, 30.0)
    bias_amplitude: tuple[float, float] = (0.10, 0.20)
    scanner_scale: tuple[float, float] = (300.0, 3000.0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the label parameters; raise :class:`ConfigError` with what to fix."""
        for name in TASK_NAMES:
            prev = self.prevalence.get(name)
            if prev is None or len(prev) != N_CLASSES[name]:
                raise ConfigError(
                    f"PhantomConfig.prevalence[{name!r}] must list {N_CLASSES[name]} class "
                    f"frequencies; got {prev!r}")
            if min(prev) < 0 or abs(sum(prev) - 1.0) > 1e-6:
                raise ConfigError(
                    f"PhantomConfig.prevalence[{name!r}] must be non-negative and sum to 1; got {prev!r}")
            rate = self.missing_rate.get(name, 0.0)
            if not 0.0 <= rate < 1.0:
                raise ConfigError(f"PhantomConfig.missing_rate[{name!r}] must be in [0, 1); got {rate!r}")
        if len(self.level_shift) != 6 or len(self.disc_height) != 6 or len(self.lordosis_share) != 6:
            raise ConfigError("PhantomConfig.level_shift, disc_height and lordosis_share need 6 values "
                              "(one per disc level T12-L1 ... L5-S1)")
        if len(self.body_height) != 7 or len(self.body_depth) != 7:
            raise ConfigError("PhantomConfig.body_height and body_depth need 7 values (T12 ... S1)")
        if not 0 <= self.age_weight + self.patient_weight < 1:
            raise ConfigError("PhantomConfig.age_weight + patient_weight must be in [0, 1)")
        lo, hi = self.n_slices
        if lo < 1 or hi < lo:
            raise ConfigError("PhantomConfig.n_slices must be (min, max) with 1 <= min <= max; "
                              f"got {self.n_slices}")
        for name in ("pixel_spacing", "fov", "slice_thickness", "snr", "scanner_scale"):
            a, b = getattr(self, name)
            if not 0 < a <= b:
                raise ConfigError(f"PhantomConfig.{name} must be (min, max) with 0 < min <= max; "
                                  f"got {(a, b)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhantomConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown PhantomConfig fields {sorted(unknown)}; valid: {sorted(names)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, list):
                value = tuple(value)
            elif isinstance(value, dict):
                value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
            kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def fast(cls, **overrides: Any) -> PhantomConfig:
        """A coarse acquisition (1 mm pixels, few slices) for tests and quick demos."""
        base: dict[str, Any] = {"pixel_spacing": (1.0, 1.0), "n_slices": (11, 13),
                                "fov": (270.0, 280.0)}
        base.update(overrides)
        return cls(**base)

    @classmethod
    def decorrelated(cls, **overrides: Any) -> PhantomConfig:
        """The default cohort with endplate and marrow labels independent of degeneration.

        ``task_loading`` of the four endplate / marrow tasks is 0, so their labels are
        independent of the degeneration score, hence of the Pfirrmann grade, the narrowing,
        the level and the age (and of each other); everything else, the prevalences
        included, is the default. The degeneration shortcut (``metrics.shortcut``) scores
        chance here: a model that reads these findings off the disc is caught out.
        """
        base: dict[str, Any] = {"task_loading": {**cls().task_loading,
                                                 **{t: 0.0 for t in _LESION_TASKS}}}
        base.update(overrides)
        return cls(**base)


# the tasks whose abnormal label draws a lesion (``phantom.study.LESION_TASKS``, which this module
# cannot import: pathology imports it)
_LESION_TASKS: tuple[str, ...] = ("upper_endplate", "lower_endplate", "upper_marrow", "lower_marrow")

COHORT_PRESETS: tuple[str, ...] = ("standard", "decorrelated")
"""Names accepted by :func:`cohort_config`."""


def cohort_config(name: str, **overrides: Any) -> PhantomConfig:
    """The :class:`PhantomConfig` of a named cohort preset.

    Parameters
    ----------
    name : str
        ``"standard"`` (:class:`PhantomConfig` defaults: endplate and marrow findings
        commoner on degenerate discs) or ``"decorrelated"`` (:meth:`PhantomConfig.decorrelated`).
    **overrides
        Any field, e.g. ``pixel_spacing=(1.0, 1.0)``.
    """
    if name == "standard":
        return PhantomConfig(**overrides)
    if name == "decorrelated":
        return PhantomConfig.decorrelated(**overrides)
    raise ConfigError(f"unknown cohort preset {name!r}; use one of {', '.join(COHORT_PRESETS)}")
