"""Evidence hotspots: the paper's augmentation-averaged saliency and the comparison methods."""

from __future__ import annotations

from .saliency import (  # noqa: I001
    hotspots,
    hotspots_batch,
    predict_classes,
    to_scan_overlay,
)

__all__ = [
    "predict_classes",
    "hotspots_batch",
    "hotspots",
    "to_scan_overlay",
]
