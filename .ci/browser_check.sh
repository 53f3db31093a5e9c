#!/usr/bin/env bash
# The built site in a real browser (issue 9), and the book's checked numbers.
# Run from anywhere AFTER the book build of .ci/run, with the same .venv:
#     .ci/browser_check.sh
# It installs Debian's chromium when missing (needs root; no other network use), serves
# _build/html on 127.0.0.1, opens every page of _toc.yml in headless Chromium
# (tests/browser/test_site.py), compares the `# NBVAL_CHECK_OUTPUT` cells of the executed
# chapters in _build/jupyter_execute with their recorded outputs
# (tests/browser/test_checked_outputs.py), and keeps a screenshot of every page under
# _build/screenshots/ (the CI artefact). A missing site or browser is a failure here.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM:-}" ]; then
  echo "ci: installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

SPINENET_BROWSER_REQUIRED=1 OMP_NUM_THREADS=1 \
  .venv/bin/python -m pytest -q -p no:cacheprovider -rs tests/browser
echo "ci: browser check of every page done in $(( $(date +%s) - start )) s; screenshots in _build/screenshots/"
