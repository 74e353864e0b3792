#!/usr/bin/env bash
# Installs dependencies, builds everything with warnings as errors, and runs
# every test suite (unit, conformance, integration) through CTest, then
# refuses skipped tests that are not on tests/skip-allowlist.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXFER_WERROR=ON
cmake --build "$BUILD_DIR" -j "$(nproc)"
cd "$BUILD_DIR"
ctest --output-on-failure -j 2 --timeout 600 --output-junit ctest-junit.xml
# A skipped test tests nothing: in CI (or as root, where every test can run)
# a skip not on tests/skip-allowlist.txt fails the run; elsewhere it is
# reported only (a non-root developer's netlab and tmpfs tests skip).
if [ -n "${CI:-}" ] || [ "$(id -u)" = 0 ]; then
  python3 "$ROOT/scripts/check-skips.py" ctest-junit.xml "$ROOT/tests/skip-allowlist.txt"
else
  python3 "$ROOT/scripts/check-skips.py" ctest-junit.xml "$ROOT/tests/skip-allowlist.txt" || true
fi
