#!/usr/bin/env python3
"""Bandwidth limits: how close each tool's rate comes to --bwlimit, and how
right xfer's ETA is.

The functional test (FirstHour.RateUnderABandwidthLimit...) only asserts
what load cannot break: no progress event above the limit, resumed bytes
never counted as rate. How *close* the rate comes to the limit, and how
good the ETA is, are measurements, so they live here, side by side with
rsync --bwlimit and rclone --bwlimit on the same file, alternated
(A B C A B C), medians of --runs.

For each limit L (MiB/s) the file is L x --seconds MiB, so every run lasts
about --seconds. Per run: wall time, achieved rate = size / wall time, and
its ratio to L (1.00 is exact; a tool that idles at start or overshoots
shows here); peak RSS (GNU time). For xfer, from its --json progress
events: the error of each ETA (elapsed + eta_s - the run's actual end), as
the median and worst absolute error over the events after the first
second, and the largest rate_bps an event reported, over L.

  bench/limiter.py --runs 3 --limits 8,32,128 --seconds 6
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1 << 20


def tool_command(tool: str, xfer: str, limit_mib: int, src: str, dst: str) -> list[str]:
    if tool == "xfer":
        return [xfer, "cp", "--json", "--bwlimit", f"{limit_mib}M", src, dst]
    if tool == "rsync":
        # rsync reads --bwlimit in KiB/s (1024 bytes).
        return ["rsync", "--whole-file", f"--bwlimit={limit_mib * 1024}", src, dst]
    if tool == "rclone":
        return ["rclone", "--config", "/dev/null", "copyto", "--bwlimit", f"{limit_mib}M", src, dst]
    raise ValueError(tool)


def eta_errors(out: str, end_s: float) -> tuple[list[float], float]:
    """Absolute ETA errors (s) of the progress events after the first second,
    and the largest rate_bps any event reported."""
    errors: list[float] = []
    top_rate = 0.0
    for line in out.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") != "progress":
            continue
        top_rate = max(top_rate, float(e.get("rate_bps", 0)))
        eta = float(e.get("eta_s", -1))
        t = float(e.get("elapsed_s", 0))
        if eta >= 0 and t >= 1.0:
            errors.append(abs(t + eta - end_s))
    return errors, top_rate


def run_once(tool: str, xfer: str, limit_mib: int, src: str, work: str, state: str) -> dict:
    dst = os.path.join(work, f"dst-{tool}.bin")
    if os.path.exists(dst):
        os.unlink(dst)
    shutil.rmtree(state, ignore_errors=True)
    os.makedirs(state)
    env = dict(os.environ, XFER_STATE_DIR=state, XFER_CONFIG=os.path.join(work, "none.toml"))
    cmd = ["/usr/bin/time", "-f", "%M"] + tool_command(tool, xfer, limit_mib, src, dst)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{tool} failed ({p.returncode}): {p.stderr[-2000:]}")
    size = os.path.getsize(src)
    if os.path.getsize(dst) != size:
        raise SystemExit(f"{tool}: {dst} has the wrong size")
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    row = {"tool": tool, "limit_mib": limit_mib, "seconds": wall,
           "rate_mib": size / MIB / wall, "ratio": size / MIB / wall / limit_mib, "rss_kib": rss_kib}
    if tool == "xfer":
        summary = next((json.loads(x) for x in p.stdout.splitlines() if '"event":"summary"' in x), {})
        end = float(summary.get("seconds", wall))
        errs, top = eta_errors(p.stdout, end)
        row["eta_err_median_s"] = statistics.median(errs) if errs else None
        row["eta_err_max_s"] = max(errs) if errs else None
        row["eta_events"] = len(errs)
        row["top_event_rate_ratio"] = top / (limit_mib * MIB) if top else None
    os.unlink(dst)
    return row


def median_of(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limits", default="8,32,128", help="MiB/s, comma list")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each run at its limit")
    ap.add_argument("--tools", default="xfer,rsync,rclone")
    ap.add_argument("--xfer", default=os.path.join(ROOT, "build", "apps", "xfer", "xfer"))
    ap.add_argument("--work", default="/var/tmp/xfer-bench-limiter")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "limiter.json"))
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t != "xfer" and shutil.which(t) is None:
            raise SystemExit(f"{t} is not installed")
    os.makedirs(args.work, exist_ok=True)
    state = os.path.join(args.work, "state")
    rows: list[dict] = []
    try:
        for limit in [int(x) for x in args.limits.split(",")]:
            size = int(limit * args.seconds) * MIB
            src = os.path.join(args.work, f"src-{limit}.bin")
            with open("/dev/urandom", "rb") as r, open(src, "wb") as w:
                left = size
                while left:
                    n = min(left, 8 * MIB)
                    w.write(r.read(n))
                    left -= n
            for run in range(args.runs):
                for tool in tools:  # A B C A B C
                    row = run_once(tool, args.xfer, limit, src, args.work, state)
                    row["run"] = run
                    rows.append(row)
                    print(f"{limit:>4} MiB/s {tool:6} run {run}: {row['seconds']:.2f} s, "
                          f"{row['rate_mib']:.2f} MiB/s ({row['ratio']:.3f} of the limit)", file=sys.stderr)
            os.unlink(src)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"rows": rows, "args": vars(args), "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
                  f, indent=1)
    print("| limit | tool | median s | median MiB/s | rate / limit (min-max) | peak RSS | ETA error median / worst | top event rate / limit |")
    print("|---|---|---|---|---|---|---|---|")
    for limit in sorted({r["limit_mib"] for r in rows}):
        for tool in tools:
            rs = [r for r in rows if r["limit_mib"] == limit and r["tool"] == tool]
            ratios = [r["ratio"] for r in rs]
            eta = "—"
            top = "—"
            if tool == "xfer":
                m, w = median_of(rs, "eta_err_median_s"), median_of(rs, "eta_err_max_s")
                if m is not None:
                    eta = f"{m:.2f} s / {max(r['eta_err_max_s'] for r in rs if r['eta_err_max_s'] is not None):.2f} s"
                t = [r["top_event_rate_ratio"] for r in rs if r.get("top_event_rate_ratio")]
                if t:
                    top = f"{max(t):.3f}"
            print(f"| {limit} MiB/s | {tool} | {median_of(rs, 'seconds'):.2f} | {median_of(rs, 'rate_mib'):.2f} | "
                  f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) | "
                  f"{median_of(rs, 'rss_kib') / 1024:.1f} MiB | {eta} | {top} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
