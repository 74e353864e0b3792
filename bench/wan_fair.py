#!/usr/bin/env python3
"""Sharing a bottleneck: xfer against one iperf3 CUBIC flow on the lab.

One lab (a: client, b: server) with a 500 Mbit/s, 40 ms RTT link. An
iperf3 CUBIC flow runs for --seconds; --start-after seconds in, an xfer
upload starts beside it. Over the seconds both ran, the script takes each
one's rate (iperf3's intervals, xfer's progress lines) and Jain's fairness
index (x1 + x2)^2 / (2 (x1^2 + x2^2)): 1 is an even split, 0.5 one side
taking everything. Each xfer variant runs in turn (A B A B).

  sudo bench/wan_fair.py --runs 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import wan
from wan import HERE, Lab, Server, add_lab_args, prepare, sh

LINK = 'rate = "500mbit"\ndelay = "20ms"\n'
VARIANTS = [("xfer default", []), ("xfer --streams 1 --cc cubic", ["--streams", "1", "--cc", "cubic"])]


def jain(a: float, b: float) -> float:
    return (a + b) ** 2 / (2 * (a * a + b * b)) if a + b > 0 else 0


def run_once(lab: Lab, xfer: str, srv: Server, src: str, flags: list[str], seconds: int,
             start_after: float) -> dict:
    dst = os.path.join(srv.root, "dst.bin")
    if os.path.exists(dst):
        os.unlink(dst)
    wan._iperf_port += 1
    port = str(wan._iperf_port)
    sh(lab.cmd("b", ["iperf3", "-s", "-1", "-D", "-B", "10.99.0.2", "-p", port]))
    time.sleep(0.3)
    t0 = time.monotonic()
    iperf = subprocess.Popen(lab.cmd("a", ["iperf3", "-c", "10.99.0.2", "-p", port, "-C", "cubic",
                                           "-t", str(seconds), "-i", "1", "-J"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(start_after)
    x0 = time.monotonic() - t0
    xp = subprocess.Popen(lab.cmd("a", [xfer, "--token", srv.token] + flags +
                                  ["cp", "--json", src, srv.url + "/dst.bin"]),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    xout, _ = xp.communicate(timeout=900)
    iout, _ = iperf.communicate(timeout=900)
    # xfer's progress, on iperf3's clock.
    samples = []
    for line in xout.splitlines():
        try:
            j = json.loads(line)
        except json.JSONDecodeError:
            continue
        if j.get("event") == "progress":
            samples.append((x0 + j["elapsed_s"], j.get("bytes", j.get("bytes_done"))))
    ij = json.loads(iout)
    intervals = [(iv["sum"]["start"], iv["sum"]["end"], iv["sum"]["bits_per_second"] / 1e6)
                 for iv in ij["intervals"]]
    # The overlap, leaving each one's first two seconds out (slow start).
    lo = x0 + 2
    hi = min(samples[-1][0] if samples else 0, intervals[-1][1] if intervals else 0)
    ip = [r for s, e, r in intervals if s >= lo and e <= hi]
    inside = [(t, b) for t, b in samples if lo <= t <= hi]
    xr = ((inside[-1][1] - inside[0][1]) * 8 / (inside[-1][0] - inside[0][0]) / 1e6
          if len(inside) >= 2 and inside[-1][0] > inside[0][0] else 0)
    ir = statistics.mean(ip) if ip else 0
    ok = xp.returncode == 0 and sh(["cmp", "-s", src, dst], check=False).returncode == 0
    return {"ok": ok, "overlap_s": max(0, hi - lo), "xfer_mbit": xr, "iperf_mbit": ir,
            "jain": jain(xr, ir)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--seconds", type=int, default=25)
    ap.add_argument("--start-after", type=float, default=3)
    add_lab_args(ap)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "wan-fair.json"))
    args = ap.parse_args()
    src = prepare(args, "wan_fair.py")
    if src is None:
        return 2
    lab = Lab(args.netlab, "wanfair", LINK, args.workdir)
    srv = None
    results = {name: [] for name, _ in VARIANTS}
    try:
        srv = Server(lab, args.xferd, 7400, args.workdir)
        for r in range(args.runs):
            for name, flags in VARIANTS:
                one = run_once(lab, args.xfer, srv, src, flags, args.seconds, args.start_after)
                results[name].append(one)
                print(f"  run {r + 1} {name}: {'ok' if one['ok'] else 'FAILED'}; over {one['overlap_s']:.1f} s "
                      f"xfer {one['xfer_mbit']:.0f} Mbit/s, iperf3 CUBIC {one['iperf_mbit']:.0f}, "
                      f"Jain {one['jain']:.2f}", flush=True)
    finally:
        if srv:
            srv.stop()
        lab.down()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print("\n| 500 Mbit/s, 40 ms, beside one iperf3 CUBIC flow | xfer Mbit/s | CUBIC Mbit/s | xfer share | Jain |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        x = statistics.median(r["xfer_mbit"] for r in runs)
        c = statistics.median(r["iperf_mbit"] for r in runs)
        share = f"{x / (x + c):.0%}" if x + c > 0 else "no overlap"
        print(f"| {name} | {x:.0f} | {c:.0f} | {share} | "
              f"{statistics.median(r['jain'] for r in runs):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
