"""Where the package reads and writes, in a checkout and as an installed copy (spinenet_lite.paths).

The installed case is simulated by pointing ``paths.PACKAGE_DIR`` at a ``site-packages`` folder
of a temporary directory; ``.ci/outside_clone.sh`` checks the real thing (a wheel in a new venv).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs
import pytest

from spinenet_lite import paths
from spinenet_lite.engine import weights as W
from spinenet_lite.errors import WeightsError

REPO = Path(__file__).resolve().parent.parent
ENVS = (paths.CACHE_DIR_ENV, paths.DATA_DIR_ENV, paths.RESULTS_DIR_ENV, paths.WEIGHTS_DIR_ENV,
        W.WEIGHTS_URL_ENV)


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def installed(clean_env, tmp_path):
    """The package as if installed in site-packages; the user cache and the working folder in tmp_path."""
    pkg = tmp_path / "venv" / "site-packages" / "spinenet_lite"
    pkg.mkdir(parents=True)
    clean_env.setattr(paths, "PACKAGE_DIR", pkg)
    clean_env.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))
    work = tmp_path / "work"
    work.mkdir()
    clean_env.chdir(work)
    return pkg, tmp_path / "cache", work


@pytest.fixture
def checkout(clean_env, tmp_path):
    """A source tree of spinenet_lite in tmp_path (a pyproject naming it beside the package)."""
    root = tmp_path / "src"
    (root / "spinenet_lite").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "spinenet_lite"\n')
    clean_env.setattr(paths, "PACKAGE_DIR", root / "spinenet_lite")
    clean_env.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))
    return root, tmp_path / "cache"


def test_this_checkout_keeps_its_folders(clean_env):
    assert paths.checkout_root() == REPO
    assert paths.data_root() == REPO / "data"
    assert paths.results_dir() == REPO / "data" / "results"
    assert paths.runs_dir() == REPO / "data" / "runs"
    assert paths.weights_dirs()[0] == REPO / "data" / "weights"
    assert W.weights_dir() == REPO / "data" / "weights"


def test_user_cache_is_platformdirs_unless_set(clean_env, tmp_path):
    assert paths.user_cache_dir() == platformdirs.user_cache_path("spinenet_lite")
    clean_env.setenv(paths.CACHE_DIR_ENV, str(tmp_path))
    assert paths.user_cache_dir() == tmp_path


def test_installed_copy_writes_nothing_inside_the_package(installed):
    pkg, cache, work = installed
    assert paths.checkout_root() is None
    assert paths.data_root() == cache / "data"
    assert paths.results_dir() == work / "results"
    assert paths.runs_dir() == work / "runs"
    assert paths.weights_dirs() == [cache / "weights"]
    for p in (paths.data_root(), paths.results_dir(), paths.runs_dir(), *paths.weights_dirs()):
        assert not p.is_relative_to(pkg.parent), p


def test_another_projects_pyproject_is_not_a_checkout(clean_env, tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')
    (tmp_path / "spinenet_lite").mkdir()
    clean_env.setattr(paths, "PACKAGE_DIR", tmp_path / "spinenet_lite")
    assert paths.checkout_root() is None and not paths.is_checkout(tmp_path / "missing")


def test_environment_wins_over_both_layouts(installed, monkeypatch, tmp_path):
    for name, sub in ((paths.DATA_DIR_ENV, "d"), (paths.RESULTS_DIR_ENV, "r"), (paths.WEIGHTS_DIR_ENV, "w")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    assert paths.data_root() == tmp_path / "d"
    assert paths.data_root(tmp_path / "x") == tmp_path / "x"  # an explicit root wins over all
    assert paths.results_dir() == tmp_path / "r"
    assert paths.weights_dirs() == [tmp_path / "w"] and paths.weights_cache_dir() == tmp_path / "w"


def test_use_data_dir_sets_and_restores(clean_env, tmp_path):
    with paths.use_data_dir(tmp_path / "a"):
        assert paths.data_root() == (tmp_path / "a").resolve()
    assert paths.DATA_DIR_ENV not in os.environ
    clean_env.setenv(paths.DATA_DIR_ENV, str(tmp_path / "b"))
    with paths.use_data_dir(tmp_path / "a"):
        assert paths.data_root() == (tmp_path / "a").resolve()
    assert os.environ[paths.DATA_DIR_ENV] == str(tmp_path / "b")
    with paths.use_data_dir(None):
        assert paths.data_root() == tmp_path / "b"


def test_git_commit_of_an_installed_copy_is_unknown(installed, monkeypatch):
    from spinenet_lite.results import COMMIT_ENV, git_commit

    monkeypatch.delenv(COMMIT_ENV, raising=False)
    assert git_commit() == "unknown"


def test_default_run_dir_follows_the_layout(installed):
    from spinenet_lite.cli.train import default_run_dir

    _, _, work = installed
    assert default_run_dir("ci", "conv5", 3) == work / "runs" / "ci_conv5_s3"
    assert default_run_dir("ci", "conv5", 3, split_seed=2) == work / "runs" / "ci_conv5_s3_split2"


# ------------------------------------------------------------ weights: the resolution order
def _entry(monkeypatch, data: bytes) -> W.WeightsEntry:
    entry = W.WeightsEntry("g", "g.pt", "grader", hashlib.sha256(data).hexdigest(), "test")
    monkeypatch.setitem(W.REGISTRY, "g", entry)
    return entry


def test_checkout_copy_first_then_user_cache(checkout, monkeypatch):
    root, cache = checkout
    data = b"not really weights"
    _entry(monkeypatch, data)
    for folder in (root / "data" / "weights", cache / "weights"):
        folder.mkdir(parents=True)
        (folder / "g.pt").write_bytes(data)
    assert paths.weights_dirs() == [root / "data" / "weights", cache / "weights"]
    assert W.resolve_weights("g").path == root / "data" / "weights" / "g.pt"
    (root / "data" / "weights" / "g.pt").unlink()
    assert W.resolve_weights("g").path == cache / "weights" / "g.pt"
    assert W.verify_weights("g")["sha256"] == hashlib.sha256(data).hexdigest()


def test_weights_dir_setting_is_the_only_folder(checkout, monkeypatch, tmp_path):
    """An explicit SPINENET_WEIGHTS_DIR is never shadowed by the checkout's copy."""
    root, _ = checkout
    data = b"checkout copy"
    _entry(monkeypatch, data)
    (root / "data" / "weights").mkdir(parents=True)
    (root / "data" / "weights" / "g.pt").write_bytes(data)
    monkeypatch.setenv(paths.WEIGHTS_DIR_ENV, str(tmp_path / "mine"))
    with pytest.raises(WeightsError, match="not there"):
        W.resolve_weights("g")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "g.pt").write_bytes(data)
    assert W.resolve_weights("g").path == tmp_path / "mine" / "g.pt"


