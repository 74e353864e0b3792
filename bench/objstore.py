#!/usr/bin/env python3
"""S1, S2 and A1 (issue 13): object stores, xfer against rclone, awscli,
s3cmd and boto3, side by side, on the test servers on loopback.

  ceiling  one 1 GiB object put and got with curl (one request each), to
           the same server: what the server itself can take and give
  S1  one file (--size, 1 GiB) put to s3rver and got back
        xfer        xfer cp FILE s3://bkt/KEY (defaults: multipart, parts in parallel)
        xfer-oneput xfer cp --chunk-size 4G: the file in one PUT (not a default:
                    a diagnostic of what a single request gets from s3rver)
        rclone      rclone copyto, tuned: --s3-upload-concurrency 8
                    --s3-chunk-size 16M up, --multi-thread-streams 8 down
        awscli      aws s3 cp (Debian's awscli 2)
        s3cmd       s3cmd put / get
        boto3       upload_file / download_file with boto3's TransferConfig
  S2  a tree of --files objects (64 KiB each, 50 folders), put and got
        xfer        xfer cp -r
        rclone      rclone copy --transfers 32 --checkers 32
        awscli      aws s3 cp --recursive
        s3cmd       s3cmd put -r / get -r
        boto3       a pool of 16 threads calling upload_file / download_file
  A1  S1 and S2 on Azurite (az://): xfer against rclone's azureblob
      (--azureblob-chunk-size 16M, --azureblob-upload-concurrency 8)
  S3  S1's put over the network lab (docs/netlab.md): s3rver inside host b,
      each tool in host a, a link of 1 Gbit/s and 50 ms RTT (no loss);
      xfer, rclone and awscli as in S1, beside iperf3 over the same link

s3rver and Azurite keep their data on tmpfs (/dev/shm), the local side
reads a warm page cache and writes to /dev/shm too, so the figures are the
tools and the servers. Both test servers are single-threaded Node
programs: their ceiling, not the network, bounds every tool, and the
ceiling row says how high. Rounds alternate the order of the tools;
medians of --runs; peak RSS from /usr/bin/time. Every copy is checked
(size, and the bytes on the first round).

  bench/objstore.py --size 1G --files 10000 --runs 3 --out bench/results/objstore.json
"""
from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import hmac
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from sync import free_port, stop_process  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_http", os.path.join(HERE, "http.py"))
bench_http = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_http)
parse_size, make_large, make_tree, warm = (bench_http.parse_size, bench_http.make_large,
                                           bench_http.make_tree, bench_http.warm)
rounds, summarize, count_files, report = (bench_http.rounds, bench_http.summarize,
                                          bench_http.count_files, bench_http.report)


