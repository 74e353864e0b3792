#!/usr/bin/env python3
"""W6, a changing link, on the network lab: does xfer follow the link?

One lab (a: client, b: xferd) with one 1 Gbit/s, 40 ms RTT link. An xfer
upload of one large file runs with --json (a progress line every second,
the controller's decisions in the summary) while the link drops to
200 Mbit/s at --drop-at seconds and returns to 1 Gbit/s at --rise-at. The
script reports, from the progress lines, how long xfer took after each
change to settle (rate within 20% of its level before the drop, or at or
below 1.2 x the narrowed link), and draws rate and stream count over time
with gnuplot (SVG). Run A B A B against --streams 4 (fixed) when
--compare-fixed is given.

  sudo bench/wan_adapt.py --runs 2 --compare-fixed
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from wan import HERE, Lab, Server, add_lab_args, prepare, sh

LINK = 'rate = "1gbit"\ndelay = "20ms"\n'


def run_once(lab: Lab, xfer: str, srv: Server, src: str, flags: list[str], drop_at: float,
             rise_at: float) -> dict:
    dst = os.path.join(srv.root, "dst.bin")
    if os.path.exists(dst):
        os.unlink(dst)
    sh([lab.netlab, "set", "--lab", lab.name, "ab", "rate=1gbit"])
    changes = []

    def changer() -> None:
        t0 = time.monotonic()
        for at, rate in ((drop_at, "200mbit"), (rise_at, "1gbit")):
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            sh([lab.netlab, "set", "--lab", lab.name, "ab", f"rate={rate}"])
            changes.append((time.monotonic() - t0, rate))

    proc = subprocess.Popen(lab.cmd("a", [xfer, "--token", srv.token] + flags +
                                    ["cp", "--json", src, srv.url + "/dst.bin"]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = threading.Thread(target=changer)
    t.start()
    out, err = proc.communicate(timeout=1800)
    t.join()
    samples, summary = [], {}
    for line in out.splitlines():
        try:
            j = json.loads(line)
        except json.JSONDecodeError:
            continue
        if j.get("event") == "progress":
            samples.append((j["elapsed_s"], j.get("bytes", j.get("bytes_done"))))
        elif j.get("event") == "summary":
            summary = j
    # Rate per second from the byte counts (Mbit/s at the end of each second).
    rates = [(t1, (b1 - b0) * 8 / (t1 - t0) / 1e6)
             for (t0, b0), (t1, b1) in zip(samples, samples[1:]) if t1 > t0]
    ok = proc.returncode == 0 and sh(["cmp", "-s", src, dst], check=False).returncode == 0
    return {"ok": ok, "rates": rates, "changes": changes,
            "controller": [e for e in summary.get("controller", []) if "streams" in e],
            "seconds": summary.get("seconds", 0),
            "limited_by": summary.get("limited_by", ""), "stderr": err[-500:]}


def settle_times(run: dict, drop_at: float, rise_at: float) -> tuple[float, float]:
    """Seconds after the drop until the rate is at most 1.2 x 200 Mbit/s, and
    after the rise until it is back within 20% of its level before the drop
    (the median of the seconds before it); -1 when it never got there."""
    rates = run["rates"]
    before = [r for t, r in rates if 2 <= t <= drop_at]
    level = statistics.median(before) if before else 0
    down = next((t - drop_at for t, r in rates if t > drop_at and r <= 240), -1)
    up = next((t - rise_at for t, r in rates if t > rise_at and r >= 0.8 * level), -1)
    return down, up


def chart(runs: dict, path: str, drop_at: float, rise_at: float) -> None:
    data = os.path.splitext(path)[0]
    plots, stream_plots = [], []
    for label, run in runs.items():
        name = label.replace(" ", "-")
        with open(f"{data}-{name}.rate", "w") as f:
            for t, r in run["rates"]:
                f.write(f"{t:.2f} {r:.1f}\n")
        with open(f"{data}-{name}.streams", "w") as f:
            last = None
            for e in run["controller"]:
                if last is not None:
                    f.write(f"{e['t']:.2f} {last}\n")
                f.write(f"{e['t']:.2f} {e['streams']}\n")
                last = e["streams"]
            if last is not None and run["rates"]:
                f.write(f"{run['rates'][-1][0]:.2f} {last}\n")
        plots.append(f"'{data}-{name}.rate' using 1:2 with lines lw 2 title '{label} rate (Mbit/s)'")
        if run["controller"]:
            stream_plots.append(f"'{data}-{name}.streams' using 1:2 axes x1y2 with lines dt 2 "
                                f"title '{label} streams'")
    script = f"""set terminal svg size 900,420 dynamic background rgb 'white'
set output '{path}'
set title 'W6: 1 Gbit/s -> 200 Mbit/s at {drop_at:.0f} s -> 1 Gbit/s at {rise_at:.0f} s, 40 ms RTT'
set xlabel 'seconds'
set ylabel 'Mbit/s'
set y2label 'data connections'
set ytics nomirror
set y2tics
set yrange [0:1100]
set y2range [0:20]
set arrow from {drop_at},0 to {drop_at},1100 nohead dt 3
set arrow from {rise_at},0 to {rise_at},1100 nohead dt 3
set key bottom right
plot {', '.join(plots + stream_plots)}
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--drop-at", type=float, default=10)
    ap.add_argument("--rise-at", type=float, default=20)
    ap.add_argument("--compare-fixed", action="store_true", help="also run --streams 4, A B A B")
    add_lab_args(ap)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "wan-w6.json"))
    ap.add_argument("--svg", default=os.path.join(HERE, "results", "w6.svg"))
    args = ap.parse_args()
    src = prepare(args, "wan_adapt.py")
    if src is None:
        return 2
    variants = [("auto", [])] + ([("fixed 4", ["--streams", "4"])] if args.compare_fixed else [])
    lab = Lab(args.netlab, "wanw6", LINK, args.workdir)
    srv = None
    results = {name: [] for name, _ in variants}
    try:
        srv = Server(lab, args.xferd, 7400, args.workdir)
        for r in range(args.runs):
            for name, flags in variants:  # A B A B
                one = run_once(lab, args.xfer, srv, src, flags, args.drop_at, args.rise_at)
                down, up = settle_times(one, args.drop_at, args.rise_at)
                one["settle_down_s"], one["settle_up_s"] = down, up
                results[name].append(one)
                most = max((e["streams"] for e in one["controller"]), default=0)
                print(f"  run {r + 1} {name}: {'ok' if one['ok'] else 'FAILED ' + one['stderr']} "
                      f"in {one['seconds']:.1f} s; after the drop {down:.1f} s, after the rise "
                      f"{up:.1f} s; streams up to {most}; limited by {one['limited_by']}", flush=True)
    finally:
        if srv:
            srv.stop()
        lab.down()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    chart({name: runs[-1] for name, runs in results.items()}, args.svg, args.drop_at, args.rise_at)
    print("\n| W6 | runs | seconds (median) | settled after the drop (s) | after the rise (s) |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        med = lambda k: statistics.median(r[k] for r in runs)
        print(f"| {name} | {len(runs)} | {med('seconds'):.1f} | {med('settle_down_s'):.1f} | "
              f"{med('settle_up_s'):.1f} |")
    print(f"\nchart: {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
