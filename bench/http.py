#!/usr/bin/env python3
"""H1, H2 and H3 (issue 12): downloads from nginx, xfer against curl, wget,
aria2c and rclone, side by side.

  H1  one file (--size, 1 GiB) from nginx to the local disk
        xfer        xfer cp URL DST
        curl        curl -o DST URL
        wget        wget -O DST URL
        aria2c      aria2c -x16 -s16 -k1M (16 connections, ranged)
        rclone      rclone copyurl URL DST --multi-thread-streams 16
  H3  a tree of --files files (4 KiB each, 50 folders) from nginx's
      autoindex pages (HTML), recursively
        xfer        xfer cp -r URL/ DST/
        wget        wget -r -np -nH -q (one connection, as wget does)
        rclone      rclone copy --http-url URL :http: DST (--transfers 16, and
                    its default HEAD per file)
        aria2c      aria2c -i LIST -j16 (the list of URLs made beforehand, as
                    a user would with a crawler: aria2c cannot crawl)

  H2  H1's file over the network lab (docs/netlab.md): nginx inside host b,
      the tools in host a, a link of 1 Gbit/s, 50 ms RTT, 0.1% loss (W1 of
      bench/wan.py); iperf3 -P 1 and -P 16 on the same link in each round
      give what the link carries. Needs root.

nginx serves the data folder with master_process on and 2 workers (the
machine's two cores), sendfile on, access_log off. The page cache holds the
data (read once before), so the figures are about the client and the
protocol. Tools run in pairs of rounds, in a new order each round (A B C,
C B A, ...), every run to a fresh destination that is removed after;
medians of --runs. Peak RSS from /usr/bin/time.

  bench/http.py --size 1G --files 5000 --runs 5 --out bench/results/http.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from sync import free_port, stop_process  # noqa: E402


class Nginx:
    """nginx serving `root` with the HTML autoindex, on a loopback port, or
    on `address` inside a lab host when `wrap` runs it there."""

    def __init__(self, work: str, root: str, workers: int = 2, address: str = "127.0.0.1",
                 wrap=None, name: str = "nginx") -> None:
        self.dir = os.path.join(work, name)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        self.address = address
        self.port = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write(f"daemon off;\nworker_processes {workers};\npid {d}/nginx.pid;\n"
                    f"error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n"
                    f"http {{\n access_log off;\n include /etc/nginx/mime.types;\n"
                    f" default_type application/octet-stream;\n sendfile on;\n tcp_nopush on;\n"
                    f" keepalive_requests 1000000;\n"
                    f" client_body_temp_path {d}/tmp/body;\n proxy_temp_path {d}/tmp/proxy;\n"
                    f" fastcgi_temp_path {d}/tmp/fcgi;\n uwsgi_temp_path {d}/tmp/uwsgi;\n"
                    f" scgi_temp_path {d}/tmp/scgi;\n"
                    f" server {{ listen {address}:{self.port}; root {root}; autoindex on; }}\n}}\n")
        argv = ["/usr/sbin/nginx", "-c", conf, "-p", d + "/", "-e", f"{d}/error.log"]
        self.proc = subprocess.Popen(wrap(argv) if wrap else argv, start_new_session=True)
        for _ in range(200):
            if os.path.exists(f"{d}/nginx.pid"):
                time.sleep(0.2)
                return
            time.sleep(0.05)
        raise SystemExit("nginx did not start: " + open(f"{d}/error.log").read())

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}/{path}"

    def stop(self) -> None:
        """SIGTERM to the master (its pid file: inside a lab host, self.proc
        is `netlab exec`), then to what we started."""
        try:
            with open(os.path.join(self.dir, "nginx.pid")) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        stop_process(self.proc)


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def make_large(path: str, size: int) -> None:
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    with open(path, "wb") as f:
        left = size
        block = os.urandom(1 << 20)
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            block = block[1:] + block[:1]  # not one repeated MiB
            left -= n


def make_tree(root: str, files: int, size: int) -> list[str]:
    names = [f"d{i % 50:02d}/f{i:05d}.bin" for i in range(files)]
    marker = os.path.join(root, ".made")
    if not os.path.exists(marker) or open(marker).read() != f"{files} {size}":
        shutil.rmtree(root, ignore_errors=True)
        for rel in names:
            p = os.path.join(root, rel)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(os.urandom(size))
        with open(marker, "w") as f:
            f.write(f"{files} {size}")
    return names


def warm(path: str) -> None:
    subprocess.run(["cat"], stdin=open(path, "rb"), stdout=subprocess.DEVNULL) if os.path.isfile(path) \
        else subprocess.run(f"find '{path}' -type f -exec cat {{}} + > /dev/null", shell=True)


def h1_command(tool: str, url: str, dst: str, xfer: str) -> list[str]:
    return {
        "xfer": [xfer, "cp", "--no-progress", "--json", url, dst],
        "curl": ["curl", "-sS", "-f", "-o", dst, url],
        "wget": ["wget", "-q", "-O", dst, url],
        "aria2c": ["aria2c", "-q", "-x16", "-s16", "-k1M", "--file-allocation=none",
                   "--allow-overwrite=true", "-d", os.path.dirname(dst), "-o", os.path.basename(dst),
                   url],
        "rclone": ["rclone", "--config", "/dev/null", "copyurl", "--multi-thread-streams", "16", url, dst],
    }[tool]


def h3_command(tool: str, url: str, dst: str, xfer: str, list_file: str) -> list[str]:
    return {
        "xfer": [xfer, "cp", "-r", "--no-progress", "--json", url, dst + "/"],
        "wget": ["wget", "-q", "-r", "-np", "-nH", "-R", "index.html*", "-P", dst, url],
        "rclone": ["rclone", "--config", "/dev/null", "copy", "--transfers", "16", "--http-url", url,
                   ":http:", dst],
        "aria2c": ["aria2c", "-q", "-j16", "-x1", "--file-allocation=none", "-i", list_file, "-d", dst],
    }[tool]


def run(tool: str, cmd: list[str], wrap=None) -> dict:
    t0 = time.monotonic()
    argv = ["/usr/bin/time", "-f", "%M %U %S"] + cmd
    p = subprocess.run(wrap(argv) if wrap else argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{tool} failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss, user, sys_ = p.stderr.strip().splitlines()[-1].split()
    return {"tool": tool, "seconds": wall, "rss_kib": int(rss), "cpu_s": float(user) + float(sys_)}


def download(tool: str, url: str, args, size: int, wrap=None) -> tuple[dict, str]:
    """H1 and H2: `tool` fetches `url` into a fresh folder of its own;
    the run's row and the copy's path (its size checked)."""
    dst_dir = os.path.join(args.dst, tool)
    shutil.rmtree(dst_dir, ignore_errors=True)
    os.makedirs(dst_dir)
    dst = os.path.join(dst_dir, "large.bin")
    row = run(tool, h1_command(tool, url, dst, args.xfer), wrap=wrap)
    if os.path.getsize(dst) != size:
        raise SystemExit(f"{tool}: {os.path.getsize(dst)} bytes, not {size}")
    return row, dst


def count_files(root: str) -> tuple[int, int]:
    n = b = 0
    for d, _, fs in os.walk(root):
        for f in fs:
            n += 1
            b += os.path.getsize(os.path.join(d, f))
    return n, b


def rounds(tools: list[str], runs: int):
    for r in range(runs):
        yield r, (tools if r % 2 == 0 else list(reversed(tools)))


def summarize(rows: list[dict], size: int) -> dict:
    out = {}
    for tool in sorted({r["tool"] for r in rows}):
        mine = [r for r in rows if r["tool"] == tool]
        med = statistics.median(r["seconds"] for r in mine)
        out[tool] = {"median_s": med, "mb_s": size / med / 1e6,
                     "rss_mib": max(r["rss_kib"] for r in mine) / 1024,
                     "cpu_s": statistics.median(r["cpu_s"] for r in mine),
                     "runs": [round(r["seconds"], 3) for r in mine]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xfer", default=os.path.join(ROOT, "build", "apps", "xfer", "xfer"))
    ap.add_argument("--work", default="/var/tmp/xfer-bench-http")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--file-size", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenarios", default="H1,H3")
    ap.add_argument("--h1-tools", default="xfer,curl,wget,aria2c,rclone")
    ap.add_argument("--h3-tools", default="xfer,wget,rclone,aria2c")
    ap.add_argument("--dst", default="/dev/shm/xfer-bench-http",
                    help="where the copies go (tmpfs by default: this VM's disk is the noisiest part)")
    ap.add_argument("--netlab", default=os.path.join(ROOT, "build", "tools", "netlab", "netlab"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    data = os.path.join(args.work, "data")
    os.makedirs(data, exist_ok=True)
    size = parse_size(args.size)
    results: dict = {"size": size, "files": args.files, "file_size": args.file_size}
    scenarios = args.scenarios.split(",")
    if "H2" in scenarios:
        results["H2"] = lab_h2(args, data, size)
    if not {"H1", "H3"} & set(scenarios):
        return report(results, args)
    nginx = Nginx(args.work, data)
    try:
        if "H1" in scenarios:
            make_large(os.path.join(data, "large.bin"), size)
            warm(os.path.join(data, "large.bin"))
            tools = [t for t in args.h1_tools.split(",") if t]
            rows = []
            for r, order in rounds(tools, args.runs):
                for tool in order:
                    row, dst = download(tool, nginx.url("large.bin"), args, size)
                    if r == 0 and subprocess.run(["cmp", "-s", dst, os.path.join(data, "large.bin")]).returncode:
                        raise SystemExit(f"{tool}: the copy differs")
                    rows.append(row)
                    print(f"H1 {tool}: {row['seconds']:.2f} s, {size / row['seconds'] / 1e6:.0f} MB/s, "
                          f"{row['rss_kib'] // 1024} MiB", flush=True)
                    shutil.rmtree(os.path.dirname(dst))
            results["H1"] = summarize(rows, size)
        if "H3" in scenarios:
            tree = os.path.join(data, "tree")
            names = make_tree(tree, args.files, args.file_size)
            warm(tree)
            list_file = os.path.join(args.work, "aria2.list")
            with open(list_file, "w") as f:
                for rel in names:
                    f.write(f"{nginx.url('tree/' + rel)}\n  out={rel}\n")
            tools = [t for t in args.h3_tools.split(",") if t]
            rows = []
            for r, order in rounds(tools, args.runs):
                for tool in order:
                    dst = os.path.join(args.dst, tool)
                    shutil.rmtree(dst, ignore_errors=True)
                    os.makedirs(dst)
                    row = run(tool, h3_command(tool, nginx.url("tree/"), dst, args.xfer, list_file))
                    got = dst if tool != "wget" else os.path.join(dst, "tree")
                    n, b = count_files(got)
                    if n != args.files or b != args.files * args.file_size:
                        raise SystemExit(f"{tool}: {n} files, {b} bytes at {got}")
                    rows.append(row)
                    print(f"H3 {tool}: {row['seconds']:.2f} s, {args.files / row['seconds']:.0f} files/s, "
                          f"{row['rss_kib'] // 1024} MiB", flush=True)
                    shutil.rmtree(dst)
            results["H3"] = summarize(rows, args.files * args.file_size)
    finally:
        nginx.stop()
    return report(results, args)


def report(results: dict, args) -> int:
    print(json.dumps(results, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def lab_h2(args, data: str, size: int) -> dict:
    """H2: nginx in lab host b, each tool in host a, W1's link."""
    from wan import SCENARIOS, Lab, iperf  # noqa: E402  (the lab's helpers)
    if os.geteuid() != 0:
        raise SystemExit("H2 needs root (the network lab)")
    make_large(os.path.join(data, "large.bin"), size)
    warm(os.path.join(data, "large.bin"))
    desc, link, _ = SCENARIOS["W1"]
    lab = Lab(args.netlab, "httph2", link, args.work)
    nginx = None
    try:
        nginx = Nginx(args.work, data, address="10.99.0.2", wrap=lambda a: lab.cmd("b", a), name="nginx-lab")
        tools = [t for t in args.h1_tools.split(",") if t]
        rows, links = [], {"iperf3 -P 1": [], "iperf3 -P 16": []}
        for r, order in rounds(tools, args.runs):
            for p in (1, 16):
                links[f"iperf3 -P {p}"].append(iperf(lab, p, 10))
            for tool in order:
                row, dst = download(tool, nginx.url("large.bin"), args, size,
                                    wrap=lambda a: lab.cmd("a", a))
                rows.append(row)
                print(f"H2 {tool}: {row['seconds']:.2f} s, {size * 8 / row['seconds'] / 1e6:.0f} Mbit/s",
                      flush=True)
                shutil.rmtree(os.path.dirname(dst))
        out = summarize(rows, size)
        out["link"] = {k: statistics.median(v) for k, v in links.items()}
        out["link_desc"] = desc
        return out
    finally:
        if nginx:
            nginx.stop()
        lab.down()


if __name__ == "__main__":
    sys.exit(main())
