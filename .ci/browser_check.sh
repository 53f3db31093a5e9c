#!/usr/bin/env bash
# The built site in a real browser (issue 9), and the book's checked numbers through nbval.
# Run from anywhere AFTER the book build of .ci/run, with the same .venv:
#     .ci/browser_check.sh
# 1. It installs Debian's chromium when missing (needs root; no other network use), serves
#    _build/html on 127.0.0.1 and opens every page of _toc.yml in that headless Chromium through
#    Playwright (tests/browser/test_site.py; `playwright install` is never run), keeping a
#    screenshot of every page under _build/screenshots/ (the CI artefact).
# 2. nbval re-executes the chapters that have `# NBVAL_CHECK_OUTPUT` cells (copies under
#    _build/nbval/book/ with the tier's parameters and the outputs recorded in the committed
#    cells' metadata; tests/browser/test_checked_outputs.py) and compares those cells.
# A missing site or browser is a failure here. Both steps run; either failing fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
tier="${SPINENET_TIER:-ci}"

if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM:-}" ]; then
  echo "ci: installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi

browser_rc=0
SPINENET_BROWSER_REQUIRED=1 OMP_NUM_THREADS=1 \
  .venv/bin/python -m pytest -q -p no:cacheprovider -rs tests/browser || browser_rc=$?
echo "ci: browser check of every page done in $(( $(date +%s) - start )) s; screenshots in _build/screenshots/"

nbval_start=$(date +%s)
nbval_rc=0
.venv/bin/python tests/browser/test_checked_outputs.py --prepare --tier "$tier"
TQDM_DISABLE=1 SPINENET_TIER="$tier" .venv/bin/python -m pytest -q -p no:cacheprovider \
  --nbval-lax --nbval-current-env --nbval-sanitize-with tests/browser/nbval_sanitize.cfg \
  --nbval-cell-timeout 1800 --timeout 1800 _build/nbval/book || nbval_rc=$?
if [ "$nbval_rc" -ne 0 ]; then
  echo "ci: a checked output differs from its record; if the change is deliberate, re-record it from" \
       "this build and review the diff: .venv/bin/python tests/browser/test_checked_outputs.py book/<chapter>.ipynb"
fi
echo "ci: checked outputs (nbval, tier $tier) done in $(( $(date +%s) - nbval_start )) s"
if [ "$browser_rc" -ne 0 ] || [ "$nbval_rc" -ne 0 ]; then
  echo "ci: browser check exit $browser_rc, nbval exit $nbval_rc"
  exit 1
fi
