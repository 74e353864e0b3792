#!/usr/bin/env bash
# Runs one server fuzz target (CMakeLists.txt) for a fixed number of inputs
# from its seed corpus, the way scripts/fuzz.sh runs frame_fuzz.
#
#   run_fuzz.sh BINARY SEED_CORPUS WORK_DIR RUNS [libFuzzer options...]
#
# New inputs go to WORK_DIR/corpus (emptied first, so every run starts from
# the same state and the committed seeds stay untouched). The inputs of past
# findings (crashes/<target>_*, see crashes/README.md) run first, every time,
# as regression tests; a crash or a hang
# (-timeout) is written to WORK_DIR/crash-* or timeout-* and fails the run
# (rerun it with: BINARY FILE), as does a leak found at exit.
set -euo pipefail
if [ "$#" -lt 4 ]; then
  echo "usage: run_fuzz.sh BINARY SEED_CORPUS WORK_DIR RUNS [libFuzzer options...]" >&2
  exit 2
fi
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="$1" SEEDS="$2" WORK="$3" RUNS="$4"
shift 4
# OpenSSL's per-thread state of gRPC's threads is not a leak of ours.
export LSAN_OPTIONS="suppressions=$HERE/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
rm -rf "$WORK/corpus" "$WORK/regressions"
mkdir -p "$WORK/corpus" "$WORK/regressions"
target="$(basename "$BIN")"
target="${target%_fuzz}"
for f in "$HERE"/crashes/"$target"_*; do
  if [ -f "$f" ]; then cp "$f" "$WORK/regressions/"; fi
done
echo "fuzz: running $(basename "$BIN") for $RUNS inputs"
start=$(date +%s)
# -detect_leaks=0: no leak check after single inputs (gRPC's thread pool
# creates threads while an input runs, and a pointer in flight to a new
# thread reads as a leak); LeakSanitizer still checks the whole process at
# exit, after the server has shut down.
"$BIN" -runs="$RUNS" -seed=1 -timeout=20 -detect_leaks=0 -print_final_stats=1 \
  -artifact_prefix="$WORK/" "$@" "$WORK/corpus" "$SEEDS" "$WORK/regressions"
echo "fuzz: passed in $(($(date +%s) - start)) s"
