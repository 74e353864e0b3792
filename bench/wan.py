#!/usr/bin/env python3
"""Wide-area scenarios on the network lab (docs/netlab.md), side by side.

Each scenario is a two-host lab (a: client, b: server) with one emulated
link, or two (W3: two NICs each side, each its own subnet; xferd listens
on both and the client uses both paths, compared with an xferd that offers
one). In one lab the script runs, alternating (A B A B ...): iperf3 with 1
and with 4 streams (the TCP ceiling), and xfer uploads of one file to xferd
in b — with the binaries under test and, when given, a baseline pair
(e.g. an older build) for a before/after. It prints medians and ratios as
a markdown table and writes the raw runs as JSON.

The first module of the split of bench.py (one module per scenario group).
Needs root, the lab's tools (scripts/setup.sh) and a build.

  sudo bench/wan.py --scenarios W1,W5 --runs 3 \
       --baseline-xfer /tmp/old/build/apps/xfer/xfer \
       --baseline-xferd /tmp/old/build/apps/xferd/xferd
  sudo bench/wan.py --scenarios W1 --runs 2 --peers scp,rsync   # the ssh peers
  sudo bench/wan.py --scenarios W3 --runs 3                     # two paths
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(os.path.dirname(HERE), "build")

# name: (description, link settings in the topology's TOML; a second link
# between the same hosts when the scenario has two paths)
SCENARIOS = {
    "W0": ("LAN: 2 Gbit/s, 0.5 ms RTT", 'rate = "2gbit"\ndelay = "0.25ms"\n', None),
    "W1": ("continental: 1 Gbit/s, 50 ms RTT, 0.1% loss",
           'rate = "1gbit"\ndelay = "25ms"\nloss = "0.1%"\n', None),
    "W3": ("two paths: 2 x 500 Mbit/s, 20 ms RTT", 'rate = "500mbit"\ndelay = "10ms"\n',
           'rate = "500mbit"\ndelay = "10ms"\n'),
    "W5": ("long fat pipe: 1 Gbit/s, 150 ms RTT", 'rate = "1gbit"\ndelay = "75ms"\n', None),
}
SECRET = "0123456789abcdef0123456789abcdef"


def sh(argv: list[str], timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return r


def machine_busy() -> float:
    with open("/proc/stat") as f:
        v = [float(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # all but idle and iowait, in ticks


def stop_process(proc: subprocess.Popen, log) -> None:
    """SIGTERM, 10 s, then SIGKILL; the process is ours (by its Popen)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


class Lab:
    def __init__(self, netlab: str, name: str, link: str, workdir: str, link2: str | None = None,
                 host_cc: str = "") -> None:
        self.netlab, self.name = netlab, name
        topo = os.path.join(workdir, f"{name}.toml")
        # host_cc: the hosts' default congestion control (what programs
        # that do not choose get: scp, rsync, iperf3 without -C).
        host = f'sysctl = {{ "net.ipv4.tcp_congestion_control" = "{host_cc}" }}\n' if host_cc else ""
        with open(topo, "w") as f:
            f.write(f'[hosts.a]\n{host}[hosts.b]\n{host}[links.ab]\nhosts = ["a", "b"]\n' + link)
            if link2:
                f.write('[links.ab2]\nhosts = ["a", "b"]\n' + link2)
        sh([netlab, "down", name], check=False)
        sh([netlab, "up", topo, "--name", name, "--ttl", "3600s"])

    def cmd(self, host: str, argv: list[str]) -> list[str]:
        return [self.netlab, "exec", "--lab", self.name, host, "--"] + argv

    def cpu(self) -> float:
        return json.loads(sh([self.netlab, "stats", "--lab", self.name]).stdout)["cpu_seconds"]

    def down(self) -> None:
        sh([self.netlab, "down", self.name], check=False)


