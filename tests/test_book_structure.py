"""The book as a reader meets it: toc, chapter frame, exercises, citations, launch and install.

Outputs and the single ``parameters`` cell are checked by ``tests/test_notebooks.py``. Every
chapter is a ``book/NN_*.ipynb`` notebook; each must carry the frame

    Overview, Prerequisites (time per tier, GPU or not), sections, Summary, What's next,
    Exercises (>= 2, one "predict, then run") with solutions in MyST dropdown admonitions,

either as ``##`` headings or, for Overview / Prerequisites, as bold lead-ins
(``**Overview.**``) in the title cell.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
PAGES = sorted(BOOK.glob("*.md"))

# The works the book must cite (keys of book/references.bib).
REQUIRED_CITATIONS = {
    "jamaludin2016spinenet",  # the paper
    "chatfield2014devil",  # VGG-M
    "simonyan2014saliency",  # gradient saliency
    "pfirrmann2001",  # Pfirrmann grading
    "lootus2015",  # Lootus's protocol
    "vandergraaf2024spider",  # SPIDER
    "smilkov2017smoothgrad",  # SmoothGrad
    "adebayo2018sanity",  # sanity checks
    "selvaraju2017gradcam",  # Grad-CAM
}
FRAME = ("Overview", "Prerequisites", "Summary", "What's next", "Exercises")
SOLUTION = re.compile(
    r"^[ \t]*(`{3,}|:{3,})\{admonition\}[ \t]*Solution[ \t]*\n[ \t]*:class:[ \t]*dropdown[ \t]*$",
    re.MULTILINE)
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def toc_files() -> list[str]:
    """Every document of ``_toc.yml`` (root first), without suffix."""
    return list(parse_toc_yaml(REPO / "_toc.yml"))


def markdown_of(path: Path) -> str:
    """All markdown cells of a notebook, or the text of a ``.md`` page."""
    if path.suffix == ".md":
        return path.read_text()
    nb = nbformat.read(path, as_version=4)
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def frame_positions(text: str) -> dict[str, int]:
    """Where each frame element starts in ``text`` (absent elements are left out)."""
    found = {}
    for name in FRAME:
        esc = re.escape(name)
        m = (re.search(rf"^#{{2,3}}[ \t]+{esc}\b", text, re.MULTILINE)
             or re.search(rf"^\*\*{esc}\.?\*\*", text, re.MULTILINE))
        if m:
            found[name] = m.start()
    return found


def exercises_section(text: str) -> str:
    """The text from the ``## Exercises`` heading to the next ``##`` heading or the end."""
    m = re.search(r"^##[ \t]+Exercises\b.*$", text, re.MULTILINE)
    if not m:
        return ""
    rest = text[m.end():]
    nxt = re.search(r"^##[ \t]+\S", rest, re.MULTILINE)
    return rest[: nxt.start()] if nxt else rest


def bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (BOOK / "references.bib").read_text(), re.MULTILINE))


def test_there_are_chapters():
    assert len(CHAPTERS) >= 6, f"expected the book's chapters in {BOOK}, found {[p.name for p in CHAPTERS]}"


@pytest.mark.parametrize("entry", toc_files())
def test_every_toc_entry_exists(entry):
    candidates = [REPO / f"{entry}{suffix}" for suffix in (".md", ".ipynb")]
    assert any(p.exists() for p in candidates), f"_toc.yml lists {entry!r} but neither .md nor .ipynb exists"


def test_every_chapter_and_page_is_in_the_toc():
    listed = {str(Path(e)) for e in toc_files()}
    missing = [p.name for p in [*CHAPTERS, *PAGES] if str(p.relative_to(REPO).with_suffix("")) not in listed]
    assert not missing, f"not in _toc.yml (only_build_toc_files drops them from the site): {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_the_frame_in_order(path):
    pos = frame_positions(markdown_of(path))
    missing = [n for n in FRAME if n not in pos]
    assert not missing, f"{path.name}: frame elements missing: {missing}"
    order = sorted(FRAME, key=pos.get)
    assert order == list(FRAME), f"{path.name}: frame out of order: {order}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_prerequisites_say_time_per_tier_and_gpu(path):
    text = markdown_of(path)
    pos = frame_positions(text)
    assert "Prerequisites" in pos
    following = [p for p in pos.values() if p > pos["Prerequisites"]]
    prereq = text[pos["Prerequisites"]: min(following) if following else None]
    # The prerequisites run to the next frame element or the first section heading.
    body_start = prereq.find("\n") + 1
    nxt = re.search(r"^#{1,3}[ \t]+\S", prereq[body_start:], re.MULTILINE)
    prereq = prereq[: body_start + nxt.start()] if nxt else prereq
    for word in ("`ci`", "`teaching`", "GPU"):
        assert word in prereq, f"{path.name}: Prerequisites should mention {word} (time per tier, GPU or not)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_has_two_exercises_with_dropdown_solutions_one_predict(path):
    section = exercises_section(markdown_of(path))
    items = re.findall(r"^\d+\.[ \t]+", section, re.MULTILINE)
    solutions = SOLUTION.findall(section)
    assert len(items) >= 2, f"{path.name}: {len(items)} numbered exercises, need >= 2"
    assert len(solutions) >= len(items), (
        f"{path.name}: {len(items)} exercises but {len(solutions)} solutions in "
        "```{admonition} Solution / :class: dropdown blocks")
    assert re.search(r"predict", section, re.IGNORECASE), (
        f"{path.name}: one exercise must ask to change a parameter and predict the outcome first")


