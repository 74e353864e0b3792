"""Network scenarios of the xfer benchmark (issue 3): net-large, net-large-enc, net-small, net-3p.

Owns: the servers the harness starts for every run (ManagedServer: sshd,
iperf3, xferd; _LIVE_SERVERS, stopped at exit), the per-invocation scratch
with keys and configs (NetEnv), the ssh/xfer tool helpers and the plans of
the net-* scenarios. xferd-mem (mem.py) reuses the helpers.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Callable

from .harness import (EXCLUDE_PIDS, GNU_TIME, Ctx, ScenarioPlan, ServerError, ToolSpec, _run_quiet, _tail,
                      ensure_large_dataset, ensure_small_dataset, human_bytes, log, make_tree_verifier, rm_rf,
                      verify_large)


# --------------------------------------------------------------------------
# network scenarios (issue 3): both ends on this machine, over loopback,
# memory to memory (/dev/shm). Every timed run gets FRESH servers, started
# untimed before it and stopped after its verification, so the server-side
# peak memory is per run:
#   sshd   /usr/sbin/sshd -D -e -f CONFIG, own port, host key, authorized_keys
#   iperf3 iperf3 -s -1 (one test, then it exits)
#   xferd  xferd --config FILE (TOML written here), ready line on stdout
# Each one is started under GNU time (when installed) in its own session; the
# harness knows the server's own PID (child of GNU time) and signals only that
# PID. ru_maxrss from GNU time = max over the server and every descendant it
# reaped (sshd: the per-connection processes, scp/sftp-server/rsync/tar on
# the server side). xferd's figure is VmHWM of /proc/PID/status, read just
# before SIGTERM.

NET_HOST = "127.0.0.1"
XFERD_READY_RE = re.compile(r"xferd: listening control=(\S+) data=(\S+)")
XFERD_READY_TIMEOUT = 10.0
SERVER_STOP_TIMEOUT = 10.0
_LIVE_SERVERS: list["ManagedServer"] = []


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((NET_HOST, 0))
        return s.getsockname()[1]


def port_listening(port: int, host_hex: str = "0100007F") -> bool:
    """True if a TCP socket listens on 127.0.0.1:port (or 0.0.0.0:port), from /proc/net/tcp."""
    want = f"{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                addr, _, p = parts[1].partition(":")
                if p == want and parts[3] == "0A" and addr in (host_hex, "00000000"):
                    return True
    except (OSError, StopIteration, IndexError):
        pass
    return False


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        pass
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    data = f.read()
                if int(data[data.rfind(")") + 2:].split()[1]) == pid:
                    out.append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return int(data[data.rfind(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def proc_status_kib(pid: int, key: str = "VmHWM") -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class ManagedServer:
    """One server process for one run. start() waits until ready(self) is true (it may
    fill self.vars); stop() never raises and returns the figures."""

    def __init__(self, name: str, argv: list[str], log_path: str, ready: Callable[["ManagedServer"], bool],
                 ready_timeout: float = 10.0, vars: dict | None = None, rss_mode: str = "tree",
                 drain: bool = False, after_ready: Callable[["ManagedServer"], None] | None = None) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        self.ready, self.ready_timeout, self.after_ready = ready, ready_timeout, after_ready
        self.vars: dict[str, str] = dict(vars or {})
        self.rss_mode = rss_mode      # "tree": GNU time ru_maxrss; "vmhwm": the server's own VmHWM
        self.drain = drain            # wait for the server's children to exit before stopping it
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None   # the server itself (child of GNU time)
        self.rss_file = log_path + ".rss"
        self._logf = None
        self.result: dict | None = None

    def _tail(self) -> str:
        return _tail(self.log_path, 12).strip()

    def _is_ours(self) -> bool:
        if self.pid is None or self.proc is None:
            return False
        if self.pid == self.proc.pid:
            return self.proc.poll() is None
        return _ppid(self.pid) == self.proc.pid

    def start(self) -> "ManagedServer":
        self._logf = open(self.log_path, "wb")
        self._logf.write(("$ " + shlex.join(self.argv) + "\n").encode())
        self._logf.flush()
        full = [GNU_TIME, "-f", "%M", "-o", self.rss_file, *self.argv] if GNU_TIME else self.argv
        self.proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=self._logf, stderr=subprocess.STDOUT,
                                     close_fds=True, start_new_session=True)
        _LIVE_SERVERS.append(self)
        EXCLUDE_PIDS.add(self.proc.pid)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.pid is None:
                if GNU_TIME:
                    kids = children_of(self.proc.pid)
                    self.pid = kids[0] if kids else None
                else:
                    self.pid = self.proc.pid
                if self.pid:
                    EXCLUDE_PIDS.add(self.pid)
            if self.pid and self.ready(self):
                break
            if self.proc.poll() is not None:
                raise ServerError(f"{self.name} exited (rc {self.proc.returncode}) before it was ready; "
                                  f"log {self.log_path}:\n{self._tail()}")
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} not ready within {self.ready_timeout:g} s; "
                                  f"log {self.log_path}:\n{self._tail()}")
            time.sleep(0.02)
        if self.after_ready:
            self.after_ready(self)
        return self

    def peak_kib(self) -> int | None:
        r = self.result or {}
        return r.get("vmhwm_kib") if self.rss_mode == "vmhwm" else r.get("maxrss_kib")

    def stop(self) -> dict:
        if self.result is not None:
            return self.result
        res: dict = {"name": self.name, "pid": self.pid, "argv": self.argv, "log_file": self.log_path}
        self.result = res
        p = self.proc
        if p is None:
            return res
        try:
            if self.drain and self._is_ours():
                end = time.monotonic() + 5.0
                while children_of(self.pid) and time.monotonic() < end:
                    time.sleep(0.02)
            if self._is_ours():
                res["vmhwm_kib"] = proc_status_kib(self.pid, "VmHWM")
                res["vmrss_kib"] = proc_status_kib(self.pid, "VmRSS")
            if p.poll() is None:
                target = self.pid if self._is_ours() else p.pid
                try:
                    os.kill(target, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(SERVER_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    log(f"{self.name} (pid {target}) did not stop within {SERVER_STOP_TIMEOUT:g} s of SIGTERM; SIGKILL")
                    res["killed"] = True
                    for pid in {target, p.pid}:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    p.wait()
            res["exit_code"] = p.returncode
            if GNU_TIME:
                try:
                    with open(self.rss_file) as f:
                        res["maxrss_kib"] = int(f.read().split()[-1])
                except (OSError, ValueError, IndexError):
                    pass
        except BaseException as e:   # never leave it running
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if not isinstance(e, Exception):
                raise
            res["error"] = str(e)
        finally:
            try:
                p.wait(5)
            except (subprocess.TimeoutExpired, ChildProcessError):
                pass
            for f in (self.rss_file,):
                try:
                    os.unlink(f)
                except OSError:
                    pass
            if self._logf:
                self._logf.close()
            EXCLUDE_PIDS.discard(p.pid)
            if self.pid:
                EXCLUDE_PIDS.discard(self.pid)
            if self in _LIVE_SERVERS:
                _LIVE_SERVERS.remove(self)
        res["peak_kib"] = self.peak_kib()
        return res


@atexit.register
def _stop_all_servers() -> None:
    for srv in list(_LIVE_SERVERS):
        srv.stop()


class NetEnv:
    """Per-harness-run scratch for the network scenarios: ssh keys, sshd/xferd configs and
    the server factories. Lives in NETDIR/tmp/run-PID-*; deleted at exit."""

    def __init__(self, netdir: str, xferd: str) -> None:
        self.netdir, self.xferd_bin = netdir, xferd
        os.makedirs(os.path.join(netdir, "tmp"), exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=os.path.join(netdir, "tmp"))
        self.secret = secrets.token_hex(32)
        self.sshd_bin = shutil.which("sshd") or shutil.which("sshd", path="/usr/sbin:/usr/local/sbin:/sbin")
        self._ssh_ready = False
        self.cipher: str | None = None
        atexit.register(self.remove)

    def remove(self) -> None:
        _stop_all_servers()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ----- ssh
    @property
    def client_key(self) -> str:
        return os.path.join(self.tmp, "client_ed25519")

    def ssh_opts(self) -> list[str]:
        """Client options (without the port flag, which differs: ssh -p, scp/sftp -P)."""
        return ["-F", "/dev/null", "-i", self.client_key, "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]

    def ssh_setup(self) -> None:
        if self._ssh_ready:
            return
        for name, comment in (("ssh_host_ed25519_key", "xfer-bench-host"), ("client_ed25519", "xfer-bench-client")):
            _run_quiet(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                        "-f", os.path.join(self.tmp, name)])
        shutil.copyfile(self.client_key + ".pub", os.path.join(self.tmp, "authorized_keys"))
        if not os.path.isdir("/run/sshd"):   # sshd's (compiled-in) privilege separation directory
            log("creating /run/sshd (sshd's privilege separation directory)")
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self._ssh_ready = True

    def sshd(self, log_base: str) -> ManagedServer:
        self.ssh_setup()
        port = pick_free_port()
        cfg = os.path.join(self.tmp, "sshd_config")
        sftp_server = "/usr/lib/openssh/sftp-server"
        with open(cfg, "w") as f:
            f.write("\n".join([
                f"Port {port}", f"ListenAddress {NET_HOST}", "AddressFamily inet",
                f"HostKey {self.tmp}/ssh_host_ed25519_key", f"PidFile {self.tmp}/sshd.pid",
                f"AuthorizedKeysFile {self.tmp}/authorized_keys",
                "PermitRootLogin yes", "PubkeyAuthentication yes", "PasswordAuthentication no",
                "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", "UseDNS no",
                "PrintMotd no", "PrintLastLog no", "X11Forwarding no", "LogLevel INFO",
                f"Subsystem sftp {sftp_server if os.access(sftp_server, os.X_OK) else 'internal-sftp'}", ""]))
        return ManagedServer("sshd", [self.sshd_bin or "/usr/sbin/sshd", "-D", "-e", "-f", cfg], log_base + ".sshd.log",
                             ready=lambda s: port_listening(port), vars={"SSH_PORT": str(port)}, drain=True)

    def probe_cipher(self, log_base: str) -> str | None:
        """Which cipher ssh negotiates with this sshd (one untimed `ssh -v ... true`)."""
        if self.cipher is not None:
            return self.cipher
        srv = self.sshd(log_base)
        try:
            srv.start()
            p = subprocess.run(["ssh", "-v", "-p", srv.vars["SSH_PORT"], *self.ssh_opts(),
                                f"root@{NET_HOST}", "true"], capture_output=True, text=True, timeout=30)
            m = re.search(r"kex: client->server cipher: (\S+) MAC: (\S+) compression: (\S+)", p.stderr)
            self.cipher = (f"{m.group(1)} (MAC {m.group(2)}, compression {m.group(3)})" if m
                           else f"unknown (ssh rc {p.returncode}: {p.stderr.strip()[-200:]})")
        except (ServerError, OSError, subprocess.TimeoutExpired) as e:
            self.cipher = f"unknown ({e})"
        finally:
            srv.stop()
        return self.cipher

    # ----- iperf3
    def iperf3(self, log_base: str) -> ManagedServer:
        port = pick_free_port()
        return ManagedServer("iperf3", ["iperf3", "-s", "-1", "-B", NET_HOST, "-p", str(port)],
                             log_base + ".iperf3-server.log", ready=lambda s: port_listening(port),
                             vars={"IPERF_PORT": str(port)})

    # ----- xferd
    def xferd(self, label: str, root: str, var: str, log_base: str) -> ManagedServer:
        """A fresh xferd serving `root`; its control address goes to @var@, a write token to @TOKEN@."""
        cfg = os.path.join(self.tmp, f"xferd-{label}.toml")
        state = os.path.join(self.tmp, f"xferd-{label}-state")
        rm_rf(state)
        os.makedirs(state)
        q = json.dumps   # TOML basic strings accept JSON string escapes
        with open(cfg, "w") as f:
            f.write(f"[server]\nlisten = {q(NET_HOST + ':0')}\ndata_listen = {q(NET_HOST + ':0')}\n"
                    f"root = {q(root)}\nstate_dir = {q(state)}\n"
                    f"[auth]\nsecret = {q(self.secret)}\nrequired = true\n")

        def ready(s: ManagedServer) -> bool:
            try:
                with open(s.log_path, errors="replace") as f:
                    m = XFERD_READY_RE.search(f.read())
            except OSError:
                return False
            if m:
                s.vars[var] = m.group(1)
                s.vars[var + "_DATA"] = m.group(2)
            return bool(m)

        def token(s: ManagedServer) -> None:
            argv = [self.xferd_bin, "token", "--config", cfg, "--write"]
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise ServerError(f"{shlex.join(argv)}: {e}")
            lines = [x.strip() for x in p.stdout.splitlines() if x.strip()]
            if p.returncode != 0 or not lines:
                raise ServerError(f"{shlex.join(argv)} failed (rc {p.returncode}): {(p.stderr or p.stdout).strip()[:300]}")
            s.vars["TOKEN"] = lines[0]

        return ManagedServer(f"xferd-{label}", [self.xferd_bin, "--config", cfg], log_base + f".xferd-{label}.log",
                             ready=ready, ready_timeout=XFERD_READY_TIMEOUT, rss_mode="vmhwm", after_ready=token)


def xfer_net_flags(ctx: Ctx) -> list[str]:
    """--no-progress --json (the summary line is parsed), unless already in --xfer-args."""
    return [f for f in ("--no-progress", "--json") if f not in ctx.xfer_args]


def _net_root(ctx: Ctx, name: str) -> str:
    """A server root under NETDIR; DST is ROOT/dst, so ROOT itself (held open by xferd) is never deleted mid-run."""
    root = os.path.join(ctx.netdir, name)
    rm_rf(root)
    os.makedirs(root)
    return root


def _ssh_tool(ctx: Ctx, argv: list[str], binary: str) -> ToolSpec:
    return ToolSpec(argv, binary, servers=["sshd"], requires=["ssh", ctx.net.sshd_bin or "sshd"])


def _xfer_tool(ctx: Ctx, argv: list[str], servers: list[str]) -> ToolSpec:
    return ToolSpec(argv, ctx.xfer, servers=servers, requires=[ctx.xferd])


def _net_plan(ctx: Ctx, name: str, description: str, total_bytes: int, total_files: int, root: str,
              output: str, tools: dict[str, ToolSpec], verify, targets: list[dict]) -> ScenarioPlan:
    net = ctx.net
    dest_dir = os.path.join(root, "dst")
    plan = ScenarioPlan(
        name=name, description=description, total_bytes=total_bytes, total_files=total_files,
        dest_dir=dest_dir, output=output, tools=tools, verify=verify,
        destination=f"memory ({dest_dir}, tmpfs), server root {root}",
        network=True, in_memory=True, targets=targets,
        state_dir=os.path.join(ctx.netdir, "xfer-state"),
        cleanup=lambda: rm_rf(root))
    plan.servers = {"sshd": net.sshd, "iperf3": net.iperf3,
                    "xferd": lambda lb: net.xferd("a", root, "XFER_A", lb)}
    return plan


def _maybe_cipher(ctx: Ctx, plan: ScenarioPlan, tools: list[str]) -> None:
    if any("sshd" in plan.tools[t].servers for t in tools if t in plan.tools) and ctx.net.sshd_bin:
        c = ctx.net.probe_cipher(os.path.join(ctx.workdir, "logs", f"{plan.name}-ssh-probe"))
        plan.notes.append(f"ssh cipher negotiated with the harness's sshd (default settings): {c}")


def scenario_net_large(ctx: Ctx, encrypted: bool = False) -> ScenarioPlan:
    size = ctx.args.net_size
    src = ensure_large_dataset(ctx.netdir, size)
    name = "net-large-enc" if encrypted else "net-large"
    root = _net_root(ctx, "srv")
    out = os.path.join(root, "dst", "large.bin")
    net = ctx.net
    opts = net.ssh_opts()
    remote = f"root@{NET_HOST}:{out}"
    tools: dict[str, ToolSpec] = {}
    if not encrypted:
        tools["iperf3"] = ToolSpec(["iperf3", "-c", NET_HOST, "-p", "@IPERF_PORT@", "-t", f"{ctx.args.iperf_seconds:g}",
                                    "-J"], "iperf3", servers=["iperf3"], kind="ceiling")
    tools["scp"] = _ssh_tool(ctx, ["scp", "-P", "@SSH_PORT@", *opts, src, remote], "scp")
    if encrypted:
        batch = os.path.join(net.tmp, f"{name}.sftp-batch")
        with open(batch, "w") as f:
            f.write(f'put "{src}" "{out}"\n')
        tools["sftp"] = _ssh_tool(ctx, ["sftp", "-b", batch, "-P", "@SSH_PORT@", *opts, f"root@{NET_HOST}"], "sftp")
    else:
        tools["rsync-ssh"] = _ssh_tool(ctx, ["rsync", "-a", "-e", "ssh -p @SSH_PORT@ " + shlex.join(opts), src, remote],
                                       "rsync")
    tools["xfer"] = _xfer_tool(ctx, [ctx.xfer, "transfer", src, "xfer://@XFER_A@/dst/large.bin", "--token", "@TOKEN@",
                                     "--encrypt" if encrypted else "--no-encrypt", *xfer_net_flags(ctx),
                                     *ctx.xfer_args], ["xferd"])
    targets = ([{"label": "xfer >= 3x scp", "kind": "speedup", "peer": "scp", "min": 3.0}] if encrypted else
               [{"label": "xfer >= 60% of iperf3", "kind": "pct_ceiling", "tool": "xfer", "min": 60.0},
                {"label": "xfer >= 6x scp", "kind": "speedup", "peer": "scp", "min": 6.0}])
    return _net_plan(ctx, name, f"1 file of {human_bytes(size)}, " + ("encrypted" if encrypted else "plaintext xfer"),
                     size, 1, root, out, tools, lambda o, full: verify_large(src, o, full), targets)


def scenario_net_large_enc(ctx: Ctx) -> ScenarioPlan:
    return scenario_net_large(ctx, encrypted=True)


def scenario_net_small(ctx: Ctx) -> ScenarioPlan:
    count, fsize = ctx.args.net_small_count, ctx.args.net_small_file_size
    src = ensure_small_dataset(ctx.netdir, count, fsize)
    root = _net_root(ctx, "srv")
    dest = os.path.join(root, "dst")
    out = os.path.join(dest, "tree")
    opts = ctx.net.ssh_opts()
    q = shlex.quote
    tar_script = (f"set -o pipefail; tar -C {q(os.path.dirname(src))} -cf - {q(os.path.basename(src))} | "
                  f"ssh -p @SSH_PORT@ {shlex.join(opts)} root@{NET_HOST} {q('tar -C ' + q(dest) + ' -xf -')}")
    tools = {
        "scp": _ssh_tool(ctx, ["scp", "-r", "-P", "@SSH_PORT@", *opts, src, f"root@{NET_HOST}:{dest}/"], "scp"),
        "rsync-ssh": _ssh_tool(ctx, ["rsync", "-a", "-e", "ssh -p @SSH_PORT@ " + shlex.join(opts), src,
                                     f"root@{NET_HOST}:{dest}/"], "rsync"),
        "tar-ssh": _ssh_tool(ctx, ["bash", "-c", tar_script], "tar"),
        "xfer": _xfer_tool(ctx, [ctx.xfer, "transfer", "-r", src, "xfer://@XFER_A@/dst/", "--token", "@TOKEN@",
                                 "--no-encrypt", *xfer_net_flags(ctx), *ctx.xfer_args], ["xferd"]),
    }
    ndirs = math.ceil(count / 100)
    return _net_plan(ctx, "net-small", f"{count} files of {human_bytes(fsize)} in {ndirs} dirs, plaintext xfer",
                     count * fsize, count, root, out, tools, make_tree_verifier(src),
                     [{"label": "xfer >= 1.5x tar-ssh", "kind": "speedup", "peer": "tar-ssh", "min": 1.5},
                      {"label": "xfer >= 10x scp -r", "kind": "speedup", "peer": "scp", "min": 10.0}])


def scenario_net_3p(ctx: Ctx) -> ScenarioPlan:
    size = ctx.args.net_size
    src = ensure_large_dataset(ctx.netdir, size)
    root_a, root_b = _net_root(ctx, "srv-a"), _net_root(ctx, "srv-b")
    try:
        os.link(src, os.path.join(root_a, "big"))   # same tmpfs: no second copy in memory
    except OSError:
        shutil.copyfile(src, os.path.join(root_a, "big"))
    client = os.path.join(ctx.netdir, "client")
    out = os.path.join(root_b, "dst", "big")
    x = ctx.xfer
    flags = ["--token", "@TOKEN@", "--no-encrypt", *xfer_net_flags(ctx), *ctx.xfer_args]
    q = shlex.quote
    via = (f"set -e; {q(x)} transfer xfer://@XFER_A@/big {q(client + '/big')} {shlex.join(flags)}; "
           f"{q(x)} transfer {q(client + '/big')} xfer://@XFER_B@/dst/big {shlex.join(flags)}")
    servers = ["xferd-a", "xferd-b"]
    tools = {
        "xfer": _xfer_tool(ctx, [x, "transfer", "xfer://@XFER_A@/big", "xfer://@XFER_B@/dst/big", *flags], servers),
        "via-client": ToolSpec(["bash", "-c", via], x, servers=servers, requires=[ctx.xferd]),
    }
    plan = _net_plan(ctx, "net-3p", f"1 file of {human_bytes(size)} from xferd A to xferd B (third party)",
                     size, 1, root_b, out, tools, lambda o, full: verify_large(src, o, full),
                     [{"label": "xfer >= 1.8x via-client", "kind": "speedup", "peer": "via-client", "min": 1.8}])
    net = ctx.net
    plan.servers = {"xferd-a": lambda lb: net.xferd("a", root_a, "XFER_A", lb),
                    "xferd-b": lambda lb: net.xferd("b", root_b, "XFER_B", lb)}
    plan.scratch_dirs = [client]
    plan.destination = (f"memory: A root {root_a} (big = hard link to the dataset), B root {root_b}, "
                        f"DST {plan.dest_dir}; via-client stages in {client}")
    plan.cleanup = lambda: [rm_rf(d) for d in (root_a, root_b, client)]
    plan.tool_names = ["xfer", "via-client"]
    return plan
