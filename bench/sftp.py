#!/usr/bin/env python3
"""F1, F2 and F3 (issue 12): SFTP, xfer against scp, sftp, rclone, lftp and
tar over ssh, side by side, against one OpenSSH sshd.

  F1  one file (--size, 1 GiB), up to the server and down from it
        xfer        xfer cp SRC sftp://root@127.0.0.1:PORT/DST (and back)
        scp         scp SRC host:DST
        sftp        sftp -b (put / get)
        rclone      rclone copyto (downloads with --multi-thread-streams 8;
                    uploads: one stream with its 64 requests in flight)
        lftp        lftp put / pget -n 8
  F2  a tree of --files files (16 KiB each, 50 folders), uploaded
        xfer        xfer cp -r
        scp         scp -r
        sftp        sftp -b (put -r)
        rclone      rclone copy --transfers 16
        lftp        lftp mirror -R --parallel=8
        tar         tar cf - | ssh host tar xf -   (the target)
  F3  F1's file over the network lab (docs/netlab.md), sshd in host b, the
      tools in host a, W1's link (1 Gbit/s, 50 ms, 0.1% loss), down from
      the server (--f3-ways down,up for uploads too); iperf3 with 8
      connections (xfer's count) on the same link in each round. Needs
      root.

sshd runs with a config, host key and client key of the bench's own on a
loopback port (internal-sftp, no PAM). Every tool logs in with that key and
checks that host key (its own known_hosts file); xfer reads them from a
$HOME of the bench's. The server's side of every copy is on tmpfs
(/dev/shm), so the figures are about the tools and the protocol; the
source is read once before (page cache). Each run's time includes its
login, as a user's would. Rounds alternate the order of the tools; medians
of --runs; peak RSS from /usr/bin/time.

  bench/sftp.py --size 1G --files 20000 --runs 3 --out bench/results/sftp.json
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from sync import free_port, stop_process  # noqa: E402

# bench/http.py's helpers (loaded under another name: "http" is a standard
# module).
_spec = importlib.util.spec_from_file_location("bench_http", os.path.join(HERE, "http.py"))
bench_http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_http)
parse_size, make_large, make_tree, warm = (bench_http.parse_size, bench_http.make_large,
                                           bench_http.make_tree, bench_http.warm)
run, rounds, summarize, count_files, report = (bench_http.run, bench_http.rounds,
                                               bench_http.summarize, bench_http.count_files,
                                               bench_http.report)


class Sshd:
    """OpenSSH's sshd on `address`:port with keys of its own, in `work`/sshd;
    `wrap` runs it inside a lab host."""

    def __init__(self, work: str, address: str = "127.0.0.1", wrap=None, name: str = "sshd") -> None:
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.address = address
        self.port = free_port() if address == "127.0.0.1" else 2222
        for key in ("host", "client"):
            if not os.path.exists(os.path.join(self.dir, key)):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                                os.path.join(self.dir, key)], check=True)
        shutil.copy(os.path.join(self.dir, "client.pub"), os.path.join(self.dir, "authorized_keys"))
        os.chmod(os.path.join(self.dir, "authorized_keys"), 0o600)
        with open(os.path.join(self.dir, "sshd_config"), "w") as f:
            f.write(f"Port {self.port}\nListenAddress {address}\nHostKey {self.dir}/host\n"
                    f"AuthorizedKeysFile {self.dir}/authorized_keys\nPidFile {self.dir}/sshd.pid\n"
                    "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                    "MaxStartups 64\nSubsystem sftp internal-sftp\n")
        host_pub = open(os.path.join(self.dir, "host.pub")).read().split()
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        with open(self.known_hosts, "w") as f:
            f.write(f"[{address}]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        # xfer's $HOME: the client key as the default key, the known host.
        self.home = os.path.join(self.dir, "home")
        os.makedirs(os.path.join(self.home, ".ssh"), exist_ok=True)
        shutil.copy(os.path.join(self.dir, "client"), os.path.join(self.home, ".ssh", "id_ed25519"))
        shutil.copy(self.known_hosts, os.path.join(self.home, ".ssh", "known_hosts"))
        self.key = os.path.join(self.dir, "client")
        os.makedirs("/run/sshd", exist_ok=True)
        argv = ["/usr/sbin/sshd", "-D", "-f", os.path.join(self.dir, "sshd_config"),
                "-E", os.path.join(self.dir, "sshd.log")]
        self.proc = subprocess.Popen(wrap(argv) if wrap else argv, start_new_session=True)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise SystemExit("sshd did not start: " + open(os.path.join(self.dir, "sshd.log")).read())

    def ssh_options(self) -> list[str]:
        return ["-i", self.key, "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]

    def stop(self) -> None:
        stop_process(self.proc)


def rclone_flags(s: Sshd) -> list[str]:
    return ["--config", "/dev/null", "--sftp-host", s.address, "--sftp-port", str(s.port),
            "--sftp-user", "root", "--sftp-key-file", s.key, "--sftp-known-hosts-file",
            s.known_hosts, "--sftp-disable-hashcheck"]


def lftp(s: Sshd, script: str) -> list[str]:
    connect = f"ssh -a -x {' '.join(s.ssh_options())}"
    return ["lftp", "-e", f"set sftp:connect-program '{connect}'; {script}; bye", "-u", "root,",
            f"sftp://{s.address}:{s.port}"]


def sftp_batch(s: Sshd, work: str, line: str) -> list[str]:
    batch = os.path.join(work, "sftp.batch")
    with open(batch, "w") as f:
        f.write(line + "\n")
    return ["sftp", "-q", "-P", str(s.port)] + s.ssh_options() + ["-b", batch, f"root@{s.address}"]


def xfer(args, s: Sshd, *rest: str) -> list[str]:
    return ["env", f"HOME={s.home}", args.xfer] + [rest[0], "--no-progress", "--json"] + list(rest[1:])


def url(s: Sshd, path: str) -> str:
    return f"sftp://root@{s.address}:{s.port}{path}"


def f1_command(tool: str, way: str, s: Sshd, src: str, dst: str, args) -> list[str]:
    """`way` up: local src -> server dst; down: server src -> local dst."""
    remote = f"root@{s.address}:"
    if way == "up":
        return {
            "xfer": xfer(args, s, "cp", src, url(s, dst)),
            "scp": ["scp", "-q", "-P", str(s.port)] + s.ssh_options() + [src, remote + dst],
            "sftp": sftp_batch(s, args.work, f"put {src} {dst}"),
            "rclone": ["rclone", "copyto", src, ":sftp:" + dst] + rclone_flags(s),
            "lftp": lftp(s, f"put {src} -o {dst}"),
        }[tool]
    return {
        "xfer": xfer(args, s, "cp", url(s, src), dst),
        "scp": ["scp", "-q", "-P", str(s.port)] + s.ssh_options() + [remote + src, dst],
        "sftp": sftp_batch(s, args.work, f"get {src} {dst}"),
        "rclone": ["rclone", "copyto", "--multi-thread-streams", "8", "--multi-thread-cutoff", "16M",
                   ":sftp:" + src, dst] + rclone_flags(s),
        "lftp": lftp(s, f"pget -n 8 {src} -o {dst}"),
    }[tool]


def f2_command(tool: str, s: Sshd, src: str, dst: str, args) -> list[str]:
    return {
        "xfer": xfer(args, s, "cp", "-r", src + "/", url(s, dst) + "/"),
        "scp": ["scp", "-q", "-r", "-P", str(s.port)] + s.ssh_options() + [src, f"root@{s.address}:{dst}"],
        "sftp": sftp_batch(s, args.work, f"put -r {src} {dst}"),
        "rclone": ["rclone", "copy", "--transfers", "16", src, ":sftp:" + dst] + rclone_flags(s),
        "lftp": lftp(s, f"mirror -R --parallel=8 {src} {dst}"),
        "tar": ["sh", "-c", f"tar cf - -C {src} . | ssh -p {s.port} {' '.join(s.ssh_options())} "
                            f"root@{s.address} 'mkdir -p {dst} && tar xf - -C {dst}'"],
    }[tool]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xfer", default=os.path.join(ROOT, "build", "apps", "xfer", "xfer"))
    ap.add_argument("--work", default="/var/tmp/xfer-bench-sftp")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--file-size", type=int, default=16384)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenarios", default="F1,F2")
    ap.add_argument("--f1-tools", default="xfer,scp,sftp,rclone,lftp")
    ap.add_argument("--f2-tools", default="xfer,scp,sftp,rclone,lftp,tar")
    ap.add_argument("--f3-ways", default="down", help="F3: down, up or down,up")
    ap.add_argument("--dst", default="/dev/shm/xfer-bench-sftp")
    ap.add_argument("--netlab", default=os.path.join(ROOT, "build", "tools", "netlab", "netlab"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    data = os.path.join(args.work, "data")
    os.makedirs(data, exist_ok=True)
    size = parse_size(args.size)
    results: dict = {"size": size, "files": args.files, "file_size": args.file_size}
    scenarios = args.scenarios.split(",")
    if "F3" in scenarios:
        for way in args.f3_ways.split(","):
            results["F3" if way == "down" else f"F3_{way}"] = lab_f3(args, data, size, way)
    if not {"F1", "F2"} & set(scenarios):
        return report(results, args)
    sshd = Sshd(args.work)
    try:
        if "F1" in scenarios:
            large = os.path.join(data, "large.bin")
            make_large(large, size)
            warm(large)
            tools = [t for t in args.f1_tools.split(",") if t]
            for way in ("up", "down"):
                rows = []
                for r, order in rounds(tools, args.runs):
                    for tool in order:
                        dst_dir = os.path.join(args.dst, tool)
                        shutil.rmtree(dst_dir, ignore_errors=True)
                        os.makedirs(dst_dir)
                        dst = os.path.join(dst_dir, "large.bin")
                        if way == "up":
                            row = run(tool, f1_command(tool, way, sshd, large, dst, args))
                        else:
                            # Down from a copy on the server's tmpfs.
                            shutil.copy(large, os.path.join(dst_dir, "served.bin"))
                            row = run(tool, f1_command(tool, way, sshd,
                                                       os.path.join(dst_dir, "served.bin"), dst, args))
                        if os.path.getsize(dst) != size:
                            raise SystemExit(f"{tool} {way}: {os.path.getsize(dst)} bytes, not {size}")
                        if r == 0 and subprocess.run(["cmp", "-s", dst, large]).returncode:
                            raise SystemExit(f"{tool} {way}: the copy differs")
                        rows.append(row)
                        print(f"F1 {way} {tool}: {row['seconds']:.2f} s, "
                              f"{size / row['seconds'] / 1e6:.0f} MB/s, {row['rss_kib'] // 1024} MiB",
                              flush=True)
                        shutil.rmtree(dst_dir)
                results[f"F1_{way}"] = summarize(rows, size)
        if "F2" in scenarios:
            tree = os.path.join(data, "tree")
            make_tree(tree, args.files, args.file_size)
            warm(tree)
            tools = [t for t in args.f2_tools.split(",") if t]
            rows = []
            for r, order in rounds(tools, args.runs):
                for tool in order:
                    dst = os.path.join(args.dst, tool)
                    shutil.rmtree(dst, ignore_errors=True)
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    row = run(tool, f2_command(tool, sshd, tree, dst, args))
                    got = dst
                    if tool == "scp" or tool == "sftp":
                        # They copy the folder itself into an existing one.
                        if os.path.isdir(os.path.join(dst, "tree")):
                            got = os.path.join(dst, "tree")
                    n, b = count_files(got)
                    n -= 1 if os.path.exists(os.path.join(got, ".made")) else 0
                    b -= os.path.getsize(os.path.join(got, ".made")) if os.path.exists(os.path.join(got, ".made")) else 0
                    if n != args.files or b != args.files * args.file_size:
                        raise SystemExit(f"{tool}: {n} files, {b} bytes at {got}")
                    rows.append(row)
                    print(f"F2 {tool}: {row['seconds']:.2f} s, {args.files / row['seconds']:.0f} files/s, "
                          f"{row['rss_kib'] // 1024} MiB", flush=True)
                    shutil.rmtree(dst)
            results["F2"] = summarize(rows, args.files * args.file_size)
    finally:
        sshd.stop()
    return report(results, args)


def lab_f3(args, data: str, size: int, way: str = "down") -> dict:
    """F3: sshd in lab host b, each tool in host a, W1's link; `way` down
    (from the server) or up."""
    from wan import SCENARIOS, Lab, iperf  # noqa: E402  (the lab's helpers)
    if os.geteuid() != 0:
        raise SystemExit("F3 needs root (the network lab)")
    large = os.path.join(data, "large.bin")
    make_large(large, size)
    warm(large)
    desc, link, _ = SCENARIOS["W1"]
    lab = Lab(args.netlab, "sftpf3", link, args.work)
    sshd = None
    try:
        sshd = Sshd(args.work, address="10.99.0.2", wrap=lambda a: lab.cmd("b", a), name="sshd-lab")
        tools = [t for t in args.f1_tools.split(",") if t]
        rows, links = [], {"iperf3 -P 1": [], "iperf3 -P 8": []}
        for r, order in rounds(tools, args.runs):
            for p in (1, 8):
                links[f"iperf3 -P {p}"].append(iperf(lab, p, 10))
            for tool in order:
                dst_dir = os.path.join(args.dst, tool)
                shutil.rmtree(dst_dir, ignore_errors=True)
                os.makedirs(dst_dir)
                dst = os.path.join(dst_dir, "large.bin")
                row = run(tool, f1_command(tool, way, sshd, large, dst, args),
                          wrap=lambda a: lab.cmd("a", a))
                if os.path.getsize(dst) != size:
                    raise SystemExit(f"{tool}: {os.path.getsize(dst)} bytes, not {size}")
                rows.append(row)
                print(f"F3 {way} {tool}: {row['seconds']:.2f} s, {size * 8 / row['seconds'] / 1e6:.0f} Mbit/s",
                      flush=True)
                shutil.rmtree(dst_dir)
        out = summarize(rows, size)
        out["link"] = {k: statistics.median(v) for k, v in links.items()}
        out["link_desc"] = desc
        return out
    finally:
        if sshd:
            sshd.stop()
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
