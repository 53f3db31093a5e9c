"""The single source of truth for tasks and levels."""

import pytest

from spinenet_lite import tasks


def test_six_tasks_with_paper_class_counts():
    assert tasks.TASK_NAMES == (
        "pfirrmann", "narrowing", "upper_endplate", "lower_endplate", "upper_marrow", "lower_marrow",
    )
    assert [t.n_classes for t in tasks.TASKS] == [5, 4, 2, 2, 2, 2]
    assert tasks.BINARY_TASKS == tasks.TASK_NAMES[2:]


def test_levels_and_vertebrae():
    assert tasks.LEVELS == ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
    assert len(tasks.VERTEBRAE) == len(tasks.LEVELS) + 1
    assert tasks.level_index("L4-5") == 4
    assert tasks.level_index("l5-s1") == 5
    with pytest.raises(KeyError, match="levels are"):
        tasks.level_index("C2-C3")


def test_reference_tables_are_keyed_by_task_names_and_are_fractions():
    for table in (tasks.PAPER_PREVALENCE, tasks.PAPER_INTRA_RATER, tasks.PAPER_MISSING_RATE):
        assert set(table) == set(tasks.TASK_NAMES)
    for name, prev in tasks.PAPER_PREVALENCE.items():
        assert len(prev) == tasks.N_CLASSES[name]
        assert sum(prev) == pytest.approx(1.0, abs=0.011)
    assert set(tasks.PAPER_TABLE2) == set(tasks.BRANCH_POINTS)
    for row in tasks.PAPER_TABLE2.values():
        assert set(row) == set(tasks.TASK_NAMES)
        assert all(0 < m < 1 and 0 <= s < 0.1 for m, s in row.values())
    # The paper's best branch point is conv5 for four of the six tasks.
    assert tasks.PAPER_TABLE2["conv5"]["lower_endplate"] == (0.873, 0.023)


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(KeyError, match="pfirrmann"):
        tasks.get_task("modic")
    assert tasks.task_index("upper_marrow") == 4
