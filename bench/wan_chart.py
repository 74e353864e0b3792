#!/usr/bin/env python3
"""Charts of the wide-area scenarios: one group of bars per scenario (W0,
W1, W3, W5), the median goodput of each tool that ran in it, beside the
link's rate, from the JSON files bench/wan.py writes. W6 (a link that
changes) has its own chart over time, from bench/wan_adapt.py.

  bench/wan_chart.py bench/results/wan-chunks.json bench/results/wan-w3.json \
      --svg bench/results/wan.svg

A scenario found in several files is drawn from the last one given. Needs
gnuplot; no root, no lab.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# The link rate of each scenario (Mbit/s; W3 is two links of 500).
LINK_MBIT = {"W0": 2000, "W1": 1000, "W3": 1000, "W5": 1000}


def medians(path: str) -> dict[str, dict[str, float]]:
    """{scenario: {tool: median Mbit/s}} of one wan.py result file."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for name, res in data.items():
        row = {k: statistics.median(v) for k, v in res["iperf3"].items()}
        for tool, runs in res["xfer"].items():
            if runs and all(r["ok"] for r in runs):
                row[tool] = statistics.median(r["mbit"] for r in runs)
        out[name] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="JSON files written by bench/wan.py")
    ap.add_argument("--svg", default=os.path.join(HERE, "results", "wan.svg"))
    args = ap.parse_args()
    scenarios: dict[str, dict[str, float]] = {}
    for path in args.results:
        scenarios.update(medians(path))
    if not scenarios:
        print("wan_chart.py: no scenarios in the files given", file=sys.stderr)
        return 2
    names = sorted(scenarios)
    tools: list[str] = []
    for n in names:
        tools += [t for t in scenarios[n] if t not in tools]
    tools = ["link"] + tools
    with tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False) as dat:
        dat.write("scenario " + " ".join(f'"{t}"' for t in tools) + "\n")
        for n in names:
            row = [str(LINK_MBIT.get(n, 0))] + [f"{scenarios[n].get(t, 0):.0f}" for t in tools[1:]]
            dat.write(f"{n} " + " ".join(row) + "\n")
    script = f"""set terminal svg size 1000,460 dynamic background rgb 'white'
set output '{args.svg}'
set title 'Wide-area scenarios on the lab: median goodput (bench/RESULTS.md)'
set ylabel 'Mbit/s'
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key outside right top
set yrange [0:*]
set grid ytics
set linetype 1 lc rgb '#555555'
set linetype 9 lc rgb '#cc6677'
set linetype 10 lc rgb '#88ccee'
plot for [i=2:{len(tools) + 1}] '{dat.name}' using i:xtic(1) title columnheader(i)
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True)
    finally:
        os.unlink(dat.name)
    print(f"wrote {args.svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
