#!/usr/bin/env bash
# Builds the frame codec fuzzer (tests/fuzz/frame_fuzz.cpp) with clang's
# libFuzzer + AddressSanitizer + UBSan and runs it for a fixed number of
# inputs from the seed corpus in tests/fuzz/corpus.
#
#   scripts/fuzz.sh [build-dir]        (default build/fuzz)
#
# Environment: FUZZ_CXX (default clang++-14, else clang++), FUZZ_RUNS
# (default 200000). Exits non-zero when the build fails or the fuzzer finds a
# crash, a leak or a round-trip mismatch; the offending input is written to
# <build-dir>/crash-* (rerun it with <build-dir>/frame_fuzz <file>).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/build/fuzz}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [ -z "${FUZZ_CXX:-}" ]; then
  if command -v clang++-14 > /dev/null; then
    FUZZ_CXX=clang++-14
  elif command -v clang++ > /dev/null; then
    FUZZ_CXX=clang++
  else
    echo "fuzz: no clang++ found (set FUZZ_CXX; needs libFuzzer, e.g. libclang-rt-14-dev)" >&2
    exit 2
  fi
fi

FLAGS=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -I "$ROOT/include")
SOURCES=(
  "$ROOT/tests/fuzz/frame_fuzz.cpp"
  "$ROOT/src/protocol/frame.cpp"
  "$ROOT/src/core/checksum.cpp"
  "$ROOT/src/core/result.cpp"
)

echo "fuzz: building $OUT/frame_fuzz with $FUZZ_CXX"
"$FUZZ_CXX" "${FLAGS[@]}" "${SOURCES[@]}" -lxxhash -lfmt -o "$OUT/frame_fuzz"

# libFuzzer writes new interesting inputs into the first corpus directory:
# give it a fresh one in the build dir so the committed seeds stay untouched
# and every run starts from the same state.
rm -rf "$OUT/corpus"
mkdir -p "$OUT/corpus"

RUNS="${FUZZ_RUNS:-200000}"
echo "fuzz: running $RUNS inputs"
start=$(date +%s)
"$OUT/frame_fuzz" -runs="$RUNS" -max_len=4096 -seed=1 -print_final_stats=1 \
  -artifact_prefix="$OUT/" "$OUT/corpus" "$ROOT/tests/fuzz/corpus"
echo "fuzz: passed in $(($(date +%s) - start)) s"
