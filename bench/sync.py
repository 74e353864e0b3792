#!/usr/bin/env python3
"""Sync: what a re-sync costs when little or nothing changed (issue 14,
scenarios Y1, Y2 and a first look at Y5's memory).

One source tree of --files small files (100 per folder). Each tool keeps
its own destination, made by a first full sync (timed too, as "first"):

  xfer   xfer sync --delete SRC/ DST/            (local)
  rsync  rsync -a --delete SRC/ DST/             (local)
  rclone rclone sync SRC DST                     (local)
  xfer:// xfer sync --delete SRC/ xfer://127.0.0.1:P/DST/   (a local xferd)
  rsync/ssh rsync -a --delete -e ssh SRC/ root@127.0.0.1:DST/ (a local sshd)

Then --runs rounds of
  Y1  nothing changed: every tool syncs again;
  Y2  1% of the files rewritten (same size, new bytes, new mtime), the same
      files for every tool: every tool syncs again;
the tools alternated within a round (A B C D E), medians reported, peak RSS
(GNU time, the client process only) beside. Each tool's destination is
checked against the source after the last round (names, sizes, bytes of
the changed files). The servers (xferd, sshd) run with their own configs
and ports on loopback and are stopped by PID at the end.

  bench/sync.py --files 100000 --runs 3
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from benchlib.harness import ensure_small_dataset  # noqa: E402


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM by PID, SIGKILL after 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Xferd:
    """A local xferd whose root holds the xfer:// destination."""

    def __init__(self, xferd: str, work: str) -> None:
        self.dir = os.path.join(work, "xferd")
        self.root = os.path.join(self.dir, "root")
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        self.control = free_port()
        self.data = free_port()
        self.config = os.path.join(self.dir, "xferd.toml")
        with open(self.config, "w") as f:
            f.write(f'[server]\nlisten = "127.0.0.1:{self.control}"\n'
                    f'data_listen = ["127.0.0.1:{self.data}"]\nroot = "{self.root}"\n'
                    f'state_dir = "{os.path.join(self.dir, "state")}"\n'
                    f'[auth]\nsecret = "0123456789abcdef0123456789abcdef"\n')
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen([xferd, "--config", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        for _ in range(100):
            with open(os.path.join(self.dir, "log")) as f:
                if "listening" in f.read():
                    break
            time.sleep(0.1)
        else:
            raise SystemExit("xferd did not start: " + open(os.path.join(self.dir, "log")).read())
        self.token = subprocess.run([xferd, "token", "--config", self.config, "--prefix", "/",
                                     "--write", "--ttl", "86400"], capture_output=True, text=True,
                                    check=True).stdout.strip()

    def url(self, path: str) -> str:
        return f"xfer://127.0.0.1:{self.control}/{path}"

    def stop(self) -> None:
        stop_process(self.proc)


class Sshd:
    """An OpenSSH server on a loopback port with its own host key, and a
    client key it accepts for root."""

    def __init__(self, work: str) -> None:
        self.dir = os.path.join(work, "sshd")
        os.makedirs(self.dir, exist_ok=True)
        self.host_key = os.path.join(self.dir, "host_ed25519")
        self.user_key = os.path.join(self.dir, "user_ed25519")
        for k in (self.host_key, self.user_key):
            if not os.path.exists(k):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k], check=True)
        auth = os.path.join(self.dir, "authorized_keys")
        shutil.copy(self.user_key + ".pub", auth)
        os.chmod(auth, 0o600)
        self.port = free_port()
        cfg = os.path.join(self.dir, "sshd_config")
        with open(cfg, "w") as f:
            f.write(f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
                    f"AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n"
                    f"PasswordAuthentication no\nUsePAM no\nStrictModes no\n"
                    f"PidFile {os.path.join(self.dir, 'pid')}\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", cfg],
                                     stderr=open(os.path.join(self.dir, "log"), "w"))
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        self.rsh = (f"ssh -p {self.port} -i {self.user_key} -o StrictHostKeyChecking=no "
                    f"-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o Compression=no")

    def stop(self) -> None:
        stop_process(self.proc)


def command(tool: str, args, src: str, dst: dict, xferd: Xferd | None, sshd: Sshd | None) -> list[str]:
    if tool == "xfer":
        return [args.xfer, "sync", "--delete", "--no-progress", "--json", src + "/", dst[tool] + "/"]
    if tool == "rsync":
        return ["rsync", "-a", "--delete", src + "/", dst[tool] + "/"]
    if tool == "rclone":
        return ["rclone", "--config", "/dev/null", "sync", src, dst[tool]]
    if tool == "xfer://":
        return [args.xfer, "--token", xferd.token, "sync", "--delete", "--no-progress", "--json",
                src + "/", xferd.url("dst") + "/"]
    if tool == "rsync/ssh":
        return ["rsync", "-a", "--delete", "-e", sshd.rsh, src + "/", "root@127.0.0.1:" + dst[tool] + "/"]
    raise ValueError(tool)


def run(tool: str, cmd: list[str], env: dict) -> dict:
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{tool} failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    row = {"tool": tool, "seconds": wall, "rss_kib": int(p.stderr.strip().splitlines()[-1])}
    if tool.startswith("xfer"):
        for line in p.stdout.splitlines():
            if '"event":"summary"' in line:
                s = json.loads(line)
                row["files_sent"] = s["files"] - s["files_unchanged"]
                row["bytes"] = s["bytes"]
                if "bidirectional" in s:  # bench/bisync.py
                    row.update({k: s["bidirectional"][k] for k in ("to_a", "to_b", "conflicts")})
    return row


