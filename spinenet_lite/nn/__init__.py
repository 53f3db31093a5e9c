"""The network and what trains it: the multi-task VGG-M, the class-balanced losses, augmentation."""

from __future__ import annotations

from .augment import (  # noqa: I001
    AugmentRanges,
    Transforms,
    affine_theta,
    apply_transforms,
    identity_transforms,
    invert_maps,
    sample_transforms,
    slice_flip,
    tta_transforms,
)
from .losses import (  # noqa: I001
    class_counts,
    class_weights,
    multitask_loss,
)
from .model import (  # noqa: I001
    SpineNet,
    TaskLinear,
    count_flops,
    count_params,
    layer_table,
    scaled,
    shared_layers,
)

__all__ = [
    "scaled",
    "shared_layers",
    "TaskLinear",
    "SpineNet",
    "layer_table",
    "count_params",
    "count_flops",
    "class_counts",
    "class_weights",
    "multitask_loss",
    "AugmentRanges",
    "Transforms",
    "identity_transforms",
    "sample_transforms",
    "tta_transforms",
    "affine_theta",
    "apply_transforms",
    "invert_maps",
    "slice_flip",
]
