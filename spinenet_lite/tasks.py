"""The six radiological tasks, the six disc levels and the label encoding.

This module is the single source of truth: every other module, results file and
chapter takes task names, class counts, class names and level names from here.

Labels are stored as 0-based class indices (``int``); a missing label is
:data:`MISSING` (``-1``). Pfirrmann grade ``g`` (1-5) is class ``g - 1``;
narrowing grade ``g`` (1-4, 1 = normal) is class ``g - 1``; the four binary tasks
use 0 = normal, 1 = abnormal.
"""

from __future__ import annotations

from dataclasses import dataclass

MISSING: int = -1
"""Encoding of a missing label in every label array and table."""


@dataclass(frozen=True)
class Task:
    """One classification task.

    Attributes
    ----------
    name : str
        Key used in every results file (e.g. ``"pfirrmann"``).
    title : str
        Human-readable name for tables and figures.
    classes : tuple of str
        Class names, index ``c`` is class ``c``.
    region : str
        Where the evidence lies: ``"disc"``, ``"upper"`` (vertebra above the disc)
        or ``"lower"`` (vertebra below the disc).
    """

    name: str
    title: str
    classes: tuple[str, ...]
    region: str

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def is_binary(self) -> bool:
        """True for the four normal / abnormal tasks."""
        return len(self.classes) == 2


_BINARY = ("normal", "abnormal")

TASKS: tuple[Task, ...] = (
    Task("pfirrmann", "Pfirrmann grade", ("I", "II", "III", "IV", "V"), "disc"),
    Task("narrowing", "Disc narrowing", ("normal", "mild", "moderate", "severe"), "disc"),
    Task("upper_endplate", "Upper endplate defect", _BINARY, "upper"),
    Task("lower_endplate", "Lower endplate defect", _BINARY, "lower"),
    Task("upper_marrow", "Upper marrow change", _BINARY, "upper"),
    Task("lower_marrow", "Lower marrow change", _BINARY, "lower"),
)
"""The six tasks, in the paper's order (Table 1 and Table 2)."""

TASK_NAMES: tuple[str, ...] = tuple(t.name for t in TASKS)
N_CLASSES: dict[str, int] = {t.name: t.n_classes for t in TASKS}
BINARY_TASKS: tuple[str, ...] = tuple(t.name for t in TASKS if t.is_binary)

VERTEBRAE: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
"""The seven vertebral bodies around the six lumbar discs, top to bottom."""

LEVELS: tuple[str, ...] = tuple(f"{a}-{b}" for a, b in zip(VERTEBRAE[:-1], VERTEBRAE[1:]))
"""The six disc levels ``T12-L1`` ... ``L5-S1``; disc ``i`` lies between
vertebra ``i`` (above) and vertebra ``i + 1`` (below)."""

# Label distributions of the paper's Table 1 (fractions of labelled discs).
PAPER_PREVALENCE: dict[str, tuple[float, ...]] = {
    "pfirrmann": (0.32, 0.15, 0.23, 0.20, 0.10),
    "narrowing": (0.60, 0.12, 0.18, 0.10),
    "upper_endplate": (0.91, 0.09),
    "lower_endplate": (0.91, 0.09),
    "upper_marrow": (0.85, 0.15),
    "lower_marrow": (0.85, 0.15),
}

# Fraction of discs with a missing label per task in Table 1 (12018 discs).
PAPER_MISSING_RATE: dict[str, float] = {
    "pfirrmann": 1 - 11994 / 12018,
    "narrowing": 1 - 11989 / 12018,
    "upper_endplate": 1 - 11986 / 12018,
    "lower_endplate": 1 - 11983 / 12018,
    "upper_marrow": 1 - 11893 / 12018,
    "lower_marrow": 1 - 11892 / 12018,
}

# Table 2 of the paper: average per-class accuracy (fractions), branch point after conv5
# and the intra-rater agreement, and the other branch points (mean, std).
PAPER_INTRA_RATER: dict[str, float] = {
    "pfirrmann": 0.704,
    "narrowing": 0.720,
    "upper_endplate": 0.807,
    "lower_endplate": 0.833,
    "upper_marrow": 0.925,
    "lower_marrow": 0.914,
}

BRANCH_POINTS: tuple[str, ...] = ("none", "conv3", "conv4", "conv5", "fc6", "fc7")

PAPER_TABLE2: dict[str, dict[str, tuple[float, float]]] = {
    "none": {"pfirrmann": (0.698, 0.004), "narrowing": (0.723, 0.021),
             "upper_endplate": (0.790, 0.005), "lower_endplate": (0.795, 0.012),
             "upper_marrow": (0.881, 0.006), "lower_marrow": (0.873, 0.003)},
    "conv3": {"pfirrmann": (0.712, 0.010), "narrowing": (0.744, 0.004),
              "upper_endplate": (0.830, 0.015), "lower_endplate": (0.828, 0.015),
              "upper_marrow": (0.891, 0.001), "lower_marrow": (0.882, 0.007)},
    "conv4": {"pfirrmann": (0.709, 0.001), "narrowing": (0.733, 0.019),
              "upper_endplate": (0.817, 0.025), "lower_endplate": (0.845, 0.012),
              "upper_marrow": (0.892, 0.002), "lower_marrow": (0.889, 0.002)},
    "conv5": {"pfirrmann": (0.712, 0.004), "narrowing": (0.739, 0.007),
              "upper_endplate": (0.848, 0.006), "lower_endplate": (0.873, 0.023),
              "upper_marrow": (0.901, 0.004), "lower_marrow": (0.890, 0.004)},
    "fc6": {"pfirrmann": (0.698, 0.004), "narrowing": (0.732, 0.001),
            "upper_endplate": (0.858, 0.003), "lower_endplate": (0.858, 0.020),
            "upper_marrow": (0.892, 0.003), "lower_marrow": (0.885, 0.008)},
    "fc7": {"pfirrmann": (0.709, 0.006), "narrowing": (0.745, 0.007),
            "upper_endplate": (0.857, 0.001), "lower_endplate": (0.864, 0.020),
            "upper_marrow": (0.892, 0.005), "lower_marrow": (0.882, 0.007)},
}

# Lootus's protocol (Section 5): previous state of the art -> SpineNet.
PAPER_LOOTUS: dict[str, tuple[float, float]] = {
    "pfirrmann_within_1": (0.874, 0.961),
    "narrowing_binary": (0.837, 0.878),
}


def get_task(name: str) -> Task:
    """Return the task called ``name``.

    Raises
    ------
    KeyError
        With the list of valid names, if ``name`` is not a task.
    """
    for t in TASKS:
        if t.name == name:
            return t
    raise KeyError(f"unknown task {name!r}; the tasks are {', '.join(TASK_NAMES)}")


def task_index(name: str) -> int:
    """Column of task ``name`` in every ``(N, T)`` label array."""
    return TASK_NAMES.index(get_task(name).name)


def level_index(level: str) -> int:
    """Index (0-5) of disc level ``level`` such as ``"L4-L5"`` or ``"L4-5"``."""
    norm = level.upper().replace(" ", "")
    for i, name in enumerate(LEVELS):
        a, b = name.split("-")
        if norm in (name, f"{a}-{b[1:]}", f"{a}{b}"):
            return i
    raise KeyError(f"unknown disc level {level!r}; the levels are {', '.join(LEVELS)}")
