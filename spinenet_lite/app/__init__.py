"""The user-facing pipeline: ``predict`` a study, its report, the demo."""

from __future__ import annotations

from .demo import (  # noqa: I001
    DEMO_LABELS,
    agreement,
    compare_table,
    demo_agreement,
    demo_study,
)
from .inputs import (  # noqa: I001
    IMAGE_SUFFIXES,
    SLAB_MM,
    THIN_SLICE_MM,
    default_grading,
    load_input,
    slab_thickness,
)
from .maps import (  # noqa: I001
    HOTSPOT_DIR,
    map_filename,
    scan_map,
    write_maps,
)
from .pipeline import (  # noqa: I001
    HOTSPOT_AUGMENTATIONS,
    HOTSPOT_VIEWS_PER_PASS,
    MIN_VERTEBRAE,
    predict,
)
from .prediction import (  # noqa: I001
    FINDING_THRESHOLDS,
    Prediction,
    is_finding,
    write_grades,
)
from .report import (  # noqa: I001
    DISC_SLICES,
    disc_figure,
    figure_png,
    overview_figure,
    render_html,
    write_report,
)

__all__ = [
    "FINDING_THRESHOLDS",
    "Prediction",
    "is_finding",
    "write_grades",
    "IMAGE_SUFFIXES",
    "SLAB_MM",
    "THIN_SLICE_MM",
    "default_grading",
    "load_input",
    "slab_thickness",
    "DISC_SLICES",
    "disc_figure",
    "figure_png",
    "overview_figure",
    "render_html",
    "write_report",
    "HOTSPOT_AUGMENTATIONS",
    "HOTSPOT_VIEWS_PER_PASS",
    "MIN_VERTEBRAE",
    "predict",
    "HOTSPOT_DIR",
    "map_filename",
    "scan_map",
    "write_maps",
    "DEMO_LABELS",
    "agreement",
    "compare_table",
    "demo_agreement",
    "demo_study",
]
