"""Disc geometry and disc volumes: from vertebra corners to the paper's 9 x 112 x 224 inputs."""

from __future__ import annotations

from .discs import (  # noqa: I001
    DiscGeometry,
    DiscVolumes,
    body_masks,
    check_body_pair,
    check_pad_mode,
    crop_size_mm,
    disc_centroid,
    extract_discs,
    extract_masks,
    pad_missing_slices,
)
from .features import (  # noqa: I001
    CONTEXT_SIZE,
    FEATURE_NAMES,
    DiscContext,
    disc_context,
    disc_features,
    feature_matrix,
)
from .landmarks import (  # noqa: I001
    corners_from_vertebra_mask,
    drop_off_axis,
    min_area_rect,
    read_space_study,
    space_patients,
)

__all__ = [
    "DiscGeometry",
    "DiscVolumes",
    "disc_centroid",
    "crop_size_mm",
    "check_body_pair",
    "check_pad_mode",
    "pad_missing_slices",
    "extract_discs",
    "body_masks",
    "extract_masks",
    "min_area_rect",
    "drop_off_axis",
    "corners_from_vertebra_mask",
    "space_patients",
    "read_space_study",
    "CONTEXT_SIZE",
    "FEATURE_NAMES",
    "DiscContext",
    "disc_context",
    "disc_features",
    "feature_matrix",
]
