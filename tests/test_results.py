"""Results files carry their provenance."""

import json

import numpy as np
import pytest

from spinenet_lite.errors import InputError
from spinenet_lite.results import read_results, to_jsonable, write_results


def test_write_results_records_provenance(tmp_path):
    path = write_results(
        "unit", "ci", {"pfirrmann": np.float32(0.5)}, config={"width": 0.25}, seed=3,
        device="cpu", wall_time_s=1.234, out_dir=tmp_path, markdown="| a |\n",
    )
    assert path == tmp_path / "unit_ci.json"
    record = json.loads(path.read_text())
    for key in ("experiment", "tier", "config", "seed", "commit", "device", "machine", "wall_time_s"):
        assert key in record
    assert record["results"] == {"pfirrmann": 0.5}
    assert record["seed"] == 3 and record["wall_time_s"] == 1.23
    assert (tmp_path / "unit_ci.md").read_text() == "| a |\n"
    assert read_results("unit", "ci", out_dir=tmp_path)["results"] == {"pfirrmann": 0.5}


def test_missing_results_file_says_how_to_make_it(tmp_path):
    with pytest.raises(InputError, match="spinenet-lite experiment table2 --tier ci"):
        read_results("table2", "ci", out_dir=tmp_path)


def test_to_jsonable_handles_numpy_and_non_finite():
    out = to_jsonable({"a": np.arange(3), "b": (np.int64(2), float("nan"))})
    assert out == {"a": [0, 1, 2], "b": [2, None]}


def test_git_commit_comes_from_the_environment_when_set(tmp_path, monkeypatch):
    import spinenet_lite.results as results

    monkeypatch.delenv(results.COMMIT_ENV, raising=False)
    assert results.git_commit() not in ("", "abc123")
    monkeypatch.setenv(results.COMMIT_ENV, "abc123")  # e.g. a copy sent to a GPU machine
    assert results.git_commit() == "abc123"
    monkeypatch.delenv(results.COMMIT_ENV)
    monkeypatch.setattr(results, "repo_root", lambda: tmp_path)  # a folder git knows nothing of
    assert results.git_commit() == "unknown"


def test_readme_results_table_matches_the_committed_results_file():
    """The README's table quotes data/results/convergence_paper.json: they must not drift apart."""
    import re

    from spinenet_lite.results import read_results, repo_root
    from spinenet_lite.tasks import PAPER_TABLE2, TASKS

    res = read_results("convergence", "paper", repo_root() / "data" / "results")["results"]
    text = (repo_root() / "README.md").read_text()
    for task in TASKS:
        m = re.search(rf"^\| {re.escape(task.title)} \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", text,
                      flags=re.MULTILINE | re.IGNORECASE)
        assert m, f"README lacks the row of {task.title}"
        ours, ceiling, paper = (float(g) for g in m.groups())
        assert ours == round(100 * res["per_class_accuracy"][task.name]["mean"], 1)
        assert ceiling == round(100 * res["references"]["ceiling"][task.name]["mean"], 1)
        assert paper == round(100 * PAPER_TABLE2["conv5"][task.name][0], 1)


def test_readme_real_scan_numbers_match_the_committed_cross_validation():
    """The README's real-scan sentence quotes spider_cv_midsag_replicated_teaching.json."""
    from spinenet_lite.results import read_results, repo_root

    pooled = read_results("spider_cv_midsag_replicated", "teaching",
                          repo_root() / "data" / "results")["results"]["recipes"]["finetune"]["pooled"]
    text = " ".join((repo_root() / "README.md").read_text().split())

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"

    acc = {t: m["per_class_accuracy"] for t, m in pooled["tasks"].items()}
    assert f"Pfirrmann {pct(acc['pfirrmann'])} per-class accuracy" in text
    assert f"({pct(pooled['lootus']['pfirrmann_within_1'])} within one grade)" in text
    assert f"binary narrowing {pct(pooled['lootus']['narrowing_binary'])}" in text
    assert (f"upper / lower endplate {100 * acc['upper_endplate']:.1f} / "
            f"{pct(acc['lower_endplate'])}") in text
    assert f"marrow {100 * acc['upper_marrow']:.1f} / {pct(acc['lower_marrow'])}" in text


def test_markdown_table_is_the_one_writer():
    from spinenet_lite.results import markdown_table

    assert markdown_table(["a", "b"], [[1, "x|y"], ["2", 3.5]], align="-r") == (
        "| a | b |\n| --- | ---: |\n| 1 | x\\|y |\n| 2 | 3.5 |\n")
    assert markdown_table(["a"], [], align="c") == "| a |\n| :---: |\n"
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="rrr")
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["a", "b"], [[1]])