class Server:
    """xferd inside host b, on its own port and folder."""

    def __init__(self, lab: Lab, xferd: str, port: int, workdir: str, paths: int = 1) -> None:
        self.root = os.path.join(workdir, f"root{port}")
        os.makedirs(self.root, exist_ok=True)
        state = os.path.join(workdir, f"state{port}")
        os.makedirs(state, exist_ok=True)
        self.config = os.path.join(workdir, f"xferd{port}.toml")
        with open(self.config, "w") as f:
            data = ", ".join(f'"10.99.{i}.2:0"' for i in range(paths))
            f.write(f'[server]\nlisten = "10.99.0.2:{port}"\ndata_listen = [{data}]\n'
                    f'root = "{self.root}"\nstate_dir = "{state}"\n'
                    f'[auth]\nsecret = "{SECRET}"\nrequired = true\n')
        self.log = open(os.path.join(workdir, f"xferd{port}.log"), "w")
        self.proc = subprocess.Popen(lab.cmd("b", [xferd, "--config", self.config]),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"xfer://10.99.0.2:{port}"
        for _ in range(100):
            with open(self.log.name) as f:
                if "listening" in f.read():
                    break
            time.sleep(0.05)
        self.token = sh([xferd, "token", "--config", self.config, "--write", "--ttl", "7200"]).stdout.strip()

    def stop(self) -> None:
        stop_process(self.proc, self.log)


class Sshd:
    """OpenSSH's sshd inside host b on its own port, with a key of its own
    and one client key (for the scp and rsync peers)."""

    def __init__(self, lab: Lab, workdir: str, port: int = 2222) -> None:
        d = os.path.join(workdir, "ssh")
        os.makedirs(d, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        self.key = os.path.join(d, "client")
        host_key = os.path.join(d, "host")
        for k in (self.key, host_key):
            if not os.path.exists(k):
                sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k])
        auth = os.path.join(d, "authorized_keys")
        with open(self.key + ".pub") as src, open(auth, "w") as dst:
            dst.write(src.read())
        config = os.path.join(d, "sshd_config")
        with open(config, "w") as f:
            f.write(f"Port {port}\nListenAddress 10.99.0.2\nHostKey {host_key}\n"
                    f"AuthorizedKeysFile {auth}\nPermitRootLogin prohibit-password\n"
                    f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                    f"StrictModes no\nPidFile {d}/sshd.pid\n"
                    # scp speaks SFTP by default since OpenSSH 9.0.
                    f"Subsystem sftp /usr/lib/openssh/sftp-server\n")
        self.log = open(os.path.join(d, "sshd.log"), "w")
        self.proc = subprocess.Popen(lab.cmd("b", ["/usr/sbin/sshd", "-D", "-e", "-f", config]),
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.port = port
        time.sleep(0.5)

    def ssh_args(self) -> list[str]:
        return ["-i", self.key, "-o", "StrictHostKeyChecking=no", "-o",
                "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"]

    def stop(self) -> None:
        stop_process(self.proc, self.log)


def peer_run(lab: Lab, tool: str, sshd: Sshd, src: str, dst_dir: str) -> dict:
    """scp or rsync (over ssh) of `src` into `dst_dir` in host b."""
    dst = os.path.join(dst_dir, "peer.bin")
    if os.path.exists(dst):
        os.unlink(dst)
    if tool == "scp":
        argv = ["scp", "-q", "-P", str(sshd.port)] + sshd.ssh_args() + [src, f"root@10.99.0.2:{dst}"]
    else:
        ssh = " ".join(["ssh", "-p", str(sshd.port)] + sshd.ssh_args())
        argv = ["rsync", "-a", "-e", ssh, src, f"root@10.99.0.2:{dst}"]
    c0, cpu0, t0 = machine_busy(), lab.cpu(), time.monotonic()
    r = sh(lab.cmd("a", argv), timeout=3600, check=False)
    secs = time.monotonic() - t0
    busy = (machine_busy() - c0) / os.sysconf("SC_CLK_TCK") / secs / os.cpu_count()
    ok = r.returncode == 0 and sh(["cmp", "-s", src, dst], check=False).returncode == 0
    return {"ok": ok, "seconds": secs, "mbit": os.path.getsize(src) * 8 / secs / 1e6, "busy": busy,
            "emulator_cpu": lab.cpu() - cpu0, "stderr": r.stderr[-500:]}


_iperf_port = 5201


def iperf(lab: Lab, streams: int, seconds: int) -> float:
    # A one-shot server on a port of its own each time: the last one may
    # still be finishing on its port.
    global _iperf_port
    _iperf_port += 1
    port = str(_iperf_port)
    sh(lab.cmd("b", ["iperf3", "-s", "-1", "-D", "-B", "10.99.0.2", "-p", port]))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = sh(lab.cmd("a", ["iperf3", "-c", "10.99.0.2", "-p", port, "-P", str(streams),
                             "-t", str(seconds), "-J"]), check=False)
        try:
            j = json.loads(r.stdout)
        except json.JSONDecodeError:
            j = {}
        if "end" in j and "sum_received" in j["end"]:
            return j["end"]["sum_received"]["bits_per_second"] / 1e6
        time.sleep(0.2)
    raise RuntimeError(f"iperf3 did not run: {r.stdout[-500:]} {r.stderr[-500:]}")


def xfer_run(lab: Lab, xfer: str, srv: Server, src: str, extra: list[str]) -> dict:
    dst = os.path.join(srv.root, "dst.bin")
    if os.path.exists(dst):
        os.unlink(dst)
    c0, cpu0, t0 = machine_busy(), lab.cpu(), time.monotonic()
    r = sh(lab.cmd("a", [xfer, "--token", srv.token] + extra + ["cp", src, srv.url + "/dst.bin"]),
           timeout=1800, check=False)
    secs = time.monotonic() - t0
    busy = (machine_busy() - c0) / os.sysconf("SC_CLK_TCK") / secs / os.cpu_count()
    ok = r.returncode == 0 and sh(["cmp", "-s", src, dst], check=False).returncode == 0
    size = os.path.getsize(src)
    return {"ok": ok, "seconds": secs, "mbit": size * 8 / secs / 1e6, "busy": busy,
            "emulator_cpu": lab.cpu() - cpu0, "stderr": r.stderr[-500:]}


def add_lab_args(ap: argparse.ArgumentParser) -> None:
    """The binaries and the work folder, the same for every wan*.py module."""
    ap.add_argument("--netlab", default=os.path.join(BUILD, "tools/netlab/netlab"))
    ap.add_argument("--xfer", default=os.path.join(BUILD, "apps/xfer/xfer"))
    ap.add_argument("--xferd", default=os.path.join(BUILD, "apps/xferd/xferd"))
    ap.add_argument("--workdir", default="/var/tmp/xfer-wan")


def prepare(args: argparse.Namespace, program: str) -> str | None:
    """Checks for root, makes the work folder and a random source file of
    args.size_mib MiB (kept between runs); its path, or None without root."""
    if os.geteuid() != 0:
        print(f"{program}: the lab needs root", file=sys.stderr)
        return None
    os.makedirs(args.workdir, exist_ok=True)
    src = os.path.join(args.workdir, f"src{args.size_mib}.bin")
    if not os.path.exists(src) or os.path.getsize(src) != args.size_mib << 20:
        with open(src, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
    return src


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="W1,W5")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--iperf-seconds", type=int, default=10)
    add_lab_args(ap)
    ap.add_argument("--baseline-xfer", help="the 'before' client (with --baseline-xferd)")
    ap.add_argument("--baseline-xferd")
    ap.add_argument("--xfer-args", default="", help="global flags for every xfer run")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                    help='one more xfer run per round with extra global flags, e.g. "cubic=--cc cubic"')
    ap.add_argument("--host-cc", default="", help="the hosts' default congestion control "
                    "(cubic: a stock Debian host; default: this machine's)")
    ap.add_argument("--peers", default="", help="scp,rsync: also run these over ssh to sshd in b")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "wan.json"))
    args = ap.parse_args()
    src = prepare(args, "wan.py")
    if src is None:
        return 2
    # (name, client, server, extra flags), run in this order every round.
    tools = [("xfer", args.xfer, args.xferd, [])]
    if args.baseline_xfer:
        tools.insert(0, ("baseline", args.baseline_xfer, args.baseline_xferd or args.xferd, []))
    for v in args.variant:
        name, _, flags = v.partition("=")
        tools.append((name, args.xfer, args.xferd, flags.split()))
    extra = args.xfer_args.split()
    results = {}
    for name in args.scenarios.split(","):
        desc, link, link2 = SCENARIOS[name]
        print(f"== {name}: {desc}", flush=True)
        lab = Lab(args.netlab, "wan" + name.lower(), link, args.workdir, link2, args.host_cc)
        servers = {}
        peers = [p for p in args.peers.split(",") if p]
        sshd = Sshd(lab, args.workdir) if peers else None
        # Two-path scenarios add xfer against a server that offers one path.
        scenario_tools = tools + ([("xfer 1 path", args.xfer, args.xferd, [])] if link2 else [])
        try:
            for i, (tool, _, xferd, _) in enumerate(scenario_tools):
                paths = 2 if link2 and tool != "xfer 1 path" and tool != "baseline" else 1
                servers[tool] = Server(lab, xferd, 7400 + i, args.workdir, paths)
            rows = {"iperf3 -P 1": [], "iperf3 -P 4": []}
            runs = {t[0]: [] for t in scenario_tools}
            runs.update({p: [] for p in peers})
            for r in range(args.runs):
                for p in (1, 4):
                    mbit = iperf(lab, p, args.iperf_seconds)
                    rows[f"iperf3 -P {p}"].append(mbit)
                    print(f"  run {r + 1} iperf3 -P {p}: {mbit:.0f} Mbit/s", flush=True)
                for tool, xfer, _, flags in scenario_tools + [(p, "", "", []) for p in peers]:  # A B A B
                    if tool in peers:
                        one = peer_run(lab, tool, sshd, src, servers["xfer"].root)
                    else:
                        one = xfer_run(lab, xfer, servers[tool], src, extra + flags)
                    runs[tool].append(one)
                    print(f"  run {r + 1} {tool}: {one['mbit']:.0f} Mbit/s in {one['seconds']:.1f} s, "
                          f"{'ok' if one['ok'] else 'FAILED ' + one['stderr']}, machine {one['busy']:.0%} busy, "
                          f"emulator {one['emulator_cpu']:.1f} CPU-s", flush=True)
            results[name] = {"description": desc, "iperf3": rows, "xfer": runs}
        finally:
            for s in servers.values():
                s.stop()
            if sshd:
                sshd.stop()
            lab.down()
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(results, f, indent=1)
    for name, res in results.items():
        names = list(res["xfer"])
        print(f"\n| scenario | iperf3 1 stream | iperf3 4 streams | " + " | ".join(names) +
              " | xfer / iperf3 4 |")
        print("|---|---|---|" + "---|" * len(names) + "---|")
        med = {k: statistics.median(v) for k, v in res["iperf3"].items()}
        xm = {t: statistics.median(r["mbit"] for r in runs) for t, runs in res["xfer"].items()}
        cells = [f"{xm[t]:.0f}" + ("" if all(r["ok"] for r in res["xfer"][t]) else " (FAILED)")
                 for t in names]
        print(f"| {name} {res['description']} | {med['iperf3 -P 1']:.0f} | {med['iperf3 -P 4']:.0f} | " +
              " | ".join(cells) + f" | {xm['xfer'] / med['iperf3 -P 4']:.2f} |")
        for peer in ("scp", "rsync"):
            if peer in xm and xm[peer] > 0 and all(r["ok"] for r in res["xfer"][peer]):
                print(f"\n{name}: xfer / {peer} = {xm['xfer'] / xm[peer]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