def change_files(tree: str, files: list[str], seed: int) -> None:
    """Rewrites each of `files` with new bytes of the same size and a new mtime."""
    rng = random.Random(seed)
    stamp = time.time() + seed  # distinct from every earlier round
    for rel in files:
        p = os.path.join(tree, rel)
        size = os.path.getsize(p)
        with open(p, "r+b") as f:
            f.write(rng.randbytes(size))
        os.utime(p, (stamp, stamp))


def check_tree(src: str, dst: str, changed: list[str]) -> None:
    a, b = [], []
    for root, out in ((src, a), (dst, b)):
        for d, _, fs in os.walk(root):
            for f in fs:
                p = os.path.join(d, f)
                out.append((os.path.relpath(p, root), os.path.getsize(p)))
    if sorted(a) != sorted(b):
        raise SystemExit(f"{dst} differs from {src} (names or sizes)")
    for rel in changed:
        with open(os.path.join(src, rel), "rb") as x, open(os.path.join(dst, rel), "rb") as y:
            if x.read() != y.read():
                raise SystemExit(f"{dst}/{rel} has other bytes than the source")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--file-size", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--changed", type=float, default=0.01, help="share of files changed in Y2")
    ap.add_argument("--tools", default="xfer,rsync,rclone,xfer://,rsync/ssh")
    ap.add_argument("--xfer", default=os.path.join(ROOT, "build", "apps", "xfer", "xfer"))
    ap.add_argument("--xferd", default=os.path.join(ROOT, "build", "apps", "xferd", "xferd"))
    ap.add_argument("--work", default="/var/tmp/xfer-bench-sync")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "sync.json"))
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    os.makedirs(args.work, exist_ok=True)
    pristine = ensure_small_dataset(args.work, args.files, args.file_size)
    src = os.path.join(args.work, "src")
    shutil.rmtree(src, ignore_errors=True)
    subprocess.run(["cp", "-a", pristine, src], check=True)
    # xfer's job records from an earlier run of this bench would make the
    # first sync a resume: start without them.
    shutil.rmtree(os.path.join(args.work, "xfer-state"), ignore_errors=True)
    env = dict(os.environ, XFER_STATE_DIR=os.path.join(args.work, "xfer-state"),
               XFER_CONFIG=os.path.join(args.work, "none.toml"),
               XFER_CREDENTIALS=os.path.join(args.work, "none-credentials.toml"))
    xferd = Xferd(args.xferd, args.work) if "xfer://" in tools else None
    sshd = Sshd(args.work) if "rsync/ssh" in tools else None
    dst = {t: os.path.join(args.work, "dst-" + t.replace("/", "-").replace(":", "")) for t in tools}
    if xferd:
        dst["xfer://"] = os.path.join(xferd.root, "dst")
    rows: list[dict] = []
    all_files = sorted(os.path.relpath(os.path.join(d, f), src)
                       for d, _, fs in os.walk(src) for f in fs)
    changed_all: list[str] = []
    try:
        for t in tools:
            shutil.rmtree(dst[t], ignore_errors=True)
            row = run(t, command(t, args, src, dst, xferd, sshd), env)
            row.update(scenario="first", run=0)
            rows.append(row)
            print(f"first  {t:10} {row['seconds']:7.2f} s  {row['rss_kib'] / 1024:6.1f} MiB", file=sys.stderr)
        for r in range(args.runs):
            for scenario in ("Y1", "Y2"):
                if scenario == "Y2":
                    changed = random.Random(r).sample(all_files, max(1, int(len(all_files) * args.changed)))
                    change_files(src, changed, r + 1)
                    changed_all += changed
                order = tools if r % 2 == 0 else list(reversed(tools))
                for t in order:
                    row = run(t, command(t, args, src, dst, xferd, sshd), env)
                    row.update(scenario=scenario, run=r)
                    rows.append(row)
                    print(f"{scenario} r{r} {t:10} {row['seconds']:7.2f} s  {row['rss_kib'] / 1024:6.1f} MiB"
                          f"  {row.get('files_sent', '')}", file=sys.stderr)
        for t in tools:
            check_tree(src, dst[t], changed_all)
    finally:
        if xferd:
            xferd.stop()
        if sshd:
            sshd.stop()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"rows": rows, "args": vars(args),
                   "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}, f, indent=1)
    print(f"| scenario ({args.files:,} files) | tool | median s | min-max s | peak RSS | fastest peer / xfer |")
    print("|---|---|---|---|---|---|")
    for scenario in ("first", "Y1", "Y2"):
        med = {}
        for t in tools:
            secs = [x["seconds"] for x in rows if x["tool"] == t and x["scenario"] == scenario]
            med[t] = (statistics.median(secs), min(secs), max(secs),
                      statistics.median([x["rss_kib"] for x in rows if x["tool"] == t and x["scenario"] == scenario]))
        # xfer against the local peers, xfer:// against the peer over ssh.
        local_peers = [med[t][0] for t in tools if t in ("rsync", "rclone")]
        net_peers = [med[t][0] for t in tools if t == "rsync/ssh"]
        for t in tools:
            m, lo, hi, rss = med[t]
            peers = local_peers if t == "xfer" else net_peers if t == "xfer://" else []
            ratio = f"{min(peers) / m:.2f}x" if peers else ""
            print(f"| {scenario} | {t} | {m:.2f} | {lo:.2f}-{hi:.2f} | {rss / 1024:.0f} MiB | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
