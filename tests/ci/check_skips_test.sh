#!/usr/bin/env bash
# scripts/check-skips.py on small CTest JUnit reports: an unlisted skip is
# refused (exit 1, named), a listed one passes with its reason, a "not run"
# counts as a skip, an entry without a reason and an empty report are
# errors, and the project's own allow-list parses.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
check="$here/scripts/check-skips.py"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cat > "$work/report.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="(empty)" tests="3">
  <testcase name="Move.TreeAcrossDevices" status="run"/>
  <testcase name="Transfer.DiskFullLeavesNoFile" status="skipped"><skipped/></testcase>
  <testcase name="Packaging.ZshScriptLoads" status="notrun"/>
</testsuite>
XML
printf '# comment\n\nPackaging.Zsh*  # zsh is optional\n' > "$work/allow-one.txt"
printf 'Transfer.DiskFull*  # tmpfs\nPackaging.ZshScriptLoads # zsh\n' > "$work/allow-both.txt"
printf 'Transfer.DiskFullLeavesNoFile\n' > "$work/no-reason.txt"

out=$(python3 "$check" "$work/report.xml" "$work/allow-one.txt" 2>&1)
[ $? -eq 1 ] || fail "an unlisted skip must exit 1: $out"
grep -q 'Transfer.DiskFullLeavesNoFile was skipped and is not on the allow-list' <<<"$out" ||
  fail "the refused test must be named: $out"
grep -q 'Packaging.ZshScriptLoads skipped (allowed: zsh is optional)' <<<"$out" ||
  fail "an allowed skip is reported with its reason: $out"

out=$(python3 "$check" "$work/report.xml" "$work/allow-both.txt" 2>&1)
[ $? -eq 0 ] || fail "listed skips pass: $out"
grep -q '3 tests, 2 skipped, 0 refused' <<<"$out" || fail "counts: $out"

out=$(python3 "$check" "$work/report.xml" "$work/no-reason.txt" 2>&1)
[ $? -ne 0 ] || fail "an entry without a reason is refused: $out"

echo '<testsuite/>' > "$work/empty.xml"
out=$(python3 "$check" "$work/empty.xml" "$work/allow-both.txt" 2>&1)
[ $? -eq 2 ] || fail "an empty report is an error: $out"

out=$(python3 "$check" "$work/report.xml" "$here/tests/skip-allowlist.txt" 2>&1)
[ $? -eq 1 ] || fail "the project's list allows neither: $out"
echo "ok"
