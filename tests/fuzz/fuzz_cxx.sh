#!/usr/bin/env bash
# Compiler and linker launcher of the server fuzz targets (CMakeLists.txt):
# CMake runs "fuzz_cxx.sh <clang command...> -- <project compiler> <args...>";
# the project's compiler is dropped and clang runs with the same arguments.
set -euo pipefail
cmd=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  cmd+=("$1")
  shift
done
if [ "$#" -lt 2 ]; then
  echo "fuzz_cxx.sh: usage: fuzz_cxx.sh CLANG... -- COMPILER ARGS..." >&2
  exit 2
fi
shift 2 # "--" and the project's compiler
exec "${cmd[@]}" "$@"
