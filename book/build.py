"""Build the book: every chapter executed once with papermill, then the site from those notebooks.

Usage (from the repository root, with the project's environment)::

    python book/build.py                 # tier ci: every chapter at its CI size, minutes on a CPU
    python book/build.py --tier teaching # the teaching run (tens of minutes per chapter on a CPU)
    python book/build.py --chapters 05_evaluation 07_hotspot_quality --no-site

1. Every chapter of ``_toc.yml`` is executed by papermill with the parameters of
   ``book/params/<tier>.yaml`` injected into its ``parameters`` cell (working directory
   ``book/``), and written with its outputs to ``_build/book_src/book/<chapter>.ipynb``; each
   chapter's execution time is printed and saved in ``_build/chapter_times.json``. Progress bars
   are switched off (``TQDM_DISABLE=1``), and an executed chapter that still shows one, or a
   widget with no static view, fails the build.
2. ``_build/book_src`` also receives the book's other sources and a copy of ``_config.yml`` with
   execution off, and Jupyter Book builds the site from it into ``_build/html`` (``-W -n
   --keep-going``: a warning fails the build). Nothing is executed a second time.
3. ``repository.url`` of ``_config.yml`` is the one setting for launch buttons and install cells:
   while it is empty the site has neither; once set, every chapter gets a first cell that
   installs the package from it where it is missing, and the Binder / Colab buttons appear.

The committed chapters stay without outputs; nothing under ``book/`` is written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill
import yaml
from sphinx_external_toc.parsing import parse_toc_yaml

REPO = Path(__file__).resolve().parent.parent
BOOK = REPO / "book"
BUILD = REPO / "_build"
STAGE = BUILD / "book_src"

# Output residue that must not reach the site: live widgets (dead in a static page) and text
# progress bars.
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
BAR_MARKS = ("it/s]", "s/it]", "%|")


def toc_chapters() -> list[Path]:
    """The notebook chapters of ``_toc.yml``, in order."""
    docs = parse_toc_yaml(REPO / "_toc.yml")
    return [REPO / f"{d}.ipynb" for d in docs if (REPO / f"{d}.ipynb").exists()]


def repository_url(config: dict) -> str:
    """The public repository of ``_config.yml`` (``repository.url``), or ``""`` while unset."""
    return str((config.get("repository") or {}).get("url") or "").strip()


def site_config(config: dict) -> dict:
    """``_config.yml`` as the site is built from executed chapters: execution off, and no launch
    buttons (nor repository section) while the repository URL is unset."""
    config = {**config, "execute": {**(config.get("execute") or {}), "execute_notebooks": "off"}}
    if not repository_url(config):
        config.pop("launch_buttons", None)
        config.pop("repository", None)
    return config


def install_cell(url: str) -> nbformat.NotebookNode:
    """The first cell a chapter gets when the repository URL is set: installs spinenet_lite from it
    where the package is missing (Colab, Binder), does nothing where it is installed."""
    return nbformat.v4.new_code_cell(
        "# Outside the repository (Colab, Binder, a fresh environment) this installs spinenet_lite\n"
        "# from its repository; where the package is installed it does nothing.\n"
        "try:\n"
        "    import spinenet_lite  # noqa: F401\n"
        "except ImportError:\n"
        f'    %pip install --quiet "spinenet_lite[book] @ git+{url}"',
        metadata={"tags": ["install"]})


def stage_sources(config: dict) -> None:
    """Copy the book's sources (not the chapters) and the site's ``_config.yml`` to STAGE."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    skip = shutil.ignore_patterns("*.ipynb", "_executed", "__pycache__")
    shutil.copytree(BOOK, STAGE / "book", ignore=skip)
    shutil.copy2(REPO / "_toc.yml", STAGE / "_toc.yml")
    (STAGE / "_config.yml").write_text(yaml.safe_dump(site_config(config), sort_keys=False), encoding="utf-8")


def residue(nb: nbformat.NotebookNode) -> list[str]:
    """Cells whose outputs hold a live widget or a progress bar, as ``"cell N: what"`` (cells tagged
    ``remove-output``, whose outputs the site leaves out, aside)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if "remove-output" in cell.get("metadata", {}).get("tags", []):
            continue  # Jupyter Book leaves these outputs out of the site (a live widget's cell)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data and "image/png" not in data and "text/html" not in data:
                found.append(f"cell {i}: a widget with no static view")
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            if any(mark in text for mark in BAR_MARKS):
                found.append(f"cell {i}: a progress bar in {out.get('name')}")
    return found


def execute(chapter: Path, params: dict, timeout_s: int, url: str = "") -> float:
    """Run one chapter with papermill into STAGE (with the install cell first when ``url`` is
    set); the wall time in seconds."""
    out = STAGE / chapter.relative_to(REPO)
    source = chapter
    if url:
        nb = nbformat.read(chapter, as_version=4)
        nb.cells.insert(0, install_cell(url))
        source = STAGE / "_inputs" / chapter.name
        source.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, source)
    start = time.perf_counter()
    papermill.execute_notebook(str(source), str(out), parameters=params, cwd=str(chapter.parent),
                               kernel_name="python3", progress_bar=False, execution_timeout=timeout_s)
    seconds = time.perf_counter() - start
    bad = residue(nbformat.read(out, as_version=4))
    if bad:
        raise SystemExit(f"{chapter.name}: output the site cannot show: {'; '.join(bad)}")
    return seconds


def build_site() -> None:
    """Jupyter Book over STAGE into ``_build/html`` (warnings are errors)."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe if exe.exists() else "jupyter-book"), "build", str(STAGE), "--path-output", str(REPO),
           "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tier", default=os.environ.get("SPINENET_TIER", "ci"),
                        help="parameters from book/params/<tier>.yaml (default: $SPINENET_TIER or ci)")
    parser.add_argument("--chapters", nargs="*", help="chapter stems to execute (default: all of _toc.yml)")
    parser.add_argument("--no-site", action="store_true", help="execute the chapters only")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = parser.parse_args(argv)

    params_file = BOOK / "params" / f"{args.tier}.yaml"
    if not params_file.exists():
        parser.error(f"no parameters for tier {args.tier!r}: {params_file} is missing")
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    chapters = toc_chapters()
    if args.chapters:
        unknown = set(args.chapters) - {c.stem for c in chapters}
        if unknown:
            parser.error(f"not chapters of _toc.yml: {sorted(unknown)}")
        chapters = [c for c in chapters if c.stem in args.chapters]

    os.environ["TQDM_DISABLE"] = "1"          # inherited by the kernels papermill starts
    os.environ["SPINENET_TIER"] = str(params.get("tier", args.tier))
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    stage_sources(config)
    times: dict[str, float] = {}
    for chapter in chapters:
        times[chapter.stem] = execute(chapter, params, args.timeout, repository_url(config))
        print(f"book: {chapter.stem} executed in {times[chapter.stem]:.1f} s (tier {args.tier})", flush=True)
    (BUILD / "chapter_times.json").write_text(json.dumps({"tier": args.tier, "seconds": times}, indent=2))
    print(f"book: {len(times)} chapters executed in {sum(times.values()):.0f} s", flush=True)
    if not args.no_site:
        build_site()
        print(f"book: site in {BUILD / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
