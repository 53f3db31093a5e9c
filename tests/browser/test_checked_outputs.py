"""The book's key numbers, checked: a change that silently moves a published number fails.

A chapter marks a cell whose printed output must not change with a line
``# NBVAL_CHECK_OUTPUT`` (nbval's marker). The cell prints rounded numbers (e.g. read from the
committed ``data/results/<experiment>_<tier>.json``), and its expected text output is
recorded in the committed notebook's cell metadata, ``metadata["spinenet"]["expected_output"]``
(metadata, not outputs: chapters stay committed without outputs). After the book build, this
test compares the outputs of those cells in the executed chapters
(``_build/book_src/book/*.ipynb``, written by ``book/build.py``) with the recorded text: the same check as
``pytest --nbval-lax`` on those cells, without executing the chapters a second time.

Record or update the expected outputs after a deliberate change (then review the diff)::

    python tests/browser/test_checked_outputs.py book/05_evaluation.ipynb

Skipped when the executed chapters are absent, unless ``SPINENET_BROWSER_REQUIRED=1``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SPINENET_SITE_DIR", REPO / "_build" / "html")).resolve().parent
EXECUTED = BUILD / "book_src"  # the chapters as book/build.py executed them
MARKER = "# NBVAL_CHECK_OUTPUT"


def toc_notebooks() -> list[Path]:
    """The chapters the book builds: notebooks listed in ``_toc.yml``."""
    docs = parse_toc_yaml(REPO / "_toc.yml")
    return [REPO / f"{d}.ipynb" for d in docs if (REPO / f"{d}.ipynb").exists()]


CHAPTERS = toc_notebooks()


def checked_cells(nb) -> list:
    """Code cells carrying the marker line."""
    return [c for c in nb.cells if c.cell_type == "code"
            and any(line.strip() == MARKER for line in c.source.splitlines())]


def text_output(cell) -> str:
    """The cell's stream and ``text/plain`` outputs, normalised (line ends, trailing spaces)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append(f"ERROR {out.get('ename')}: {out.get('evalue')}")
    text = "".join(p if p.endswith("\n") else p + "\n" for p in parts)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def executed_cells(path: Path) -> list:
    executed = EXECUTED / path.relative_to(REPO).with_suffix(".ipynb")
    return checked_cells(nbformat.read(executed, as_version=4))


def mismatches(committed: list, executed: list, name: str = "chapter") -> list[str]:
    """Problems between the committed checked cells (expected text in metadata) and executed ones."""
    if len(executed) != len(committed):
        return [f"{name}: {len(committed)} checked cells in the source, {len(executed)} in the build"]
    problems = []
    for k, (want_cell, got_cell) in enumerate(zip(committed, executed)):
        want = want_cell.metadata.get("spinenet", {}).get("expected_output")
        got = text_output(got_cell)
        if want is None:
            problems.append(f"{name}: checked cell {k} has no recorded output (record it after a build)")
        elif got != want:
            problems.append(f"{name}, checked cell {k}: a published number moved\n--- recorded\n{want}"
                            f"\n--- now\n{got}")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_checked_outputs_match_the_recorded_ones(path):
    committed = checked_cells(nbformat.read(path, as_version=4))
    if not committed:
        pytest.skip(f"{path.name} has no {MARKER} cell")
    executed_path = EXECUTED / path.relative_to(REPO)
    if not executed_path.exists():
        if os.environ.get("SPINENET_BROWSER_REQUIRED") == "1":
            pytest.fail(f"{executed_path} missing: build the book first")
        pytest.skip(f"{executed_path} missing: build the book first")
    problems = mismatches(committed, executed_cells(path), path.name)
    assert not problems, "\n".join(problems) + (
        f"\nIf deliberate: python tests/browser/test_checked_outputs.py {path.relative_to(REPO)}")


def _cell(source: str, stdout: str | None = None, expected: str | None = None):
    cell = nbformat.v4.new_code_cell(source)
    if stdout is not None:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout)]
    if expected is not None:
        cell.metadata["spinenet"] = {"expected_output": expected}
    return cell


def test_the_check_catches_a_moved_number_and_ignores_unmarked_cells():
    src = f"{MARKER}\nprint(table)"
    nb = nbformat.v4.new_notebook(cells=[_cell("print(1)"), _cell(src, expected="pfirrmann 0.71")])
    ran = nbformat.v4.new_notebook(cells=[_cell("print(1)", "1\n"), _cell(src, "pfirrmann 0.71  \r\n")])
    assert mismatches(checked_cells(nb), checked_cells(ran)) == []
    moved = nbformat.v4.new_notebook(cells=[_cell("print(1)", "2\n"), _cell(src, "pfirrmann 0.72\n")])
    (problem,) = mismatches(checked_cells(nb), checked_cells(moved))
    assert "0.71" in problem and "0.72" in problem
    unrecorded = nbformat.v4.new_notebook(cells=[_cell(src)])
    assert "no recorded output" in mismatches(checked_cells(unrecorded), checked_cells(ran))[0]


def record(path: Path) -> int:
    """Copy the executed outputs of ``path``'s checked cells into its metadata; returns the count."""
    nb = nbformat.read(path, as_version=4)
    committed, executed = checked_cells(nb), executed_cells(path)
    if len(committed) != len(executed):
        raise SystemExit(f"{path}: {len(committed)} checked cells, the build has {len(executed)}: rebuild")
    for want_cell, got_cell in zip(committed, executed):
        want_cell.metadata.setdefault("spinenet", {})["expected_output"] = text_output(got_cell)
    nbformat.write(nb, path)
    return len(committed)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}: recorded {record((Path.cwd() / arg).resolve())} checked outputs")
