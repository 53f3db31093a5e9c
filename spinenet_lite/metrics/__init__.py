"""Scores of predictions: per-class accuracy, Lootus's protocol, agreement, bootstrap intervals."""

from __future__ import annotations

from .classification import (  # noqa: I001
    CI,
    bootstrap_ci,
    confusion,
    intra_rater_agreement,
    label_noise_ceiling,
    lootus_metrics,
    lootus_narrowing_binary,
    lootus_pfirrmann_within_1,
    per_class_accuracy,
    per_class_recall,
    task_metrics,
)

__all__ = [
    "CI",
    "bootstrap_ci",
    "confusion",
    "intra_rater_agreement",
    "label_noise_ceiling",
    "lootus_metrics",
    "lootus_narrowing_binary",
    "lootus_pfirrmann_within_1",
    "per_class_accuracy",
    "per_class_recall",
    "task_metrics",
]
