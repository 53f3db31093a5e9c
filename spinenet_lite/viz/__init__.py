"""Every figure and widget the book shows, one module per chapter's subject."""

from __future__ import annotations

from .data import (  # noqa: I001
    Example,
    collect_examples,
    disc_box,
    plot_rater_noise,
    plot_slices,
    plot_study_overview,
    plot_study_vs_real,
    plot_task_gallery,
    show_slice,
)
from .evaluate import (  # noqa: I001
    ablation_frame,
    comparison_table,
    findings_frame,
    gap_frame,
    lootus_frame,
    paper_table2_frame,
    plot_ablations,
    plot_branch_points,
    plot_confusions,
    plot_learning_curves,
    summed_confusions,
    table2_frame,
    table2_html,
)
from .extract import (  # noqa: I001
    plot_corners,
    plot_disc_volume,
    plot_normalisation,
)
from .hotspots import (  # noqa: I001
    disc_frame,
    hotspot_explorer,
    normalise_map,
    offline_slider_html,
    plot_cascading,
    plot_disc_hotspots,
    plot_hotspot_grid,
    plot_quality,
    plot_scan_overlay,
)
from .model import (  # noqa: I001
    architecture_frame,
    branch_point_summary,
    class_balance_frame,
    describe_transform,
    plot_augmentations,
    plot_class_balance,
)
from .notes import (  # noqa: I001
    run_note,
)
from .train import (  # noqa: I001
    plot_balance_comparison,
    plot_history,
)

__all__ = [
    "normalise_map",
    "plot_disc_hotspots",
    "plot_hotspot_grid",
    "plot_scan_overlay",
    "disc_frame",
    "offline_slider_html",
    "hotspot_explorer",
    "plot_quality",
    "plot_cascading",
    "Example",
    "disc_box",
    "collect_examples",
    "plot_rater_noise",
    "plot_slices",
    "plot_study_overview",
    "plot_study_vs_real",
    "plot_task_gallery",
    "show_slice",
    "plot_corners",
    "plot_disc_volume",
    "plot_normalisation",
    "architecture_frame",
    "branch_point_summary",
    "class_balance_frame",
    "plot_class_balance",
    "describe_transform",
    "plot_augmentations",
    "plot_history",
    "plot_balance_comparison",
    "ablation_frame",
    "comparison_table",
    "findings_frame",
    "gap_frame",
    "lootus_frame",
    "paper_table2_frame",
    "plot_ablations",
    "plot_branch_points",
    "plot_confusions",
    "plot_learning_curves",
    "summed_confusions",
    "table2_frame",
    "table2_html",
    "run_note",
]
