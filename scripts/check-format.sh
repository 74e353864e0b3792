#!/usr/bin/env bash
# Fails (and lists the files) when a C++ source is not clang-formatted.
set -euo pipefail
cd "$(dirname "$0")/.."
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
bad=0
while IFS= read -r -d '' f; do
  if ! "$CLANG_FORMAT" --dry-run -Werror "$f" > /dev/null 2>&1; then
    echo "not clang-formatted: $f"
    bad=1
  fi
done < <(find include src apps tests tools \( -name '*.cpp' -o -name '*.hpp' \) -print0 | sort -z)
[ "$bad" -eq 0 ] && echo "all C++ files are clang-formatted"
exit "$bad"
