#!/usr/bin/env python3
"""xfer benchmark harness (python3 stdlib only, Python >= 3.11).

Times `xfer cp` against peer tools (cp, rsync, rclone) on generated datasets,
cold cache, with a trailing sync inside the timed region. See bench/README.md.

Scenarios live in SCENARIOS (name -> ScenarioDef); each one builds a
ScenarioPlan (dataset, one command line per tool, output path, verifier) and
the generic runner does the timing, cache dropping, verification and
reporting. Network scenarios (net-*, xferd-mem: xfer against xferd vs scp,
sftp, rsync and tar over ssh, with an iperf3 ceiling) are registered with
local=False: both ends on this machine (loopback), memory to memory on
/dev/shm; the harness starts its own sshd / iperf3 / xferd for every run.

Layout: this file holds the command line, the scenario registry (SCENARIOS),
main() and the report (markdown, JSON, chart). benchlib/harness.py has the
shared parts (timing, datasets, verification, the runner); one module per
scenario group: benchlib/local.py, ckpt.py, net.py, mem.py.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

from benchlib import harness
from benchlib.ckpt import (CKPT_KEYS, ckpt_compare, scenario_ckpt_large, scenario_ckpt_small,
                           scenario_resume_large)
from benchlib.harness import (ALL_TOOLS, DEFAULT_NETDIR, DEFAULT_WORKDIR, DEFAULT_XFER, DEFAULT_XFERD, GNU_TIME,
                              HERE, CacheControl, Ctx, ScenarioDef, ScenarioPlan, _sigterm, human_bytes, log,
                              machine_info, parse_size, reset_xfer_state, rm_rf, run_fio, run_scenario,
                              scenario_entry, set_state_dir, summarize, wait_quiet)
from benchlib.local import SMALL_ROOTFS_PAUSE, scenario_large, scenario_small, scenario_small_rootfs
from benchlib.mem import scenario_xferd_mem
from benchlib.net import (NetEnv, _maybe_cipher, scenario_net_3p, scenario_net_large, scenario_net_large_enc,
                          scenario_net_small)


# name -> definition. default=False scenarios (and every local=False one: the
# network scenarios) only run when asked for with --scenario.
SCENARIOS: dict[str, ScenarioDef] = {
    "large": ScenarioDef(scenario_large, True, "one big random file, cold cache, sync included"),
    "small": ScenarioDef(scenario_small, True, "many 4 KiB files in 100-file folders, cold cache, sync included;"
                         " DST on a fresh journaled ext4 per run (--small-dest)"),
    "small-rootfs": ScenarioDef(scenario_small_rootfs, True, "as small, DST in the workdir on the root fs,"
                                f" {SMALL_ROOTFS_PAUSE:.0f} s pause after each delete (only when named)", default=False),
    "ckpt-large": ScenarioDef(scenario_ckpt_large, True, "as large, xfer vs xfer --no-checkpoint: cost of"
                              " checkpointing (only when named)", default=False),
    "ckpt-small": ScenarioDef(scenario_ckpt_small, True, "as small (fresh ext4), xfer vs xfer --no-checkpoint,"
                              " plus the journal figures of xfer's --json summary (only when named)", default=False),
    "resume-large": ScenarioDef(scenario_resume_large, True, "large with --no-zero-copy: full runs, and SIGKILL at"
                                " 50% (wchar) + resume: re-sent bytes, time to finish (only when named)",
                                default=False),
    # network (issue 3): loopback, memory to memory under --net-dir, fresh servers per run
    "net-large": ScenarioDef(scenario_net_large, False, "one --net-size file over loopback: iperf3 (ceiling), scp,"
                             " rsync-ssh, xfer --no-encrypt", default=False),
    "net-large-enc": ScenarioDef(scenario_net_large_enc, False, "as net-large, encrypted: scp, sftp, xfer --encrypt",
                                 default=False),
    "net-small": ScenarioDef(scenario_net_small, False, "--net-small-count files of 16 KiB over loopback: scp -r,"
                             " rsync-ssh, tar-ssh, xfer -r --no-encrypt", default=False),
    "net-3p": ScenarioDef(scenario_net_3p, False, "third party: one --net-size file from xferd A to xferd B, xfer vs"
                          " via-client (download + upload)", default=False),
    "xferd-mem": ScenarioDef(scenario_xferd_mem, False, "--mem-clients concurrent xfer uploads into one xferd:"
                             " xferd VmHWM and wall time", default=False),
}


# --------------------------------------------------------------------------
# report


def machine_markdown(m: dict) -> str:
    v = m.get("versions", {})
    lines = [
        f"- host: {m.get('hostname')}, {m.get('nproc')} CPUs ({m.get('cpu', '?')}), "
        f"memory {human_bytes(m.get('memory_bytes', 0))}",
        f"- kernel: {m.get('kernel')}",
        f"- workdir: {m.get('workdir')} on {m.get('workdir_fstype', '?')} ({m.get('workdir_device', '?')})",
        "- tools: " + "; ".join(f"{k}: {val or 'not installed'}" for k, val in v.items()),
    ]
    xb = m.get("xfer_binary")
    if xb:
        lines.append(f"- xfer binary: {xb['path']}, sha256 {xb['sha256'][:16]}..., built {xb['mtime']}")
    xd = m.get("xferd_binary")
    if xd:
        lines.append(f"- xferd binary: {xd['path']}, sha256 {xd['sha256'][:16]}..., built {xd['mtime']}")
    return "\n".join(lines)


def checkpoint_markdown(doc: dict) -> list[str]:
    lines: list[str] = []
    for sc in doc["scenarios"]:
        c = sc.get("compare")
        if c:
            cost = c.get("cost_pct")
            paired = c.get("paired_cost_pct") or []
            lines.append(f"- {sc['name']}: throughput cost of checkpointing ({c['tool']} vs {c['baseline']}) = "
                         + ("-" if cost is None else f"**{cost:.1f}%** (medians)")
                         + (f"; per round {', '.join(f'{x:.1f}%' for x in paired)} (median "
                            f"{c['median_paired_cost_pct']:.1f}%)" if paired else ""))
            ck = c.get("checkpoint")
            if ck:
                lines.append(f"  - {c['tool']} --json checkpoint figures (median, min-max over runs): "
                             + ", ".join(f"{k} {ck[k]['median']:.0f} ({ck[k]['min']:.0f}-{ck[k]['max']:.0f})"
                                         for k in CKPT_KEYS))
        rs = sc.get("resume")
        if rs:
            full = sc.get("full_runs", {})
            bound = rs.get("bound_bytes")
            lines.append(f"- {sc['name']}: full run median {full.get('median_s', float('nan')):.3f} s "
                         f"({full.get('min_s', float('nan')):.3f}-{full.get('max_s', float('nan')):.3f}); "
                         f"{rs['n_ok']}/{rs['n_pairs']} kill/resume pairs ok; bound = {rs['streams']} streams x "
                         + (f"{human_bytes(rs['chunk_size'])} = {human_bytes(bound)}" if bound else "?"))
            lines += ["", "| pair | killed after s | wchar at kill | resumed run s | % of full run | bytes sent | "
                          "bytes_resumed | re-sent | re-sent / bound |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for p in rs["pairs"]:
                k = p.get("kill", {})
                if not p.get("ok"):
                    lines.append(f"| {p['run']} | {k.get('kill_after_s', float('nan')):.2f} | {k.get('wchar_at_kill', '-')} "
                                 f"| - | - | - | - | - | FAIL: {p.get('error', '')} |")
                    continue
                pct = "-" if p.get("pct_of_full") is None else f"{p['pct_of_full']:.1f}%"
                ratio = "-" if not bound else f"{p['resent_bytes'] / bound:.2f}"
                lines.append(
                    f"| {p['run']}{' (BUSY, discarded)' if p.get('discarded') else ''} | {k['kill_after_s']:.2f} "
                    f"| {k['wchar_at_kill']} ({100.0 * k['wchar_at_kill'] / sc['total_bytes']:.1f}%) "
                    f"| {p['seconds']:.3f} | {pct} | {p['bytes']} | {p['bytes_resumed']} "
                    f"| {human_bytes(p['resent_bytes'])} | {ratio} |")
            if rs.get("median_resent_bytes") is not None:
                lines += ["", f"  median re-sent {human_bytes(rs['median_resent_bytes'])}, max "
                              f"{human_bytes(rs['max_resent_bytes'])} (bound {human_bytes(bound) if bound else '?'}); "
                              f"time to finish median {rs['median_finish_s']:.3f} s = "
                              + (f"**{rs['median_finish_pct']:.1f}%** of the full run (max {rs['max_finish_pct']:.1f}%)"
                                 if rs.get("median_finish_pct") is not None else "?")]
    return lines


def markdown_table(results: list[dict]) -> str:
    out = ["| scenario | tool | median s | min-max s | MB/s | files/s | peer/xfer time | % disk ceiling | peak RSS | cache | status |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for sc in results:
        if sc.get("network"):
            continue
        cache = "cold" if sc.get("cold_cache") else "warm cache"
        for t, row in sc["tools"].items():
            if "median_s" not in row:
                out.append(f"| {sc['name']} | {t} | - | - | - | - | - | - | - | {cache} | {row['status']} |")
                continue
            ratio = row.get("peer_over_xfer")
            ratio_s = "-" if ratio is None else ("1.00 (ref)" if t == "xfer" else f"{ratio:.2f}x")
            pct = row.get("pct_of_disk")
            files_s = f"{row['median_files_per_s']:.0f}" if sc["total_files"] > 1 else "-"
            out.append(
                f"| {sc['name']} | {t} | {row['median_s']:.3f} | {row['min_s']:.3f}-{row['max_s']:.3f} "
                f"| {row['median_MBps']:.1f} | {files_s} | {ratio_s} "
                f"| {'-' if pct is None else f'{pct:.0f}%'} | {row['peak_rss_kib'] / 1024:.1f} MiB "
                f"| {cache} | {row['status']} ({row['n_ok']} runs"
                + (f", {row['busy_runs']} BUSY" if row.get("busy_runs") else "") + ") |")
    return "\n".join(out)


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def net_markdown_table(results: list[dict]) -> str:
    out = ["| scenario | tool | median s | min-max s | MB/s | Gbit/s | files/s | peer/xfer time | % of iperf3 "
           "| client peak RSS | server peak RSS | status |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for sc in results:
        if not sc.get("network"):
            continue
        for t, row in sc["tools"].items():
            if "median_s" not in row:
                out.append(f"| {sc['name']} | {t} | - | - | - | - | - | - | - | - | - | {row['status']} |")
                continue
            ceiling = row.get("ceiling")
            ratio = row.get("peer_over_xfer")
            ratio_s = "-" if ratio is None else ("1.00 (ref)" if t == "xfer" else f"{ratio:.2f}x")
            pct = row.get("pct_of_ceiling")
            files_s = f"{row['median_files_per_s']:.0f}" if sc["total_files"] > 1 and not ceiling else "-"
            eq = "=" if ceiling else ""
            status = ("ceiling" if ceiling else row["status"]) + f" ({row['n_ok']} runs" \
                + (f", {row['busy_runs']} BUSY" if row.get("busy_runs") else "") + ")"
            out.append(
                f"| {sc['name']} | {t} | {eq}{row['median_s']:.3f} | {eq}{row['min_s']:.3f}-{row['max_s']:.3f} "
                f"| {row['median_MBps']:.1f} | {row['median_MBps'] * 8 / 1000:.2f} | {files_s} | {ratio_s} "
                f"| {'100% (ref)' if ceiling else ('-' if pct is None else f'{pct:.0f}%')} "
                f"| {_mib(row.get('peak_rss_kib'))} | {_mib(row.get('server_peak_rss_kib'))} | {status} |")
    return "\n".join(out)


def net_markdown(doc: dict) -> list[str]:
    net = [sc for sc in doc["scenarios"] if sc.get("network")]
    if not net:
        return []
    lines = ["", "### Network scenarios (loopback, memory to memory)", "",
             "Both ends on this machine over 127.0.0.1; datasets and destinations on tmpfs (no cache drop, "
             "no sync in the timed region: the time is the client command's wall time). Every run gets fresh "
             "servers. iperf3 rows: the rate of `iperf3 -c -t N -J` (end.sum_received), `=` s = the time the "
             "dataset would take at that rate. client peak RSS: GNU time on the client command (max over its "
             "processes, e.g. scp and its ssh). server peak RSS: sshd/iperf3: GNU time around the server = max "
             "over the listener and every per-connection process (scp/sftp-server/rsync/tar on the server "
             "side); xfer rows: VmHWM of xferd (net-3p: max of A and B), read just before SIGTERM.", "",
             net_markdown_table(net), ""]
    for sc in net:
        for n in sc.get("notes") or []:
            lines.append(f"- {sc['name']}: {n}")
        if sc["name"] == "xferd-mem":
            for r in sc["runs"].get("xfer", []):
                if r.get("seconds") is not None:
                    lines.append(f"- xferd-mem run {r['run']}: wall {r['seconds']:.3f} s, xferd VmHWM "
                                 f"{_mib(r.get('server_rss_kib'))}, clients max RSS {_mib(r.get('maxrss_kib'))}, "
                                 f"{r.get('verify_msg', '')}")
    tg = [(sc["name"], t) for sc in net for t in sc.get("targets") or []]
    if tg:
        lines += ["", "| scenario | target | measured | verdict |", "|---|---|---|---|"]
        lines += [f"| {n} | {t['label']} | {t['measured']} | **{t['verdict']}** |" for n, t in tg]
    return lines


def report_markdown(doc: dict) -> str:
    lines = [f"## xfer benchmark {doc['started']}", "", machine_markdown(doc["machine"]), ""]
    fio = doc.get("fio")
    if fio:
        if fio.get("ceiling_bytes_per_s"):
            lines.append(f"- fio ({human_bytes(fio['size'])}, bs 4M, iodepth 16, O_DIRECT, {fio['ioengine']}): "
                         f"write {fio['write_bytes_per_s'] / 1e6:.0f} MB/s, read {fio['read_bytes_per_s'] / 1e6:.0f} MB/s,"
                         f" ceiling min = {fio['ceiling_bytes_per_s'] / 1e6:.0f} MB/s")
        else:
            lines.append(f"- fio: {fio.get('error')}")
    for sc in doc["scenarios"]:
        rpt = sc.get("runs_per_tool") or {}
        runs = (", ".join(f"{t} {n}" for t, n in rpt.items()) if len(set(rpt.values())) > 1
                else str(doc["config"]["runs"] if not rpt else next(iter(rpt.values()))))
        lines.append(f"- {sc['name']}: {sc['description']} ({sc['total_bytes'] / 1e6:.1f} MB); runs: {runs}; "
                     f"DST: {sc.get('destination') or 'workdir'}")
    rss_note = ("peak RSS via GNU time (the tool's own wait4 ru_maxrss)" if GNU_TIME
                else "peak RSS via wait4 on the tool (includes the harness's RSS as a floor; install GNU time)")
    if any(not sc.get("network") for sc in doc["scenarios"]):
        lines += ["", "MB = 1e6 bytes; times include a trailing sync; peer/xfer time > 1 means xfer is faster; "
                  + rss_note + ".", "",
                  markdown_table(doc["scenarios"]), ""]
    lines += net_markdown(doc)
    x = []
    for sc in doc["scenarios"]:
        xr = sc["tools"].get("xfer", {})
        if xr.get("pct_of_disk") is not None:
            x.append(f"- {sc['name']}: xfer reaches {xr['pct_of_disk']:.0f}% of the fio disk ceiling")
    lines += x
    ck = checkpoint_markdown(doc)
    if ck:
        lines += ["", "### Checkpoints", ""] + ck
    busy = sum(r.get("busy_runs", 0) for sc in doc["scenarios"] for r in sc["tools"].values())
    if busy:
        lines += ["", f"**WARNING: {busy} run(s) flagged BUSY: other processes used CPU while they ran "
                  "(see busy/foreign_cpu_s/foreign_top in the JSON). These numbers are not trustworthy.**"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# chart


def pick_terminal() -> str | None:
    for term in ("pngcairo", "png"):
        p = subprocess.run(["gnuplot", "-e", f"set terminal {term}"], capture_output=True, text=True)
        if p.returncode == 0 and not p.stderr.strip():
            return term
    return None


def _gp_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_chart(doc: dict, path: str) -> str | None:
    if not shutil.which("gnuplot"):
        return "gnuplot not installed"
    term = pick_terminal()
    if not term:
        return "no working gnuplot PNG terminal"
    scen = [sc for sc in doc["scenarios"]
            if any("median_MBps" in r and not r.get("ceiling") for r in sc["tools"].values())]
    if not scen:
        return "no successful runs to chart"
    color = {t: i + 1 for i, t in enumerate(ALL_TOOLS)}
    tmpd = tempfile.mkdtemp(prefix="xfer-bench-gp-")
    try:
        width = max(640, 420 * len(scen))
        font = "sans,10" if term == "pngcairo" else "arial 10"
        gp = [f"set terminal {term} size {width},480 font {_gp_str(font)}",
              f"set output {_gp_str(path)}",
              f"set multiplot layout 1,{len(scen)} title {_gp_str('xfer benchmark: median throughput (MB/s, higher is better), ' + doc['started'])}",
              "set style fill solid 0.85 border -1", "set boxwidth 0.6", "set grid ytics",
              "set yrange [0:*]", "set ylabel 'MB/s (1e6 B/s)'", "unset key", "set offsets 0.5,0.5,0,0",
              "set linetype 1 lc rgb '#4e79a7'", "set linetype 2 lc rgb '#f28e2b'",
              "set linetype 3 lc rgb '#59a14f'", "set linetype 4 lc rgb '#e15759'", "set linetype 5 lc rgb '#999999'",
              "set linetype 6 lc rgb '#b07aa1'", "set linetype 7 lc rgb '#76b7b2'", "set linetype 8 lc rgb '#edc948'",
              "set linetype 9 lc rgb '#9c755f'", "set linetype 10 lc rgb '#ff9da7'"]
        for i, sc in enumerate(scen):
            dat = os.path.join(tmpd, f"s{i}.dat")
            ymax = 0.0
            with open(dat, "w") as f:
                for t, row in sc["tools"].items():
                    if "median_MBps" not in row or row.get("ceiling"):
                        continue
                    label = f"{row['median_MBps']:.0f}"
                    if sc["total_files"] > 1:
                        label += f"\\n{row['median_files_per_s']:.0f} f/s"
                    f.write(f"\"{t}\" {row['median_MBps']:.3f} {color.get(t, 5)} \"{label}\"\n")
                    ymax = max(ymax, row["median_MBps"])
            title = f"{sc['name']}: {sc['description']}" + (
                " (tmpfs, loopback)" if sc.get("in_memory") else "" if sc.get("cold_cache") else " (WARM cache)")
            # long titles (network panels) wrap: gnuplot's "\n" escape inside a double-quoted string
            wrapped = textwrap.wrap(title, width=max(40, 420 // 8)) or [title]
            gp.append("set title " + "\"" + "\\n".join(_gp_str(w)[1:-1] for w in wrapped[:3]) + "\"")
            fio = doc.get("fio") or {}
            gp.append("unset arrow; unset label")
            if sc["name"] == "large" and fio.get("ceiling_bytes_per_s"):
                c = fio["ceiling_bytes_per_s"] / 1e6
                ymax = max(ymax, c)
                gp.append(f"set arrow from graph 0, first {c:.3f} to graph 1, first {c:.3f} nohead dt 2 lw 2 lc rgb '#333333' front")
                gp.append(f"set label {_gp_str(f'fio ceiling {c:.0f}')} at graph 0.02, first {c:.3f} offset 0,0.7 front")
            ceil = next((r for r in sc["tools"].values() if r.get("ceiling") and r.get("median_MBps")), None)
            if ceil:
                c = ceil["median_MBps"]
                ymax = max(ymax, c)
                gp.append(f"set arrow from graph 0, first {c:.3f} to graph 1, first {c:.3f} nohead dt 2 lw 2 lc rgb '#333333' front")
                gp.append(f"set label {_gp_str(f'iperf3 {c:.0f}')} at graph 0.02, first {c:.3f} offset 0,0.7 front")
            gp.append(f"set yrange [0:{ymax * 1.3:.3f}]")
            gp.append(f"plot {_gp_str(dat)} using 0:2:3:xtic(1) with boxes lc variable, "
                      f"'' using 0:2:4 with labels offset 0,{1.9 if sc['total_files'] > 1 else 1.1:.1f}")
        gp.append("unset multiplot")
        script = os.path.join(tmpd, "chart.gp")
        with open(script, "w") as f:
            f.write("\n".join(gp) + "\n")
        p = subprocess.run(["gnuplot", script], capture_output=True, text=True)
        if p.returncode != 0:
            return f"gnuplot failed: {p.stderr.strip()[:500]}"
        return None
    finally:
        shutil.rmtree(tmpd, ignore_errors=True)


# --------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="xfer benchmark harness (cp / rsync / rclone / xfer)")
    ap.add_argument("--xfer", default=DEFAULT_XFER, help=f"xfer binary (default {DEFAULT_XFER})")
    ap.add_argument("--xfer-args", default="", help='extra flags for xfer, e.g. "--workers 4 --direct"')
    ap.add_argument("--workdir", default=DEFAULT_WORKDIR, help=f"datasets + destinations (default {DEFAULT_WORKDIR})")
    ap.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                    help="scenario to run (repeatable); default: large, small")
    ap.add_argument("--scenarios", default="", metavar="A,B",
                    help="comma list of scenarios (same as repeating --scenario)")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS), help=f"comma list of tools (default {','.join(ALL_TOOLS)})")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per tool (default 3)")
    ap.add_argument("--tool-runs", default="", metavar="TOOL=N,...",
                    help="fewer (or more) runs for some tools, e.g. cp=2,rsync=2 (default: --runs for all)")
    ap.add_argument("--wait-quiet", type=float, default=120, metavar="S",
                    help="before each run, wait up to S s until no other process uses CPU (default 120; 0 = off)")
    ap.add_argument("--busy-retries", type=int, default=2, metavar="N",
                    help="redo a run flagged BUSY (other processes used CPU during it) up to N times (default 2)")
    ap.add_argument("--rootfs-pause", type=float, default=SMALL_ROOTFS_PAUSE, metavar="S",
                    help=f"small-rootfs: untimed pause after deleting DST (default {SMALL_ROOTFS_PAUSE:.0f})")
    ap.add_argument("--small-dest", choices=["fresh-ext4", "workdir"], default="fresh-ext4",
                    help="DST of the small scenario: a fresh journaled ext4 made before every run "
                         "(default) or the workdir itself")
    ap.add_argument("--large-size", type=parse_size, default=parse_size("4G"), help="large file size (default 4G)")
    ap.add_argument("--small-count", type=int, default=100_000, help="number of small files (default 100000)")
    ap.add_argument("--small-file-size", type=parse_size, default=4096, help="small file size (default 4K)")
    ap.add_argument("--check-full", action="store_true", help="verify outputs by full content comparison")
    ap.add_argument("--no-verify", action="store_true", help="skip output verification")
    ap.add_argument("--no-fio", action="store_true", help="skip the fio disk ceiling measurement")
    ap.add_argument("--warm", action="store_true", help="do not drop caches before runs (results marked warm cache)")
    ap.add_argument("--timeout", type=float, default=3600, help="kill a run after this many seconds (default 3600)")
    ap.add_argument("--markdown", help="append the markdown report to this file")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "latest.json"), help="JSON results file")
    ap.add_argument("--chart", default=os.path.join(HERE, "results", "latest.png"), help="PNG chart file ('' to skip)")
    ap.add_argument("--clean", action="store_true", help="delete the generated datasets when done")
    net = ap.add_argument_group("network scenarios (net-large, net-large-enc, net-small, net-3p, xferd-mem)")
    net.add_argument("--xferd", default=DEFAULT_XFERD, help=f"xferd binary (default {DEFAULT_XFERD})")
    net.add_argument("--net-dir", default=DEFAULT_NETDIR,
                     help=f"datasets, server roots, keys and configs, on tmpfs (default {DEFAULT_NETDIR})")
    net.add_argument("--net-size", type=parse_size, default=parse_size("4G"),
                     help="file size of net-large, net-large-enc, net-3p (default 4G)")
    net.add_argument("--net-small-count", type=int, default=20_000, help="files of net-small (default 20000)")
    net.add_argument("--net-small-file-size", type=parse_size, default=16384, help="file size of net-small (default 16K)")
    net.add_argument("--iperf-seconds", type=float, default=10, help="iperf3 -t (default 10)")
    net.add_argument("--mem-clients", type=int, default=50, help="xferd-mem: concurrent clients (default 50)")
    net.add_argument("--mem-file-size", type=parse_size, default=parse_size("16M"),
                     help="xferd-mem: each client's big file (default 16M)")
    net.add_argument("--mem-tree-files", type=int, default=200, help="xferd-mem: files in each client's tree (default 200)")
    net.add_argument("--mem-tree-file-size", type=parse_size, default=16384,
                     help="xferd-mem: size of those files (default 16K)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = ap.parse_args(argv)

    if args.list:
        for name, sd in SCENARIOS.items():
            print(f"{name:13s} {'local' if sd.local else 'network'} {'default' if sd.default else 'on request'}  {sd.help}")
        return 0
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.small_count < 1:
        ap.error("--small-count must be >= 1")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    try:
        args.tool_runs = {k.strip(): int(v) for k, v in
                          (item.split("=", 1) for item in args.tool_runs.split(",") if item.strip())}
    except ValueError:
        ap.error("--tool-runs wants TOOL=N[,TOOL=N...]")
    if any(n < 1 for n in args.tool_runs.values()):
        ap.error("--tool-runs: N must be >= 1")
    bad = [t for t in tools if t not in ALL_TOOLS]
    if bad:
        ap.error(f"unknown tool(s) {bad}; known: {ALL_TOOLS}")
    extra = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    unknown = [x for x in extra if x not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {sorted(SCENARIOS)}")
    scenarios = list(dict.fromkeys((args.scenario or []) + extra)) or \
        [n for n, sd in SCENARIOS.items() if sd.local and sd.default]
    for n, v in (("--net-small-count", args.net_small_count), ("--mem-clients", args.mem_clients),
                 ("--mem-tree-files", args.mem_tree_files)):
        if v < 1:
            ap.error(f"{n} must be >= 1")
    net_scen = [n for n in scenarios if not SCENARIOS[n].local]
    if net_scen and os.geteuid() != 0 and any(t in tools for t in ("scp", "rsync-ssh", "sftp", "tar-ssh")):
        ap.error(f"{net_scen}: the ssh peers need root (sshd with its own config, PermitRootLogin, /run/sshd);"
                 " run as root or leave scp/rsync-ssh/sftp/tar-ssh out of --tools")

    if "ckpt-small" in scenarios or ("small" in scenarios and args.small_dest == "fresh-ext4"):
        if os.geteuid() != 0:
            ap.error("--small-dest fresh-ext4 needs root (losetup, mkfs.ext4, mount); use --small-dest workdir")
        missing = [b for b in ("losetup", "mkfs.ext4", "mount", "umount", "findmnt") if not shutil.which(b)]
        if missing:
            ap.error(f"--small-dest fresh-ext4 needs {missing}")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGHUP, _sigterm)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    logdir = os.path.join(workdir, "logs")
    os.makedirs(logdir, exist_ok=True)
    xfer = os.path.abspath(args.xfer)
    default_state = os.path.join(workdir, "xfer-state")
    set_state_dir(default_state)   # inherited by every xfer run
    reset_xfer_state()
    netdir = os.path.abspath(args.net_dir)
    ctx = Ctx(args, workdir, xfer, shlex.split(args.xfer_args), netdir=netdir, xferd=os.path.abspath(args.xferd),
              net_env=NetEnv)
    cache = CacheControl(enabled=not args.warm)
    if args.warm:
        log("--warm: page cache is NOT dropped between runs")

    doc: dict = {
        "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {**machine_info(workdir, xfer, os.path.abspath(args.xferd) if net_scen else None),
                    "workdir": workdir},
        "config": {"runs": args.runs, "tools": tools, "scenarios": scenarios, "xfer": xfer,
                   "xfer_args": ctx.xfer_args, "large_size": args.large_size, "small_count": args.small_count,
                   "small_file_size": args.small_file_size, "check_full": args.check_full,
                   "tool_runs": args.tool_runs, "small_dest": args.small_dest,
                   **({"xferd": ctx.xferd, "net_dir": netdir, "net_size": args.net_size,
                       "net_small_count": args.net_small_count, "net_small_file_size": args.net_small_file_size,
                       "iperf_seconds": args.iperf_seconds, "mem_clients": args.mem_clients,
                       "mem_file_size": args.mem_file_size, "mem_tree_files": args.mem_tree_files,
                       "mem_tree_file_size": args.mem_tree_file_size} if net_scen else {}),
                   "wait_quiet": args.wait_quiet, "busy_retries": args.busy_retries,
                   "rootfs_pause": args.rootfs_pause, "xfer_state_dir": harness.STATE_DIR,
                   "argv": [sys.executable, *sys.argv]},
        "fio": None,
        "scenarios": [],
    }
    failed = False
    plans: list[ScenarioPlan] = []
    try:
        for name in scenarios:
            plan = SCENARIOS[name].build(ctx)
            plans.append(plan)
            if plan.wants_fio and doc["fio"] is None and not args.no_fio:
                if args.wait_quiet > 0:
                    wait_quiet(args.wait_quiet)
                doc["fio"] = run_fio(workdir, plan.total_bytes)
            ptools = plan.tool_names or tools
            if plan.network:
                ptools = [t for t in plan.tools if t in tools and (not plan.tool_names or t in plan.tool_names)]
                if not ptools:
                    log(f"scenario {name}: none of its tools {list(plan.tools)} is in --tools; skipped")
                    if plan.cleanup:
                        plan.cleanup()
                    continue
                _maybe_cipher(ctx, plan, ptools)
            set_state_dir(plan.state_dir or default_state)
            log(f"scenario {name}: {plan.description}; tools {ptools}; {args.runs} runs each")
            if plan.runner:
                entry = plan.runner(args, cache, logdir)
                failed |= bool(entry.get("failed"))
                doc["scenarios"].append(entry)
                if plan.cleanup:
                    plan.cleanup()
                continue
            outcomes = run_scenario(plan, ptools, args, cache, logdir)
            rows = summarize(plan, outcomes, doc["fio"] if plan.wants_fio else None)
            failed |= any(oc.status == "FAIL" for oc in outcomes.values())
            doc["scenarios"].append(scenario_entry(plan, outcomes, rows, args, cache))
            if plan.compare:
                doc["scenarios"][-1]["compare"] = ckpt_compare(plan, outcomes, rows)
            if plan.cleanup:
                plan.cleanup()
    except KeyboardInterrupt:
        log("interrupted")
        failed = True
    finally:
        for plan in plans:   # unmount / detach / delete images even after an error
            if plan.cleanup:
                plan.cleanup()
        rm_rf(os.path.join(workdir, "dst"))
        reset_xfer_state()
        set_state_dir(default_state)
        reset_xfer_state()
        if ctx._net is not None:
            ctx._net.remove()          # stops any server still running, deletes keys/configs
        if net_scen:
            for d in ("srv", "srv-a", "srv-b", "client", "xfer-state"):
                rm_rf(os.path.join(netdir, d))
            try:
                os.rmdir(os.path.join(netdir, "tmp"))
            except OSError:
                pass
        if args.clean:
            rm_rf(os.path.join(workdir, "data"))
            if net_scen:
                rm_rf(os.path.join(netdir, "data"))
                try:
                    os.rmdir(netdir)
                except OSError:
                    pass
            log("datasets deleted (--clean)")

    doc["finished"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    xb = doc["machine"].get("xfer_binary")
    if xb:
        try:
            now = _dt.datetime.fromtimestamp(os.path.getmtime(xfer)).astimezone().isoformat(timespec="seconds")
        except OSError:
            now = "missing"
        if now != xb["mtime"]:
            doc["xfer_binary_changed"] = now
            log(f"WARNING: {xfer} changed during the benchmark (mtime {xb['mtime']} -> {now}): results mix binaries")
    doc["failed"] = failed
    md = report_markdown(doc)
    if doc.get("xfer_binary_changed"):
        md += (f"\n**WARNING: the xfer binary changed during the benchmark (mtime now "
               f"{doc['xfer_binary_changed']}); results mix binaries.**\n")
    print(md)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(md + "\n")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        log(f"JSON written to {args.json}")
    if args.chart:
        os.makedirs(os.path.dirname(os.path.abspath(args.chart)), exist_ok=True)
        err = make_chart(doc, os.path.abspath(args.chart))
        log(f"chart: {err}" if err else f"chart written to {args.chart}")
    if failed:
        bar = "!" * 72
        print(f"\n{bar}\nFAIL: at least one run failed or produced a wrong result (see above / JSON)\n{bar}",
              file=sys.stderr)
        print("FAIL")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
