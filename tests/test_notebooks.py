"""Every chapter listed in _toc.yml runs at CI size, and is committed clean.

The papermill test is skipped when ``SPINENET_BOOK_EXECUTES=1``: ``.ci/run`` sets it because
the book build executes every chapter (at the CI tier) right after the tests, and one
execution serves both.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import yaml
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parent.parent
CI_PARAMS = yaml.safe_load((REPO / "book" / "params" / "ci.yaml").read_text())


def toc_chapters() -> list[Path]:
    """Notebook chapters in the order of ``_toc.yml`` (parsed by Jupyter Book's own toc parser)."""
    docs = parse_toc_yaml(REPO / "_toc.yml")
    return [REPO / f"{d}.ipynb" for d in docs if (REPO / f"{d}.ipynb").exists()]


CHAPTERS = toc_chapters()


def _parameter_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_committed_without_outputs_and_has_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs"
    params = _parameter_cells(nb)
    assert len(params) == 1, f"{path.name}: {len(params)} parameters cells"
    names = {line.split("=")[0].strip() for line in params[0].source.splitlines()
             if "=" in line and not line.lstrip().startswith(("#", "import"))}
    assert names == set(CI_PARAMS), f"{path.name}: parameters {sorted(names)} != ci.yaml {sorted(CI_PARAMS)}"


@pytest.mark.notebooks
@pytest.mark.skipif(os.environ.get("SPINENET_BOOK_EXECUTES") == "1",
                    reason="the book build executes every chapter at the CI tier in this run")
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs_at_ci_parameters(path, tmp_path):
    papermill = pytest.importorskip("papermill")
    papermill.execute_notebook(
        str(path), str(tmp_path / path.name), parameters=CI_PARAMS, cwd=str(path.parent),
        kernel_name="python3", progress_bar=False,
    )


def test_toc_lists_the_chapters():
    assert CHAPTERS, "no notebook chapter found in _toc.yml"
