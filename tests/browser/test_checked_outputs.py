"""The book's key numbers, checked by nbval: a change that silently moves a published number fails.

A chapter marks a cell whose printed output must not change with a line
``# NBVAL_CHECK_OUTPUT`` (nbval's marker). The cell prints rounded numbers (e.g. read from the
committed ``data/results/<experiment>_<tier>.json``), and its expected text output is recorded
in the committed notebook's cell metadata, ``metadata["spinenet"]["expected_output"]``
(metadata, not outputs: chapters stay committed without outputs).

``.ci/browser_check.sh`` checks them with nbval after the book build, in two steps:

1. ``python tests/browser/test_checked_outputs.py --prepare`` writes, for each chapter with
   marked cells, a copy ``_build/nbval/book/<chapter>.ipynb``: the chapter with the tier's
   parameters (``book/params/<tier>.yaml``) injected by papermill without executing it
   (``prepare_only``), and the recorded text placed as the outputs of its marked cells
   (:func:`expected_outputs`).
2. ``pytest --nbval-lax --nbval-current-env --nbval-sanitize-with tests/browser/nbval_sanitize.cfg
   _build/nbval/book`` executes those copies and compares the marked cells' fresh outputs with
   the recorded ones (line ends and trailing spaces aside; an HTML table is not compared, the
   cell prints its numbers).

A checked cell may print (stdout) and ``display(HTML(...))``; anything else in its outputs (an
expression's repr, a figure, stderr) is refused when recording, because nbval would compare it.

Record or update the expected outputs after a deliberate change, from the executed chapter of
the last book build (``_build/book_src``), then review the diff::

    python tests/browser/test_checked_outputs.py book/05_evaluation.ipynb

The tests here check the preparation on every chapter and, on a small notebook, that nbval with
these copies passes the recorded numbers and fails a moved one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("SPINENET_SITE_DIR", REPO / "_build" / "html")).resolve().parent
EXECUTED = BUILD / "book_src"  # the chapters as book/build.py executed them
NBVAL_DIR = REPO / "_build" / "nbval" / "book"  # the copies nbval executes (.ci/browser_check.sh)
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
MARKER = "# NBVAL_CHECK_OUTPUT"
# IPython's text/plain of a display() whose object has no text form, and the MIME type it carries.
DISPLAY_MIMES = {"<IPython.core.display.HTML object>": "text/html"}
HTML_PLACEHOLDER = "<div>recorded as text only</div>"  # nbval_sanitize.cfg: HTML is not compared


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
    """A checked cell's outputs as the text recorded for it: stdout and ``text/plain``, with line
    ends and trailing spaces normalised. Raises ``ValueError`` for an output nbval would compare
    that the text cannot stand for (stderr, an error, a repr other than a display object's)."""
    parts: list[str] = []
    stream = False  # the last part is stdout: consecutive chunks are one stream (as nbval joins them)
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream" and out.get("name") == "stdout":
            if stream:
                parts[-1] += out.get("text", "")
            else:
                parts.append(out.get("text", ""))
            stream = True
            continue
        stream = False
        plain = out.get("data", {}).get("text/plain", "")
        if kind in ("execute_result", "display_data") and plain in DISPLAY_MIMES:
            parts.append(plain)
            continue
        raise ValueError(f"a checked cell may print and display(HTML(...)), not {kind} "
                         f"{out.get('name') or list(out.get('data', {}))}: print its numbers instead")
    text = "".join(p if p.endswith("\n") else p + "\n" for p in parts).replace("\r\n", "\n")
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def expected_outputs(text: str) -> list:
    """The outputs nbval compares with, from a recorded text (the inverse of :func:`text_output`):
    a ``display_data`` for each display-object line, a stdout stream for each run of other lines."""
    outputs, lines = [], []

    def flush() -> None:
        if lines:
            outputs.append(nbformat.v4.new_output("stream", name="stdout", text="\n".join(lines) + "\n"))
            lines.clear()

    for line in text.splitlines():
        if line in DISPLAY_MIMES:
            flush()
            outputs.append(nbformat.v4.new_output(
                "display_data", data={"text/plain": line, DISPLAY_MIMES[line]: HTML_PLACEHOLDER}))
        else:
            lines.append(line)
    flush()
    return outputs


def prepare(chapter: Path, params: dict, out_dir: Path = NBVAL_DIR) -> Path | None:
    """Write the copy of ``chapter`` that nbval executes (parameters injected, recorded outputs in
    the marked cells) under ``out_dir``, same file name; ``None`` when it has no marked cell. Raises
    ``ValueError`` when a marked cell has no recorded output."""
    committed = checked_cells(nbformat.read(chapter, as_version=4))
    if not committed:
        return None
    missing = [k for k, c in enumerate(committed) if "expected_output" not in c.metadata.get("spinenet", {})]
    if missing:
        raise ValueError(f"{chapter.name}: checked cells {missing} have no recorded output: "
                         f"build the book, then python tests/browser/test_checked_outputs.py {chapter}")
    out = out_dir / chapter.name
    out.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(chapter), str(out), parameters=params, prepare_only=True,
                               kernel_name="python3", progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    for cell in checked_cells(nb):
        cell.outputs = expected_outputs(cell.metadata["spinenet"]["expected_output"])
        cell.execution_count = 1  # nbval refuses outputs of a cell that was never run
    nbformat.write(nb, out)
    return out


def tier_params(tier: str) -> dict:
    """The parameters ``book/build.py`` injects at ``tier`` (``book/params/<tier>.yaml``)."""
    return yaml.safe_load((REPO / "book" / "params" / f"{tier}.yaml").read_text(encoding="utf-8"))


def record(path: Path) -> int:
    """Copy the executed outputs of ``path``'s checked cells into its metadata; returns the count."""
    nb = nbformat.read(path, as_version=4)
    executed = EXECUTED / path.relative_to(REPO)
    committed, ran = checked_cells(nb), checked_cells(nbformat.read(executed, as_version=4))
    if len(committed) != len(ran):
        raise SystemExit(f"{path}: {len(committed)} checked cells, the build has {len(ran)}: rebuild")
    for k, (want_cell, got_cell) in enumerate(zip(committed, ran)):
        try:
            want_cell.metadata.setdefault("spinenet", {})["expected_output"] = text_output(got_cell)
        except ValueError as err:
            raise SystemExit(f"{path}, checked cell {k}: {err}") from None
    nbformat.write(nb, path)
    return len(committed)


# -- tests ------------------------------------------------------------------------------------
CHECKED = [c for c in CHAPTERS if checked_cells(nbformat.read(c, as_version=4))]


def test_the_book_has_checked_cells():
    assert len(CHECKED) >= 3, f"chapters with {MARKER} cells: {[c.name for c in CHECKED]}"


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.stem)
def test_every_checked_cell_has_a_recorded_output_and_a_copy_for_nbval(path, tmp_path):
    copy = prepare(path, tier_params("ci"), tmp_path)
    nb = nbformat.read(copy, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "tier = " in injected[0].source
    for cell in checked_cells(nb):
        assert cell.outputs and text_output(cell) == cell.metadata["spinenet"]["expected_output"]


def _cell(source: str, outputs: list | None = None, expected: str | None = None):
    cell = nbformat.v4.new_code_cell(source)
    cell.outputs = outputs or []
    if expected is not None:
        cell.metadata["spinenet"] = {"expected_output": expected}
    return cell


def test_recorded_text_round_trips_and_refuses_what_nbval_would_compare():
    html = nbformat.v4.new_output("display_data", data={"text/plain": "<IPython.core.display.HTML object>",
                                                        "text/html": "<table></table>"})
    out = nbformat.v4.new_output("stream", name="stdout", text="pfirrmann: 71.3  \r\nnarrowing: 60.1\n")
    text = text_output(_cell("", [html, out]))
    assert text == "<IPython.core.display.HTML object>\npfirrmann: 71.3\nnarrowing: 60.1"
    # A stream the kernel sent in chunks split mid-line is still one text.
    chunks = [nbformat.v4.new_output("stream", name="stdout", text=t)
              for t in ("pfirrmann: 71.3", "\nna", "rrowing: 60.1")]
    assert text_output(_cell("", [html, *chunks])) == text
    assert text_output(_cell("", expected_outputs(text))) == text
    assert [o.output_type for o in expected_outputs(text)] == ["display_data", "stream"]
    err = nbformat.v4.new_output("stream", name="stderr", text="warning\n")
    with pytest.raises(ValueError, match="stderr"):
        text_output(_cell("", [out, err]))
    with pytest.raises(ValueError, match="print its numbers"):
        text_output(_cell("", [nbformat.v4.new_output("execute_result", data={"text/plain": "0.713"})]))


def _nbval(notebook: Path) -> subprocess.CompletedProcess:
    """``pytest --nbval-lax`` on one notebook, as ``.ci/browser_check.sh`` runs it."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         "--nbval-sanitize-with", str(SANITIZE), str(notebook)],
        cwd=REPO, capture_output=True, text=True, timeout=300)


def test_nbval_passes_the_recorded_numbers_and_fails_a_moved_one(tmp_path):
    source = (f"{MARKER}\nfrom IPython.display import HTML, display\n"
              "display(HTML('<style>#T_1 {}</style><table id=\"T_1\"><tr><td>71.3</td></tr></table>'))\n"
              "print(f'pfirrmann: {0.7131 * 100:.1f}  ')\nprint('narrowing:', round(60.12, 1))")
    recorded = "<IPython.core.display.HTML object>\npfirrmann: 71.3\nnarrowing: 60.1"
    results = {}
    for name, expected in (("same", recorded), ("moved", recorded.replace("71.3", "71.4"))):
        chapter = tmp_path / f"{name}.ipynb"
        nb = nbformat.v4.new_notebook(cells=[
            _cell("tier = 'teaching'", expected=None), _cell("print(tier)  # not checked"),
            _cell(source, expected=expected)])
        nb.cells[0].metadata["tags"] = ["parameters"]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, chapter)
        results[name] = _nbval(prepare(chapter, {"tier": "ci"}, tmp_path / "nbval"))
    assert results["same"].returncode == 0, results["same"].stdout[-3000:]
    assert results["moved"].returncode != 0
    assert "71.4" in results["moved"].stdout and "71.3" in results["moved"].stdout
    # 4 cells: the parameters, papermill's injected parameters, an unchecked one, the checked one.
    assert "1 failed, 3 passed" in results["moved"].stdout, results["moved"].stdout[-3000:]
    assert "mismatch 'stdout'" in results["moved"].stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Record the checked outputs of chapters, or write "
                                                 "the copies nbval executes (--prepare).")
    parser.add_argument("chapters", nargs="*", type=Path, help="chapters whose outputs to record")
    parser.add_argument("--prepare", action="store_true",
                        help="write the nbval copies of every chapter with marked cells to _build/nbval/book")
    parser.add_argument("--tier", default=os.environ.get("SPINENET_TIER", "ci"),
                        help="parameters of book/params/<tier>.yaml (default: $SPINENET_TIER or ci)")
    args = parser.parse_args(argv)
    if args.prepare:
        params = tier_params(args.tier)
        for chapter in CHAPTERS:
            try:
                copy = prepare(chapter, params)
            except ValueError as err:
                raise SystemExit(str(err)) from None
            if copy is not None:
                print(f"nbval copy: {copy}")
    for arg in args.chapters:
        print(f"{arg}: recorded {record((Path.cwd() / arg).resolve())} checked outputs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
