#!/usr/bin/env python3
"""Y4 (issue 14): continuous sync under 1,000 changed files per second.

A pool of --files files (4 KiB each) is synced to one destination per tool
first. Then, for --seconds, a writer rewrites --rate files per second (new
random bytes, in batches every 10 ms) while the tool follows the source:

  xfer        xfer sync --watch --delete SRC/ DST/ (--watch-debounce as given;
              --watch-with auto: fanotify as root)
  xfer inotify, xfer fanotify
              the same with --watch-with inotify / fanotify
  xfer from xferd
              the same with SRC served by a local xferd, which watches it
              itself and streams the changes (WatchChanges); its CPU time
              is added to the client's
  lsyncd      lsyncd -nodaemon with default.rsync and the given delay
              (installed from Debian when missing)
  rsync loop  rsync -a --delete SRC/ DST/, again as soon as it ends

Latency is measured the same way for every tool, from outside: every
20th write is a sample, and a checker reads the destination copy of each
sample's file every 50 ms until it has the sample's bytes (a sample
rewritten before it arrived is superseded and not counted). "Missed" is
what differs once the writer stops and the tool had --settle seconds to
catch up. The tools run one after another, never at once; each is stopped
by its PID (SIGINT for xfer, SIGTERM for the others).

  bench/watch.py --files 10000 --rate 1000 --seconds 60
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(os.path.dirname(HERE), "build")
sys.path.insert(0, HERE)
from sync import Xferd  # noqa: E402  (a local xferd on free loopback ports)


def cpu_seconds(pid: int) -> float:
    """utime + stime + the reaped children's, of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.blake2b(f.read(), digest_size=16).hexdigest()
    except OSError:
        return None


def differences(src: str, dst: str) -> int:
    n = 0
    names = set(os.listdir(src)) | set(os.listdir(dst))
    for name in names:
        if digest(os.path.join(src, name)) != digest(os.path.join(dst, name)):
            n += 1
    return n


class Tool:
    def __init__(self, name: str, argv: list[str] | None, src: str, dst: str, workdir: str,
                 helper_pid: int | None = None):
        self.name, self.argv, self.src, self.dst = name, argv, src, dst
        self.helper_pid = helper_pid  # a server the tool uses: its CPU counts too
        self.proc: subprocess.Popen | None = None
        self.loop_stop = threading.Event()
        self.loop_thread: threading.Thread | None = None
        self.loop_cpu = 0.0
        self.log = open(os.path.join(workdir, f"{name.replace(' ', '-')}.log"), "w")

    def start(self) -> None:
        if self.argv is None:  # the rsync loop, run from here
            def loop() -> None:
                while not self.loop_stop.is_set():
                    r0 = os.times()
                    subprocess.run(["rsync", "-a", "--delete", self.src + "/", self.dst + "/"],
                                   stdout=self.log, stderr=subprocess.STDOUT)
                    r1 = os.times()
                    self.loop_cpu += (r1.children_user - r0.children_user) + (
                        r1.children_system - r0.children_system)
            self.loop_thread = threading.Thread(target=loop)
            self.loop_thread.start()
        else:
            self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)

    def cpu(self) -> float:
        helper = cpu_seconds(self.helper_pid) if self.helper_pid is not None else 0.0
        if self.proc is not None:
            return cpu_seconds(self.proc.pid) + helper
        return self.loop_cpu + helper

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT if self.name.startswith("xfer") else signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.loop_thread is not None:
            self.loop_stop.set()
            self.loop_thread.join()
        self.log.close()


