"""Evidence hotspots: the paper's augmentation-averaged saliency, the comparison methods, the
randomisation sanity checks and the counterfactual lesion test."""

from __future__ import annotations

from .averaging import (  # noqa: I001
    AVERAGING_CHOICES,
    averaged_maps,
)
from .counterfactual import (  # noqa: I001
    CounterfactualDisc,
    cohort_source,
    counterfactual_disc,
    counterfactual_discs,
)
from .saliency import (  # noqa: I001
    HOTSPOT_METHODS,
    hotspots,
    hotspots_batch,
    predict_classes,
    predict_proba,
    to_scan_overlay,
)
from .sanity import (  # noqa: I001
    LAYER_ORDER,
    cascading_by_task,
    cascading_randomization,
    layer_groups,
    permuted_label_model,
    permuted_label_similarity,
    reinitialize_,
)

__all__ = [
    "AVERAGING_CHOICES",
    "averaged_maps",
    "HOTSPOT_METHODS",
    "predict_classes",
    "predict_proba",
    "hotspots_batch",
    "hotspots",
    "to_scan_overlay",
    "LAYER_ORDER",
    "cascading_by_task",
    "cascading_randomization",
    "layer_groups",
    "permuted_label_model",
    "permuted_label_similarity",
    "reinitialize_",
    "CounterfactualDisc",
    "cohort_source",
    "counterfactual_disc",
    "counterfactual_discs",
]
