#!/usr/bin/env bash
# The package outside its clone: a wheel of this tree in a fresh virtual environment, then
# `spinenet-lite demo` run from another folder. The shipped weights come the way an installed
# copy gets them: downloaded, hash-checked by pooch, from $SPINENET_WEIGHTS_URL, here a loopback
# http.server of data/weights/ that this script starts and stops. It checks that the report is
# written, that the localiser and the grader were downloaded into the user cache, and that
# nothing was written inside the installed package.
#
# Run from the repository root (as .ci/run does):  bash .ci/outside_clone.sh
# $PYTHON chooses the interpreter (default python3); SPINENET_OUTSIDE_KEEP=1 keeps the temp folder.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$(date +%s)
py=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/spinenet_outside.XXXXXX")
server_pid=""

cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "${SPINENET_OUTSIDE_KEEP:-0}" = 1 ]; then echo "outside-clone: kept $tmp"; else rm -rf "$tmp"; fi
    echo "outside-clone: total $(( $(date +%s) - start )) s with the clean-up"
}
trap cleanup EXIT
step() { echo "outside-clone: $1 after $(( $(date +%s) - start )) s"; }
fail() { echo "outside-clone: FAILED: $1" >&2; exit 1; }

# Nothing of the checkout or of CI's settings may leak into the installed copy's run.
unset PYTHONPATH SPINENET_DATA_DIR SPINENET_RESULTS_DIR SPINENET_WEIGHTS_DIR SPINENET_LOCALISER_WEIGHTS \
      SPINENET_GIT_COMMIT SPINENET_WEIGHTS_URL SPINENET_CACHE_DIR

# 1. A wheel of the working tree, built from a copy so that no build/ folder lands in the repository.
mkdir -p "$tmp/src" "$tmp/wheel"
tar -cf - --exclude=__pycache__ --exclude='*.pyc' pyproject.toml README.md spinenet_lite | tar -xf - -C "$tmp/src"
(cd "$tmp/src" && "$py" -m pip wheel -q --no-deps -w "$tmp/wheel" . >"$tmp/wheel.log" 2>&1) \
    || { grep -v "^WARNING: Location" "$tmp/wheel.log" >&2; fail "pip wheel"; }
wheel=$(ls "$tmp"/wheel/spinenet_lite-*.whl)
step "built $(basename "$wheel")"

# 2. A fresh virtual environment with the wheel and the locked dependencies (torch 2.13.0 CPU from disk).
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -c "$repo/requirements-lock.txt" "$wheel" >"$tmp/pip.log" 2>&1 \
    || { grep -v "^WARNING: Location" "$tmp/pip.log" >&2; fail "pip install of the wheel"; }
mkdir -p "$tmp/work"
pkg=$(cd "$tmp/work" && "$tmp/venv/bin/python" -c \
      "import pathlib, spinenet_lite; print(pathlib.Path(spinenet_lite.__file__).parent)")
case "$pkg" in "$tmp/venv/"*) ;; *) fail "spinenet_lite imports from $pkg, not the new venv";; esac
snapshot() { (cd "$pkg" && find . -path '*/__pycache__' -prune -o -type f -print | sort); }
snapshot > "$tmp/pkg_before.txt"
step "installed into a fresh venv"

# 3. The weights server: data/weights/ over HTTP on loopback only.
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$py" -m http.server "$port" --bind 127.0.0.1 --directory "$repo/data/weights" >"$tmp/server.log" 2>&1 &
server_pid=$!
"$py" - "$port" <<'EOF' || fail "the weights server did not start"
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/README.md", timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF

# 4. The demo, from another folder, with the user cache in the temp folder.
demo_start=$(date +%s)
(cd "$tmp/work" && SPINENET_CACHE_DIR="$tmp/cache" SPINENET_WEIGHTS_URL="http://127.0.0.1:$port" \
    NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 TQDM_DISABLE=1 \
    "$tmp/venv/bin/spinenet-lite" demo --out demo_out --device cpu --no-progress) 2>&1 | tee "$tmp/demo.log"
demo_s=$(( $(date +%s) - demo_start ))

# 5. The checks.
[ -s "$tmp/work/demo_out/report/report.html" ] || fail "no report at demo_out/report/report.html"
[ -s "$tmp/work/demo_out/report/grades.json" ] || fail "no grades.json"
! grep -q "localiser is not available" "$tmp/demo.log" || fail "the demo fell back to the phantom's corners"
for f in spinenet_synthetic.pt localiser.pt; do
    [ -s "$tmp/cache/weights/$f" ] || fail "$f was not downloaded into the user cache"
    grep -q "GET /$f " "$tmp/server.log" || fail "the server never served $f"
done
"$tmp/venv/bin/python" - "$tmp/work/demo_out/report/grades.json" "$tmp/cache/weights" <<'EOF' \
    || fail "grades.json does not name the downloaded weights"
import json, sys
js = json.load(open(sys.argv[1]))
assert js["weights"]["path"].startswith(sys.argv[2]), js["weights"]
assert js["localiser"]["path"].startswith(sys.argv[2]), js["localiser"]
EOF
snapshot > "$tmp/pkg_after.txt"
diff -u "$tmp/pkg_before.txt" "$tmp/pkg_after.txt" || fail "the demo wrote inside the installed package ($pkg)"
step "demo outside the clone passed (report written, weights downloaded and hash-checked; demo ${demo_s} s)"
echo "outside-clone: done in $(( $(date +%s) - start )) s"