def run_one(tool: Tool, src: str, files: int, rate: int, seconds: int, settle: int) -> dict:
    rng = random.Random(1)
    pending: dict[str, tuple[float, str]] = {}  # sampled path -> (write time, digest)
    latencies: list[float] = []
    superseded = 0
    lock = threading.Lock()
    stop = threading.Event()

    def checker() -> None:
        while not stop.is_set() or pending:
            with lock:
                items = list(pending.items())
            now = time.monotonic()
            for name, (t, want) in items:
                if digest(os.path.join(tool.dst, name)) == want:
                    with lock:
                        if pending.get(name, (None,))[0] == t:
                            del pending[name]
                            latencies.append(now - t)
            if stop.is_set() and time.monotonic() > stop_time + settle:
                break
            time.sleep(0.05)

    tool.start()
    time.sleep(3)  # the tool's start (xfer and lsyncd compare everything first)
    cpu0 = tool.cpu()
    t_check = threading.Thread(target=checker)
    stop_time = float("inf")
    t_check.start()
    start = time.monotonic()
    written = 0
    while time.monotonic() - start < seconds:
        due = int((time.monotonic() - start) * rate)
        while written < due:
            name = f"f{rng.randrange(files):06d}"
            data = os.urandom(4096)
            path = os.path.join(src, name)
            with open(path + ".w", "wb") as f:
                f.write(data)
            os.rename(path + ".w", path)  # as editors and tools save
            if written % 20 == 0:
                with lock:
                    if name in pending:
                        superseded += 1
                    pending[name] = (time.monotonic(), hashlib.blake2b(data, digest_size=16).hexdigest())
            elif name in pending:
                with lock:
                    if name in pending:
                        superseded += 1
                        del pending[name]
            written += 1
        time.sleep(0.01)
    stop_time = time.monotonic()
    stop.set()
    t_check.join()
    cpu = tool.cpu() - cpu0
    # What is still different after the settle time.
    deadline = time.monotonic() + settle
    while differences(src, tool.dst) and time.monotonic() < deadline:
        time.sleep(0.5)
    missed = differences(src, tool.dst)
    tool.stop()
    lat = sorted(latencies)
    q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")  # noqa: E731
    return {"tool": tool.name, "writes": written, "samples": len(lat), "superseded": superseded,
            "never_arrived": len(pending), "p50_s": q(0.5), "p99_s": q(0.99),
            "max_s": lat[-1] if lat else float("nan"), "missed_at_end": missed, "cpu_s": cpu}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--settle", type=int, default=30)
    ap.add_argument("--debounce", default="200ms", help="xfer --watch-debounce")
    ap.add_argument("--lsyncd-delay", type=float, default=1, help="lsyncd's delay (s)")
    ap.add_argument("--tools", default="xfer,lsyncd,rsync loop")
    ap.add_argument("--xfer", default=os.path.join(BUILD, "apps/xfer/xfer"))
    ap.add_argument("--xferd", default=os.path.join(BUILD, "apps/xferd/xferd"))
    ap.add_argument("--workdir", default="/var/tmp/xfer-watch-bench")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "watch.json"))
    args = ap.parse_args()
    tools = args.tools.split(",")
    if "lsyncd" in tools and shutil.which("lsyncd") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "lsyncd"], check=True,
                       stdout=subprocess.DEVNULL)
    shutil.rmtree(args.workdir, ignore_errors=True)
    os.makedirs(args.workdir)
    server = Xferd(args.xferd, args.workdir) if "xfer from xferd" in tools else None
    # The source lies in the server's root, whoever reads it.
    src = os.path.join(args.workdir, "xferd", "root", "src")
    os.makedirs(src)
    for i in range(args.files):
        with open(os.path.join(src, f"f{i:06d}"), "wb") as f:
            f.write(os.urandom(4096))
    results = []
    try:
        for name in tools:
            dst = os.path.join(args.workdir, "dst-" + name.replace(" ", "-"))
            subprocess.run(["cp", "-a", src, dst], check=True)
            helper = None
            if name.startswith("xfer"):
                source = src + "/"
                argv = [args.xfer]
                if name == "xfer from xferd":
                    source = server.url("src") + "/"
                    argv += ["--token", server.token]
                    helper = server.proc.pid
                argv += ["sync", "--json", "--watch", "--delete", "--watch-debounce", args.debounce]
                if name in ("xfer inotify", "xfer fanotify"):
                    argv += ["--watch-with", name.split()[1]]
                argv += [source, dst + "/"]
            elif name == "lsyncd":
                conf = os.path.join(args.workdir, "lsyncd.conf")
                with open(conf, "w") as f:
                    f.write('settings { nodaemon = true, insist = true }\n'
                            f'sync {{ default.rsync, source = "{src}", target = "{dst}", '
                            f'delay = {args.lsyncd_delay}, maxProcesses = 1 }}\n')
                argv = ["lsyncd", conf]
            else:
                argv = None
            one = run_one(Tool(name, argv, src, dst, args.workdir, helper), src, args.files,
                          args.rate, args.seconds, args.settle)
            print(json.dumps(one), flush=True)
            results.append(one)
    finally:
        if server is not None:
            server.stop()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\n| Y4 ({args.rate} files/s for {args.seconds} s, {args.files} files of 4 KiB) | p50 s | "
          "p99 s | max s | samples | never arrived | differing at the end | CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['tool']} | {r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['max_s']:.2f} | {r['samples']} | "
              f"{r['never_arrived']} | {r['missed_at_end']} | {r['cpu_s']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
