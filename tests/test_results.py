"""Results files carry their provenance."""

import json
import math
import re

import nbformat
import numpy as np
import pytest

from spinenet_lite import tasks
from spinenet_lite.errors import InputError
from spinenet_lite.results import read_results, repo_root, to_jsonable, write_results


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
    """The README's real-scan sentence quotes the nested estimate (``selected``) and the trees of
    spider_recipes_teaching.json (``spinenet-lite spider-ablation``)."""
    from spinenet_lite.results import read_results, repo_root

    rows = read_results("spider_recipes", "teaching", repo_root() / "data" / "results")["results"]["recipes"]
    acc, trees = rows["selected"], rows["trees"]
    text = " ".join((repo_root() / "README.md").read_text().split())

    def pct(v: float) -> str:
        return f"{100 * v:.1f} %"

    assert f"Pfirrmann {pct(acc['pfirrmann'])} per-class accuracy" in text
    assert f"({pct(acc['pfirrmann_within_1'])} within one grade)" in text
    assert f"binary narrowing {pct(acc['narrowing_binary'])}" in text
    assert (f"upper / lower endplate {100 * acc['upper_endplate']:.1f} / "
            f"{pct(acc['lower_endplate'])}") in text
    assert f"marrow {100 * acc['upper_marrow']:.1f} / {pct(acc['lower_marrow'])}" in text
    assert f"Pfirrmann {pct(trees['pfirrmann'])}, binary narrowing {pct(trees['narrowing_binary'])}" in text


def test_markdown_table_is_the_one_writer():
    from spinenet_lite.results import markdown_table

    assert markdown_table(["a", "b"], [[1, "x|y"], ["2", 3.5]], align="-r") == (
        "| a | b |\n| --- | ---: |\n| 1 | x\\|y |\n| 2 | 3.5 |\n")
    assert markdown_table(["a"], [], align="c") == "| a |\n| :---: |\n"
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="rrr")
    with pytest.raises(ValueError, match="cells"):
        markdown_table(["a", "b"], [[1]])


# ------------------------------------------------------------------------- provenance of quoted numbers
PERCENT = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d)?)\s?%")


def _backed_percentages() -> set[float]:
    """Every number of every committed results file (data/results, benchmarks/results) and of the
    paper's reference constants, as a percentage rounded to one decimal (and as itself)."""
    found: set[float] = set()

    def walk(obj) -> None:
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool) and math.isfinite(obj):
            found.update({round(100 * obj, 1), round(float(obj), 1)})

    root = repo_root()
    for folder in ("data/results", "benchmarks/results"):
        for path in sorted((root / folder).glob("*.json")):
            walk(json.loads(path.read_text(encoding="utf-8")))
    for name in dir(tasks):
        if name.startswith("PAPER"):
            walk(getattr(tasks, name))
    return found


def _prose_documents() -> dict[str, str]:
    """The README, the weights and results READMEs, and the Markdown cells of every chapter."""
    root = repo_root()
    docs = {name: (root / name).read_text(encoding="utf-8")
            for name in ("README.md", "data/weights/README.md", "data/results/README.md")}
    for path in sorted((root / "book").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        docs[f"book/{path.name}"] = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return docs


def test_every_percentage_in_the_prose_comes_from_a_results_file():
    """A percentage quoted in the README, the weights / results READMEs or a chapter's prose must be
    a number of some committed results file (or of the paper's constants in ``tasks``). Loose by
    design (any file may back it), it still catches a number typed by hand or left over from a run
    whose file was replaced."""
    backed = _backed_percentages()
    unbacked = {doc: sorted({m.group(0) for m in PERCENT.finditer(text)
                             if round(float(m.group(1)), 1) not in backed})
                for doc, text in _prose_documents().items()}
    unbacked = {doc: nums for doc, nums in unbacked.items() if nums}
    assert not unbacked, f"percentages with no results file behind them: {unbacked}"


def test_the_provenance_check_catches_an_invented_number():
    backed = _backed_percentages()
    assert 71.2 in backed                      # the paper's conv5 Pfirrmann
    assert round(100 * read_results("grader_test", "teaching")["results"]["per_class_accuracy"]["pfirrmann"],
                 1) in backed
    assert 12.3456 not in backed and 88.7 not in backed  # 88.7: a plausible accuracy no file holds
