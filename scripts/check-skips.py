#!/usr/bin/env python3
"""Refuses silent skips: reads CTest's JUnit report and fails when a test was
skipped (GTEST_SKIP, ctest's SKIP_REGULAR_EXPRESSION, "not run", disabled)
unless the allow-list names it, with its reason.

usage: check-skips.py JUNIT_XML ALLOWLIST

The allow-list has one entry per line: a test name or an fnmatch pattern,
then "#" and the reason (required). Blank lines and lines starting with "#"
are comments. Exit 0 when every skip is allowed, 1 when one is not (each
named on stderr), 2 on a bad report or list.
"""
import fnmatch
import sys
import xml.etree.ElementTree as ET

SKIPPED = {"skipped", "notrun", "disabled"}


def read_allowlist(path):
    entries = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            pattern, sep, reason = line.partition("#")
            if not sep or not reason.strip() or not pattern.strip():
                sys.exit(f"{path}:{number}: an entry is 'NAME  # reason': {line!r}")
            entries.append((pattern.strip(), reason.strip()))
    return entries


def skipped_tests(path):
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        print(f"check-skips: cannot read {path}: {e}", file=sys.stderr)
        sys.exit(2)
    names = []
    for case in root.iter("testcase"):
        status = case.get("status", "")
        if status in SKIPPED or case.find("skipped") is not None:
            names.append(case.get("name", "?"))
    return names, sum(1 for _ in root.iter("testcase"))


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    allow = read_allowlist(argv[2])
    names, total = skipped_tests(argv[1])
    if total == 0:
        print(f"check-skips: {argv[1]} holds no test at all", file=sys.stderr)
        return 2
    refused = []
    for name in names:
        reason = next((r for p, r in allow if fnmatch.fnmatchcase(name, p)), None)
        if reason is None:
            refused.append(name)
        else:
            print(f"check-skips: {name} skipped (allowed: {reason})")
    for name in refused:
        print(f"check-skips: {name} was skipped and is not on the allow-list "
              f"({argv[2]}): a skipped test tests nothing; fix its cause, or list it "
              f"with the reason", file=sys.stderr)
    print(f"check-skips: {total} tests, {len(names)} skipped, {len(refused)} refused")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