def test_no_copy_and_no_url_says_how_to_get_them(installed, monkeypatch):
    _entry(monkeypatch, b"x")
    assert W.WEIGHTS_BASE_URL is None and W.weights_url() is None  # no release published yet
    with pytest.raises(WeightsError, match=r"no download URL is set.*clone the repository.*"
                                           r"SPINENET_WEIGHTS_DIR.*SPINENET_WEIGHTS_URL.*--weights"):
        W.load_grader("g")
    monkeypatch.setenv(W.WEIGHTS_URL_ENV, "http://127.0.0.1:9/w/")
    assert W.weights_url() == "http://127.0.0.1:9/w"


def test_default_localiser_path_follows_the_folders(checkout, monkeypatch):
    from spinenet_lite.localise.inference import default_weights_path

    root, cache = checkout
    monkeypatch.delenv("SPINENET_LOCALISER_WEIGHTS", raising=False)
    assert default_weights_path() == root / "data" / "weights" / "localiser.pt"  # none yet: the first
    (cache / "weights").mkdir(parents=True)
    (cache / "weights" / "localiser.pt").write_bytes(b"x")
    assert default_weights_path() == cache / "weights" / "localiser.pt"


def test_sha256_file_is_pooch_file_hash(tmp_path):
    import pooch

    p = tmp_path / "f.bin"
    p.write_bytes(b"spinenet" * 1000)
    assert W.sha256_file(p) == hashlib.sha256(p.read_bytes()).hexdigest() == pooch.file_hash(str(p))
