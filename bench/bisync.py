#!/usr/bin/env python3
"""Bidirectional sync (issue 14, scenario Y6): two folders of --files small
files, 1% changed on each side between runs.

Each tool keeps its own pair of folders, both copies of one tree (cp -a),
and its own state, made by a first run (timed too, as "first"):

  xfer     xfer sync --bidirectional A B                   (local)
  xfer://  xfer sync --bidirectional A xfer://127.0.0.1:P/B (B on a local xferd)
  unison   unison A B -batch -times                         (Debian's unison)
  rclone   rclone bisync A B (first: --resync)              (Debian's rclone)

Then --runs rounds: the same 1% of the files rewritten on side A (same
size, new bytes, new mtime) and another 1% on side B, in every tool's pair;
every tool syncs (the order alternates, A B C D then D C B A); medians and
peak RSS (GNU time, the client process only). After the last round each
tool's A and B are checked against each other and against the other
tools' (names, sizes, the bytes of every changed file): the same end state,
and no conflict copies (no file was changed on both sides). The xferd runs
with its own config and ports on loopback and is stopped by PID.

  bench/bisync.py --files 100000 --runs 3
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from benchlib.harness import ensure_small_dataset  # noqa: E402
from sync import Xferd, change_files, run  # noqa: E402


def sides(tool: str, args, work: str, xferd: Xferd | None) -> tuple[str, str, str]:
    """(A's path, B's path on disk, B as the tool names it)."""
    # One pair per tool: "xfer://" must not share "xfer"'s A.
    name = {"xfer://": "xfer-net"}.get(tool, tool)
    a = os.path.join(work, f"{name}-a")
    if tool == "xfer://":
        b = os.path.join(xferd.root, "b")
        return a, b, xferd.url("/b")
    b = os.path.join(work, f"{name}-b")
    return a, b, b


def command(tool: str, args, a: str, b: str, first: bool, work: str, xferd: Xferd | None) -> list[str]:
    if tool == "xfer":
        return [args.xfer, "sync", "--bidirectional", "--no-progress", "--json", a, b]
    if tool == "xfer://":
        return [args.xfer, "--token", xferd.token, "sync", "--bidirectional", "--no-progress", "--json", a, b]
    if tool == "unison":
        return ["unison", a, b, "-batch", "-times", "-silent", "-confirmbigdel=false"]
    if tool == "rclone":
        cmd = ["rclone", "bisync", a, b, "--workdir", os.path.join(work, "rclone-bisync"),
               "--config", os.path.join(work, "rclone.conf"), "-q"]
        return cmd + (["--resync"] if first else [])
    raise ValueError(tool)


def listing(root: str) -> list[tuple[str, int]]:
    out = []
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out.append((os.path.relpath(p, root), os.path.getsize(p)))
    return sorted(out)


def read(p: str) -> bytes:
    with open(p, "rb") as f:
        return f.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--file-size", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--changed", type=float, default=0.01, help="share of the files changed on each side")
    ap.add_argument("--tools", default="xfer,xfer://,unison,rclone")
    ap.add_argument("--xfer", default=os.path.join(ROOT, "build", "apps", "xfer", "xfer"))
    ap.add_argument("--xferd", default=os.path.join(ROOT, "build", "apps", "xferd", "xferd"))
    ap.add_argument("--work", default="/var/tmp/xfer-bench-bisync")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "bisync.json"))
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    if "unison" in tools and shutil.which("unison") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "unison"], check=True, stdout=subprocess.DEVNULL)
    if "rclone" in tools and shutil.which("rclone") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "rclone"], check=True, stdout=subprocess.DEVNULL)
    os.makedirs(args.work, exist_ok=True)
    pristine = ensure_small_dataset(args.work, args.files, args.file_size)
    for state in ("xfer-state", "unison-home", "rclone-bisync"):
        shutil.rmtree(os.path.join(args.work, state), ignore_errors=True)
    os.makedirs(os.path.join(args.work, "unison-home"))
    open(os.path.join(args.work, "rclone.conf"), "w").close()
    env = dict(os.environ, XFER_STATE_DIR=os.path.join(args.work, "xfer-state"),
               XFER_CONFIG=os.path.join(args.work, "none.toml"),
               XFER_CREDENTIALS=os.path.join(args.work, "none-credentials.toml"),
               UNISON=os.path.join(args.work, "unison-home"))
    xferd = Xferd(args.xferd, args.work) if "xfer://" in tools else None
    pairs = {t: sides(t, args, args.work, xferd) for t in tools}
    all_files = sorted(os.path.relpath(os.path.join(d, f), pristine)
                       for d, _, fs in os.walk(pristine) for f in fs)
    rows: list[dict] = []
    changed_a: list[str] = []
    changed_b: list[str] = []
    try:
        for t in tools:
            a, b, _ = pairs[t]
            for p in (a, b):
                shutil.rmtree(p, ignore_errors=True)
                subprocess.run(["cp", "-a", pristine, p], check=True)
        print(f"{len(tools) * 2} copies of {len(all_files)} files made", file=sys.stderr)
        for t in tools:
            a, _, b_named = pairs[t]
            row = run(t, command(t, args, a, b_named, True, args.work, xferd), env)
            row.update(scenario="first", run=0)
            rows.append(row)
            print(f"first  {t:8} {row['seconds']:7.2f} s  {row['rss_kib'] / 1024:6.1f} MiB", file=sys.stderr)
        n = max(1, int(len(all_files) * args.changed))
        for r in range(args.runs):
            picked = random.Random(100 + r).sample(all_files, 2 * n)
            on_a, on_b = picked[:n], picked[n:]
            for t in tools:
                a, b, _ = pairs[t]
                change_files(a, on_a, 2 * r + 1)
                change_files(b, on_b, 2 * r + 2)
            changed_a += on_a
            changed_b += on_b
            order = tools if r % 2 == 0 else list(reversed(tools))
            for t in order:
                a, _, b_named = pairs[t]
                row = run(t, command(t, args, a, b_named, False, args.work, xferd), env)
                row.update(scenario="Y6", run=r)
                rows.append(row)
                print(f"Y6 r{r} {t:8} {row['seconds']:7.2f} s  {row['rss_kib'] / 1024:6.1f} MiB  "
                      f"{row.get('to_a', '')} {row.get('to_b', '')}", file=sys.stderr)
        # The same end state: A = B for each tool, and every tool's A alike.
        reference = None
        for t in tools:
            a, b, _ = pairs[t]
            la, lb = listing(a), listing(b)
            if la != lb:
                raise SystemExit(f"{t}: A and B differ after the last run")
            if len(la) != len(all_files):
                raise SystemExit(f"{t}: {len(la)} files, not {len(all_files)} (conflict copies?)")
            changed = sorted(set(changed_a + changed_b))
            contents = [read(os.path.join(a, rel)) for rel in changed]
            if contents != [read(os.path.join(b, rel)) for rel in changed]:
                raise SystemExit(f"{t}: a changed file differs between A and B")
            if reference is None:
                reference = (t, contents)
            elif contents != reference[1]:
                raise SystemExit(f"{t} ends with other bytes than {reference[0]}")
        print("end state: the same for every tool, A = B", file=sys.stderr)
    finally:
        if xferd:
            xferd.stop()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"rows": rows, "args": vars(args),
                   "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}, f, indent=1)
    print(f"| scenario ({args.files:,} files, {args.changed:.0%} changed on each side) | tool | median s | min-max s | peak RSS | faster peer / xfer |")
    print("|---|---|---|---|---|---|")
    for scenario in ("first", "Y6"):
        med = {}
        for t in tools:
            xs = [x for x in rows if x["tool"] == t and x["scenario"] == scenario]
            secs = [x["seconds"] for x in xs]
            med[t] = (statistics.median(secs), min(secs), max(secs), statistics.median([x["rss_kib"] for x in xs]))
        peers = [med[t][0] for t in tools if t in ("unison", "rclone")]
        for t in tools:
            m, lo, hi, rss = med[t]
            ratio = f"{min(peers) / m:.2f}x" if peers and t.startswith("xfer") else ""
            print(f"| {scenario} | {t} | {m:.2f} | {lo:.2f}-{hi:.2f} | {rss / 1024:.0f} MiB | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
