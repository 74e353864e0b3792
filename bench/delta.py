#!/usr/bin/env python3
"""Y3 (issue 14): sync's delta over the network lab, side by side with rsync.

A 1 GiB file already at the destination (host b) changes at the source
(host a): 1 MiB rewritten in the middle ("mid"), or one byte inserted at
its start ("insert"). Each run puts the old version back at the
destination, then syncs the new one with `xfer sync` to xferd in b and
with `rsync -a` over ssh to sshd in b (rsync's delta algorithm; -W is off
between hosts), alternating (A B A B). It reports the median seconds and
the bytes that crossed the link both ways (host a's interface counters:
control, data and TCP/IP overhead alike), as a share of the file. The
whole file would take 86 s at 100 Mbit/s.

Needs root, the lab's tools (scripts/setup.sh), sshd and a build.

  sudo bench/delta.py --runs 3
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
sys.path.insert(0, HERE)
import wan  # noqa: E402  (the lab, xferd and sshd helpers)

LINK = 'rate = "100mbit"\ndelay = "10ms"\n'  # 100 Mbit/s, 20 ms RTT


def link_bytes(lab: wan.Lab) -> int:
    """Bytes received plus sent on host a's lab interfaces so far."""
    out = wan.sh(lab.cmd("a", ["cat", "/proc/net/dev"])).stdout
    total = 0
    for line in out.splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            continue
        f = rest.split()
        total += int(f[0]) + int(f[8])
    return total


def make_versions(workdir: str, base: str) -> dict[str, str]:
    """The changed versions of `base`, each alone in a folder of its own
    (the sync source), named y3.bin, with an mtime other than the base's."""
    out = {}
    size = os.path.getsize(base)
    for case in ("mid", "insert"):
        d = os.path.join(workdir, f"y3-{case}")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "y3.bin")
        if not os.path.exists(path):
            with open(base, "rb") as src, open(path + ".tmp", "wb") as dst:
                if case == "insert":
                    dst.write(b"!")
                shutil.copyfileobj(src, dst, 8 << 20)
            if case == "mid":
                with open(path + ".tmp", "r+b") as f:
                    f.seek(size // 2)
                    f.write(os.urandom(1 << 20))
            os.rename(path + ".tmp", path)
        os.utime(path, (1_700_000_100, 1_700_000_100))
        out[case] = d
    return out


def reset_destination(base: str, dst_dir: str) -> None:
    """The old version, as both tools find it before a run."""
    os.makedirs(dst_dir, exist_ok=True)
    dst = os.path.join(dst_dir, "y3.bin")
    shutil.copyfile(base, dst)
    os.utime(dst, (1_700_000_000, 1_700_000_000))
    wan.sh(["sync"])  # its dirty pages written before the timed run


def timed(lab: wan.Lab, argv: list[str], src: str, dst: str) -> dict:
    b0, t0 = link_bytes(lab), time.monotonic()
    r = wan.sh(lab.cmd("a", argv), timeout=3600, check=False)
    secs = time.monotonic() - t0
    moved = link_bytes(lab) - b0
    ok = r.returncode == 0 and wan.sh(["cmp", "-s", src, dst], check=False).returncode == 0
    return {"ok": ok, "seconds": secs, "link_bytes": moved, "stderr": r.stderr[-800:],
            "stdout": r.stdout[-2000:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    wan.add_lab_args(ap)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "delta.json"))
    args = ap.parse_args()
    base = wan.prepare(args, "delta.py")
    if base is None:
        return 2
    versions = make_versions(args.workdir, base)
    size = os.path.getsize(base)
    lab = wan.Lab(args.netlab, "delta", LINK, args.workdir)
    srv = sshd = None
    results: dict = {}
    try:
        srv = wan.Server(lab, args.xferd, 7450, args.workdir)
        sshd = wan.Sshd(lab, args.workdir)
        ssh = " ".join(["ssh", "-p", str(sshd.port)] + sshd.ssh_args())
        for case, src_dir in versions.items():
            src = os.path.join(src_dir, "y3.bin")
            runs: dict[str, list] = {"xfer": [], "rsync": []}
            for r in range(args.runs):
                for tool in ("xfer", "rsync"):  # A B A B
                    dst_dir = os.path.join(srv.root, f"y3-{tool}")
                    reset_destination(base, dst_dir)
                    if tool == "xfer":
                        argv = [args.xfer, "--token", srv.token, "sync", "--json", src_dir + "/",
                                f"{srv.url}/y3-{tool}/"]
                    else:
                        argv = ["rsync", "-a", "--stats", "-e", ssh, src_dir + "/",
                                f"root@10.99.0.2:{dst_dir}/"]
                    one = timed(lab, argv, src, os.path.join(dst_dir, "y3.bin"))
                    runs[tool].append(one)
                    print(f"  {case} run {r + 1} {tool}: {one['seconds']:.2f} s, "
                          f"{one['link_bytes'] / 1e6:.2f} MB on the link "
                          f"({one['link_bytes'] / size:.2%}), {'ok' if one['ok'] else 'FAILED ' + one['stderr']}",
                          flush=True)
            results[case] = runs
    finally:
        if srv:
            srv.stop()
        if sshd:
            sshd.stop()
        lab.down()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print("\n| Y3 change (1 GiB, 100 Mbit/s, 20 ms) | xfer s | rsync s | xfer / rsync speed | "
          "xfer on the link | rsync on the link |")
    print("|---|---|---|---|---|---|")
    for case, runs in results.items():
        med = {t: statistics.median(x["seconds"] for x in v) for t, v in runs.items()}
        byt = {t: statistics.median(x["link_bytes"] for x in v) for t, v in runs.items()}
        bad = {t: "" if all(x["ok"] for x in v) else " (FAILED)" for t, v in runs.items()}
        print(f"| {case} | {med['xfer']:.2f}{bad['xfer']} | {med['rsync']:.2f}{bad['rsync']} | "
              f"{med['rsync'] / med['xfer']:.2f}x | {byt['xfer'] / 1e6:.2f} MB ({byt['xfer'] / size:.2%}) | "
              f"{byt['rsync'] / 1e6:.2f} MB ({byt['rsync'] / size:.2%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