@pytest.mark.parametrize("path", [*CHAPTERS, *PAGES], ids=lambda p: p.name)
def test_dropdown_fences_are_balanced(path):
    """An admonition fence must be closed by the same fence; nested code needs a longer outer one."""
    text = markdown_of(path)
    for m in re.finditer(r"^[ \t]*(`{3,})\{admonition\}", text, re.MULTILINE):
        fence = m.group(1)
        body = text[m.end():]
        inner = re.search(r"^[ \t]*(`{3,})\w", body, re.MULTILINE)
        close = re.search(rf"^[ \t]*{fence}[ \t]*$", body, re.MULTILINE)
        assert close, f"{path.name}: admonition at offset {m.start()} is never closed"
        if inner and inner.start() < close.start():
            assert len(inner.group(1)) < len(fence), (
                f"{path.name}: a code block inside an admonition needs the admonition fenced with "
                f"more backticks ({'`' * (len(inner.group(1)) + 1)}{{admonition}})")


def test_every_citation_key_is_in_the_bibliography():
    keys = bib_keys()
    unknown = {}
    for path in [*CHAPTERS, *PAGES]:
        for group in CITE.findall(markdown_of(path)):
            for key in (k.strip() for k in group.split(",")):
                if key not in keys:
                    unknown.setdefault(path.name, []).append(key)
    assert not unknown, f"citation keys missing from book/references.bib: {unknown}"


def test_the_required_works_are_cited():
    cited = {k.strip() for p in [*CHAPTERS, *PAGES]
             for g in CITE.findall(markdown_of(p)) for k in g.split(",")}
    assert REQUIRED_CITATIONS <= bib_keys()
    missing = REQUIRED_CITATIONS - cited
    assert not missing, f"never cited in the book: {sorted(missing)}"


def test_bibliography_page_and_bibtex_are_configured():
    assert "book/references.bib" in CONFIG["bibtex_bibfiles"]
    assert "{bibliography}" in (BOOK / "references.md").read_text()


def test_intro_maps_all_eight_chapters_and_says_how_to_run():
    intro = (BOOK / "intro.md").read_text()
    for n in range(1, 9):
        assert re.search(rf"^\|[ \t]*(\[)?{n}\.", intro, re.MULTILINE), f"intro's map lacks chapter {n}"
    for word in ("GPU", "CPU", "Weak supervision", "tier", "data.md"):
        assert word in intro, f"intro should cover {word!r}"


def test_data_page_credits_spider_and_its_licence():
    text = (BOOK / "data.md").read_text()
    for word in ("vandergraaf2024spider", "CC BY 4.0", "10.1038/s41597-024-03090-w", "synthetic"):
        assert word in text


def _build_module():
    """``book/build.py``, the book's build script (a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("book_build", BOOK / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repository_url_is_one_setting_and_never_a_placeholder():
    build = _build_module()
    url = build.repository_url(CONFIG)
    assert url == "" or url.startswith("https://"), url
    for path in CHAPTERS:
        text = path.read_text(encoding="utf-8")
        assert "REPLACE-WITH-OWNER" not in text and "%pip install" not in text, (
            f"{path.name}: install cells come from book/build.py and the repository url, not the chapter")
    unset = build.site_config({**CONFIG, "repository": {"url": ""}})
    assert "launch_buttons" not in unset and "repository" not in unset
    assert unset["execute"]["execute_notebooks"] == "off"
    repo = "https://github.com/someone/spinenet_lite"
    setting = build.site_config({**CONFIG, "repository": {"url": repo}})
    assert setting["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    cell = build.install_cell(repo)
    assert "import spinenet_lite" in cell.source and "except ImportError" in cell.source
    assert f"git+{repo}" in cell.source and "%pip install" in cell.source


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_parameters_cell_comes_first_then_the_imports(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert params and params[0] == 0, f"{path.name}: the parameters cell should be the first code cell"
    assert params[0] + 1 < len(code), f"{path.name}: no code cell after the parameters cell"
    after = code[params[0] + 1].source
    assert after.startswith("%matplotlib inline"), (
        f"{path.name}: the cell after the parameters cell should start with %matplotlib inline")