def run(tool: str, cmd: list[str], env: dict | None = None) -> dict:
    """bench/http.py's run(), in an environment of the bench's own."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S"] + cmd, capture_output=True, text=True,
                       env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise SystemExit(f"{tool} failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss, user, sys_ = p.stderr.strip().splitlines()[-1].split()
    return {"tool": tool, "seconds": wall, "rss_kib": int(rss), "cpu_s": float(user) + float(sys_)}

NPM = os.environ.get("XFER_NPM_DIR", "/opt/xfer-npm")
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AWS = "/usr/bin/aws"  # Debian's awscli, not another on PATH


def wait_port(port: int, proc: subprocess.Popen, seconds: float = 20) -> None:
    import socket
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


class S3rver:
    """s3rver on `address`; inside a lab host when `wrap` runs it there
    (then the port is waited for from host a, through `wrap_a`)."""

    def __init__(self, data: str, address: str = "127.0.0.1", wrap=None, wrap_a=None) -> None:
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        self.port = free_port() if wrap is None else 9000
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        argv = ["node", f"{NPM}/node_modules/s3rver/bin/s3rver.js", "-d", data, "-a", address,
                "-p", str(self.port), "--configure-bucket", "bkt", "--silent"]
        self.proc = subprocess.Popen(wrap(argv) if wrap else argv, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://{address}:{self.port}"
        if wrap is None:
            wait_port(self.port, self.proc)
            return
        end = time.monotonic() + 30
        while subprocess.run(wrap_a(["curl", "-s", "-o", "/dev/null", self.endpoint + "/bkt"]),
                             capture_output=True).returncode != 0:
            if time.monotonic() > end or self.proc.poll() is not None:
                raise SystemExit("s3rver did not start in the lab")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_process(self.proc)


class Azurite:
    def __init__(self, data: str) -> None:
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["node", f"{NPM}/node_modules/azurite/dist/src/blob/main.js", "--blobHost",
             "127.0.0.1", "--blobPort", str(self.port), "-l", data, "--skipApiVersionCheck",
             "--loose", "--disableTelemetry", "--silent"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc, 30)
        self.endpoint = f"http://127.0.0.1:{self.port}/{AZ_ACCOUNT}"
        sas = account_sas()
        subprocess.run(["curl", "-sS", "-f", "-X", "PUT", "-H", "Content-Length: 0",
                        f"{self.endpoint}/cont?restype=container&{sas}"], check=True)

    def stop(self) -> None:
        stop_process(self.proc)


def account_sas() -> str:
    se = (datetime.datetime.utcnow() + datetime.timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sts = "\n".join([AZ_ACCOUNT, "rwdlacup", "b", "sco", "", se, "", "", "2020-12-06", "", ""])
    sig = base64.b64encode(hmac.new(base64.b64decode(AZ_KEY), sts.encode(),
                                    hashlib.sha256).digest()).decode()
    return urllib.parse.urlencode([("sv", "2020-12-06"), ("ss", "b"), ("srt", "sco"),
                                   ("sp", "rwdlacup"), ("se", se), ("sig", sig)],
                                  quote_via=urllib.parse.quote, safe="")


BOTO3 = r'''
import sys, os, boto3, concurrent.futures as cf
from boto3.s3.transfer import TransferConfig
way, endpoint, local, bucket, key = sys.argv[1:6]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="S3RVER",
                  aws_secret_access_key="S3RVER", region_name="us-east-1")
cfg = TransferConfig()
if way == "up":
    s3.upload_file(local, bucket, key, Config=cfg)
elif way == "down":
    s3.download_file(bucket, key, local, Config=cfg)
elif way == "tree-up":
    files = [os.path.join(d, f) for d, _, fs in os.walk(local) for f in fs if f != ".made"]
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: s3.upload_file(p, bucket, key + os.path.relpath(p, local)), files))
else:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        keys += [o["Key"] for o in page.get("Contents", [])]
    def get(k):
        p = os.path.join(local, k[len(key):])
        os.makedirs(os.path.dirname(p), exist_ok=True)
        s3.download_file(bucket, k, p)
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(get, keys))
'''


def s3_env(home: str, endpoint: str) -> dict:
    env = dict(os.environ, HOME=home, AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER",
               AWS_ENDPOINT_URL=endpoint, AWS_DEFAULT_REGION="us-east-1")
    env.pop("AWS_CA_BUNDLE", None)  # rclone's S3 client refuses a custom one on http
    return env


def s3_command(tool: str, way: str, srv: S3rver, local: str, key: str, args, tree: bool) -> list[str]:
    url = f"s3://bkt/{key}"
    if tool in ("xfer", "xfer-oneput"):
        # xfer-oneput: a chunk (at most 4G) larger than the file, so it goes up as one PUT.
        cmd = [args.xfer, "cp", "--no-progress"] + (["-r"] if tree else [])
        cmd += ["--chunk-size", "4G"] if tool == "xfer-oneput" else []
        return cmd + ([local + ("/" if tree else ""), url] if way == "up" else [url, local + ("/" if tree else "")])
    if tool == "rclone":
        base = ["rclone", "--config", "/dev/null", "--s3-provider", "Other", "--s3-endpoint",
                srv.endpoint, "--s3-access-key-id", "S3RVER", "--s3-secret-access-key", "S3RVER",
                "--s3-force-path-style", "--s3-upload-concurrency", "8", "--s3-chunk-size", "16M",
                "--multi-thread-streams", "8", "--transfers", "32", "--checkers", "32"]
        remote = f":s3:bkt/{key}"
        verb = "copy" if tree else "copyto"
        return base + [verb] + ([local, remote] if way == "up" else [remote, local])
    if tool == "awscli":
        base = [AWS, "--endpoint-url", srv.endpoint, "s3", "cp", "--only-show-errors"]
        base += ["--recursive"] if tree else []
        return base + ([local, url] if way == "up" else [url, local])
    if tool == "s3cmd":
        host = srv.endpoint.split("//")[1]
        base = ["s3cmd", "--no-ssl", "--host", host, "--host-bucket", host, "--access_key",
                "S3RVER", "--secret_key", "S3RVER", "--no-check-md5", "--quiet", "-c", "/dev/null"]
        if way == "up":
            return base + ["put"] + (["-r", local + "/"] if tree else [local]) + [url + ("/" if tree else "")]
        return base + ["get", "--force"] + (["-r"] if tree else []) + [url + ("/" if tree else ""), local + ("/" if tree else "")]
    if tool == "boto3":
        w = way if not tree else f"tree-{way}"
        return ["/usr/bin/python3", "-c", BOTO3, w, srv.endpoint, local, "bkt", key + ("/" if tree else "")]
    raise SystemExit(f"unknown tool {tool}")


def az_command(tool: str, way: str, az: Azurite, local: str, key: str, args, tree: bool) -> list[str]:
    if tool == "xfer":
        url = f"az://cont/{key}"
        cmd = [args.xfer, "cp", "--no-progress"] + (["-r"] if tree else [])
        return cmd + ([local + ("/" if tree else ""), url] if way == "up" else [url, local + ("/" if tree else "")])
    if tool == "rclone":
        base = ["rclone", "--config", "/dev/null", "--azureblob-use-emulator", "--azureblob-account",
                AZ_ACCOUNT, "--azureblob-key", AZ_KEY, "--azureblob-endpoint", az.endpoint,
                "--azureblob-chunk-size", "16M", "--azureblob-upload-concurrency", "8",
                "--multi-thread-streams", "8", "--transfers", "32", "--checkers", "32"]
        remote = f":azureblob:cont/{key}"
        return base + ["copy" if tree else "copyto"] + ([local, remote] if way == "up" else [remote, local])
    raise SystemExit(f"unknown tool {tool} for A1")


def ceiling(put_url: str, get_url: str, large: str, dst: str, size: int, runs: int,
            headers: list[str]) -> dict:
    rows = {"put": [], "get": []}
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    for _ in range(runs):
        h = sum((["-H", x] for x in headers), [])
        rows["put"].append(run("curl", ["curl", "-sS", "-f", "-T", large] + h + [put_url]))
        rows["get"].append(run("curl", ["curl", "-sS", "-f", "-o", dst, get_url]))
        if os.path.getsize(dst) != size:
            raise SystemExit("curl ceiling: the object came back short")
        os.remove(dst)
    return {way: summarize(r, size)["curl"] for way, r in rows.items()}


def one_file(scenario: str, tools, command, env, large, size, args, results, url_of) -> None:
    for way in ("up", "down"):
        rows = []
        for r, order in rounds(tools, args.runs):
            for tool in order:
                # Every upload to a key of its own (a tool finding the
                # object there already would skip it); downloads of the
                # first round's.
                key = f"{scenario}/{tool}/r{r if way == 'up' else 0}/large.bin"
                dst = os.path.join(args.dst, tool, "large.bin")
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                row = run(tool, command(tool, way, large if way == "up" else dst, key, False), env=env)
                if way == "down":
                    if os.path.getsize(dst) != size:
                        raise SystemExit(f"{tool} {way}: {os.path.getsize(dst)} bytes, not {size}")
                    if r == 0 and subprocess.run(["cmp", "-s", dst, large]).returncode:
                        raise SystemExit(f"{tool} {way}: the copy differs")
                    os.remove(dst)
                elif r > 0:
                    # Only the first round's objects are kept (tmpfs holds them all).
                    run("rm", [args.xfer, "rm", url_of(key)], env=env)
                rows.append(row)
                print(f"{scenario} {way} {tool}: {row['seconds']:.2f} s, "
                      f"{size / row['seconds'] / 1e6:.0f} MB/s, {row['rss_kib'] // 1024} MiB",
                      flush=True)
        results[f"{scenario}_{way}"] = summarize(rows, size)


def tree(scenario: str, tools, command, env, src, args, results, url_of) -> None:
    total = args.files * args.file_size
    for way in ("up", "down"):
        rows = []
        for r, order in rounds(tools, args.runs):
            for tool in order:
                key = f"{scenario}/{tool}/r{r}"
                dst = os.path.join(args.dst, tool, "tree")
                shutil.rmtree(dst, ignore_errors=True)
                os.makedirs(dst)
                if way == "up":
                    row = run(tool, command(tool, "up", src, key, True), env=env)
                else:
                    key = f"{scenario}/{tool}/r0"  # the first round's objects
                    row = run(tool, command(tool, "down", dst, key, True), env=env)
                    n, b = count_files(dst)
                    if n != args.files or b != total:
                        raise SystemExit(f"{scenario} {tool}: {n} files, {b} bytes at {dst}")
                    shutil.rmtree(dst)
                if way == "up" and r > 0 and not args.keep_trees:
                    run("rm", [args.xfer, "rm", "-r", url_of(key)], env=env)
                rows.append(row)
                print(f"{scenario} {way} {tool}: {row['seconds']:.2f} s, "
                      f"{args.files / row['seconds']:.0f} objects/s, {row['rss_kib'] // 1024} MiB",
                      flush=True)
        results[f"{scenario}_{way}"] = summarize(rows, total)


def lab_s3(args, large: str, size: int, home: str, results: dict) -> None:
    """S3: S1's put with s3rver in lab host b and each tool in host a."""
    from wan import Lab, iperf  # noqa: E402  (the lab's helpers)
    if os.geteuid() != 0:
        raise SystemExit("S3 needs root (the network lab)")
    desc = "1 Gbit/s, 50 ms RTT"
    lab = Lab(args.netlab, "objs3", 'rate = "1gbit"\ndelay = "25ms"\n', args.work)
    srv = None
    try:
        srv = S3rver(os.path.join(args.shm, "s3rver-lab"), "10.99.0.2",
                     wrap=lambda a: lab.cmd("b", a), wrap_a=lambda a: lab.cmd("a", a))
        env = s3_env(home, srv.endpoint)
        tools = [t for t in args.lab_tools.split(",") if t]
        rows, links = [], {"iperf3 -P 1": [], "iperf3 -P 8": []}
        for r, order in rounds(tools, args.runs):
            for p in (1, 8):
                links[f"iperf3 -P {p}"].append(iperf(lab, p, 10))
            for tool in order:
                key = f"S3/{tool}/r{r}/large.bin"
                row = run(tool, lab.cmd("a", s3_command(tool, "up", srv, large, key, args, False)),
                          env=env)
                rows.append(row)
                print(f"S3 up {tool}: {row['seconds']:.2f} s, "
                      f"{size * 8 / row['seconds'] / 1e6:.0f} Mbit/s", flush=True)
                got = subprocess.run(lab.cmd("a", ["curl", "-sI", f"{srv.endpoint}/bkt/{key}"]),
                                     capture_output=True, text=True).stdout
                if f"Content-Length: {size}" not in got:
                    raise SystemExit(f"S3 {tool}: the object is not {size} bytes:\n{got}")
                run("rm", lab.cmd("a", [args.xfer, "rm", f"s3://bkt/{key}"]), env=env)
        out = summarize(rows, size)
        out["link"] = {k: statistics.median(v) for k, v in links.items()}
        out["link_desc"] = desc
        results["S3_up"] = out
    finally:
        if srv:
            srv.stop()
        lab.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xfer", default=os.path.join(ROOT, "build", "apps", "xfer", "xfer"))
    ap.add_argument("--work", default="/var/tmp/xfer-bench-obj")
    ap.add_argument("--shm", default="/dev/shm/xfer-bench-obj")
    ap.add_argument("--size", default="1G")
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--file-size", type=int, default=65536)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenarios", default="ceiling,S1,S2,A1")
    ap.add_argument("--s-tools", default="xfer,rclone,awscli,s3cmd,boto3")
    ap.add_argument("--a-tools", default="xfer,rclone")
    # Later rounds' trees are removed (tmpfs holds the servers' data); with
    # --keep-trees they stay (Azurite takes minutes to delete 10,000 blobs).
    ap.add_argument("--keep-trees", action="store_true")
    ap.add_argument("--lab-tools", default="xfer,rclone,awscli")
    ap.add_argument("--netlab", default=os.path.join(ROOT, "build", "tools", "netlab", "netlab"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    args.dst = os.path.join(args.shm, "local")
    data = os.path.join(args.shm, "data")
    os.makedirs(data, exist_ok=True)
    home = os.path.join(args.work, "home")
    os.makedirs(home, exist_ok=True)
    size = parse_size(args.size)
    large = os.path.join(data, "large.bin")
    make_large(large, size)
    warm(large)
    small = os.path.join(data, "tree")
    scenarios = args.scenarios.split(",")
    if {"S2", "A1", "A1tree"} & set(scenarios):
        make_tree(small, args.files, args.file_size)
        os.remove(os.path.join(small, ".made")) if os.path.exists(os.path.join(small, ".made")) else None
        warm(small)
    results: dict = {"size": size, "files": args.files, "file_size": args.file_size,
                     "date": time.strftime("%Y-%m-%d %H:%M")}
    if {"ceiling", "S1", "S2"} & set(scenarios):
        srv = S3rver(os.path.join(args.shm, "s3rver"))
        env = s3_env(home, srv.endpoint)
        try:
            if "ceiling" in scenarios:
                results["ceiling_s3"] = ceiling(f"{srv.endpoint}/bkt/ceiling.bin",
                                                f"{srv.endpoint}/bkt/ceiling.bin", large,
                                                os.path.join(args.dst, "ceiling.bin"), size,
                                                args.runs, [])
                print("ceiling s3rver:", json.dumps(results["ceiling_s3"]), flush=True)
            tools = [t for t in args.s_tools.split(",") if t]
            cmd = lambda tool, way, local, key, t: s3_command(tool, way, srv, local, key, args, t)
            url_of = lambda key: f"s3://bkt/{key}"
            if "S1" in scenarios:
                one_file("S1", tools, cmd, env, large, size, args, results, url_of)
            if "S2" in scenarios:
                tree("S2", tools, cmd, env, small, args, results, url_of)
        finally:
            srv.stop()
    if {"A1", "A1tree"} & set(scenarios):
        az = Azurite(os.path.join(args.shm, "azurite"))
        conn = (f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};"
                f"BlobEndpoint={az.endpoint};")
        env = dict(os.environ, HOME=home, AZURE_STORAGE_CONNECTION_STRING=conn)
        try:
            sas = account_sas()
            results["ceiling_az"] = ceiling(f"{az.endpoint}/cont/ceiling.bin?{sas}",
                                            f"{az.endpoint}/cont/ceiling.bin?{sas}", large,
                                            os.path.join(args.dst, "ceiling.bin"), size, args.runs,
                                            ["x-ms-blob-type: BlockBlob"])
            print("ceiling Azurite:", json.dumps(results["ceiling_az"]), flush=True)
            tools = [t for t in args.a_tools.split(",") if t]
            cmd = lambda tool, way, local, key, t: az_command(tool, way, az, local, key, args, t)
            url_of = lambda key: f"az://cont/{key}"
            if "A1tree" not in scenarios:
                one_file("A1", tools, cmd, env, large, size, args, results, url_of)
            tree("A1tree", tools, cmd, env, small, args, results, url_of)
        finally:
            az.stop()
    if "S3" in scenarios:
        lab_s3(args, large, size, home, results)
    shutil.rmtree(args.dst, ignore_errors=True)
    return report(results, args)


if __name__ == "__main__":
    sys.exit(main())
