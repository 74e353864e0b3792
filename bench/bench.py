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
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_XFER = os.path.join(REPO, "build", "apps", "xfer", "xfer")
DEFAULT_XFERD = os.path.join(REPO, "build", "apps", "xferd", "xferd")
DEFAULT_WORKDIR = "/var/tmp/xfer-bench"
DEFAULT_NETDIR = "/dev/shm/xfer-bench-net"   # network scenarios: datasets, server roots (memory to memory)
DATASET_VERSION = 1
MARKER = ".xfer-bench-dataset.json"
LOCAL_TOOLS = ["cp", "rsync", "rclone", "xfer"]
NET_TOOLS = ["iperf3", "scp", "rsync-ssh", "sftp", "tar-ssh", "via-client"]   # network peers (xfer is shared)
ALL_TOOLS = LOCAL_TOOLS + NET_TOOLS
MiB = 1 << 20

# --------------------------------------------------------------------------
# small helpers


def parse_size(text: str) -> int:
    """'4G', '256M', '4GiB', '1048576' -> bytes (binary suffixes, like xfer)."""
    t = text.strip().upper()
    for suf in ("IB", "B"):
        if t.endswith(suf) and len(t) > len(suf) and t[-len(suf) - 1] in "KMGT":
            t = t[: -len(suf)]
            break
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1024 ** ("KMGT".index(t[-1]) + 1)
        t = t[:-1]
    try:
        val = float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size: {text!r}")
    if val <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return int(val * mult)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def first_line(argv: list[str], need_ok: bool = False) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if need_ok and out.returncode != 0:
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].strip() if text else None


def rm_rf(path: str) -> None:
    # `rm -rf` is much faster than shutil.rmtree on 100k-file trees.
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--", path], check=True)


# xfer checkpoints every transfer under $XFER_STATE_DIR (default
# ~/.local/state/xfer). main() points it at WORKDIR/xfer-state, which is
# emptied before every run (a run killed by --timeout must not be resumed by
# the next one) and deleted at the end.
STATE_DIR: str | None = None


def reset_xfer_state() -> None:
    if STATE_DIR:
        rm_rf(STATE_DIR)


def set_state_dir(path: str) -> None:
    """XFER_STATE_DIR of the xfer runs from now on (network scenarios keep it on tmpfs too)."""
    global STATE_DIR
    STATE_DIR = path
    os.environ["XFER_STATE_DIR"] = path


# --------------------------------------------------------------------------
# cache control and timed execution


class CacheControl:
    def __init__(self, enabled: bool = True) -> None:
        self.cold: bool | None = None if enabled else False  # None = not tried yet

    def drop(self) -> bool:
        """sync + drop page/dentry/inode caches. Returns True if caches are cold."""
        os.sync()
        if self.cold is False:
            return False
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            self.cold = True
        except OSError as e:
            if self.cold is None:
                log(f"cannot drop caches ({e}); runs are WARM CACHE")
            self.cold = False
        return self.cold


@dataclass
class RunResult:
    run: int
    seconds: float | None  # command + trailing sync
    cmd_seconds: float | None
    sync_seconds: float | None
    maxrss_kib: int | None
    exit_code: int | None
    cold_cache: bool
    verified: bool | None = None
    verify_msg: str = ""
    error: str = ""
    log_file: str = ""
    rss_source: str = ""
    foreign_cpu_s: float | None = None     # CPU time used by other processes during the run
    foreign_top: str = ""                   # the biggest of them ("comm 1.2s, ...")
    busy: bool = False                      # foreign_cpu_s above BUSY_THRESHOLD: machine was not quiet
    summary: dict | None = None             # xfer --json: the last {"event":"summary"} line
    server_rss_kib: int | None = None       # network: peak RSS of the server side (see server_rss_source)
    server_rss_source: str = ""
    servers: dict | None = None             # network: per server {pid, vmhwm_kib, maxrss_kib, exit_code, ...}
    ceiling_bps: float | None = None        # iperf3 row: end.sum_received.bits_per_second
    clients: list | None = None             # xferd-mem: one entry per client process


def _find_gnu_time() -> str | None:
    for cand in ("/usr/bin/time", shutil.which("time")):
        if cand and os.access(cand, os.X_OK):
            v = first_line([cand, "--version"]) or ""
            if "GNU" in v:
                return cand
    return None


GNU_TIME = _find_gnu_time()
# vfork would make every child inherit the harness's RSS high-water mark as its
# ru_maxrss floor; plain fork only its current RSS. Prefer fork.
if hasattr(subprocess, "_USE_VFORK"):
    subprocess._USE_VFORK = False


def timed_exec(argv: list[str], log_path: str, timeout: float | None,
               sync: bool = True) -> tuple[float, float, int, int, str]:
    """Run argv directly (no shell), reap it with os.wait4, then os.sync() (unless sync=False:
    memory-to-memory scenarios, where a sync would only time other processes' dirty data).

    Returns (cmd_seconds, sync_seconds, exit_code, maxrss_kib, rss_source).

    Peak RSS: Linux seeds a child's ru_maxrss with the RSS of the process that
    forked it (the whole ~10-200 MiB Python harness), so wait4 straight on the
    tool over-reports small tools. When GNU time is installed the tool is
    exec'd as `time -f %M -o FILE tool...`: GNU time (a ~2 MiB C process,
    no shell) forks+execs the tool and reads the tool's own wait4 ru_maxrss,
    which is what we report; our wait4 then reaps `time` for the exit code.
    Either way ru_maxrss is the max over the process and the descendants it
    reaped itself (e.g. rsync's receiver/generator), not a sum.
    """
    rss_file = log_path + ".rss"
    timed_out: list[bool] = []
    full = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv] if GNU_TIME else argv
    with open(log_path, "wb") as logf:
        logf.write(("$ " + shlex.join(argv) + "\n").encode())
        logf.flush()
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             close_fds=True, start_new_session=True)
        killer = None
        if timeout:
            def _expire() -> None:
                timed_out.append(True)
                _kill_quiet(p.pid)
            killer = threading.Timer(timeout, _expire)
            killer.daemon = True
            killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        except BaseException:
            _kill_quiet(p.pid)
            try:
                os.wait4(p.pid, 0)
            except ChildProcessError:
                pass
            p.returncode = -1
            raise
        finally:
            if killer:
                killer.cancel()
        t1 = time.perf_counter()
        p.returncode = os.waitstatus_to_exitcode(status)
        if sync:
            os.sync()
        t2 = time.perf_counter()
    rss, source = ru.ru_maxrss, "wait4 (includes harness RSS floor)"
    if GNU_TIME:
        try:
            with open(rss_file) as f:
                rss, source = int(f.read().split()[-1]), "GNU time (wait4 of the tool)"
        except (OSError, ValueError, IndexError):
            pass
        try:
            os.unlink(rss_file)
        except OSError:
            pass
    if timed_out:
        raise TimeoutError(f"timed out after {timeout:g} s (process group killed)")
    return t1 - t0, t2 - t1, p.returncode, rss, source


# ----- "is the machine quiet?" guard
# A run is flagged BUSY when processes other than the harness and the tool used
# more than max(BUSY_MIN_S, BUSY_FRACTION * run time) of CPU while it ran (e.g.
# a build started in another terminal). Counted from /proc/PID/stat utime +
# stime + cutime + cstime of every user-space process (so short-lived
# compilers are seen through the parent that reaps them); kernel threads
# (writeback, loop workers) are not counted.
BUSY_MIN_S = 0.5
BUSY_FRACTION = 0.02
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# PIDs of the servers the harness itself runs (sshd, iperf3, xferd and the GNU time
# wrapping them): their CPU, and that of their descendants, is part of the
# measurement, not "other processes". Maintained by ManagedServer.
EXCLUDE_PIDS: set[int] = set()


def cpu_snapshot() -> dict[int, tuple[str, float, int]]:
    """pid -> (comm, utime+stime+cutime+cstime in s, ppid) of every user-space process."""
    snap: dict[int, tuple[str, float, int]] = {}
    me = os.getpid()
    try:
        pids = [d for d in os.listdir("/proc") if d.isdigit()]
    except OSError:
        return snap
    for d in pids:
        pid = int(d)
        if pid == me:
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        r = data.rfind(")")
        fields = data[r + 2:].split()
        try:
            if int(fields[6]) & 0x00200000:  # PF_KTHREAD
                continue
            ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            ppid = int(fields[1])
        except (IndexError, ValueError):
            continue
        snap[pid] = (data[data.find("(") + 1:r], ticks / _HZ, ppid)
    return snap


def _excluded(pid: int, snap: dict[int, tuple[str, float, int]]) -> bool:
    """True if pid is one of the harness's servers or descends from one."""
    for _ in range(64):
        if pid in EXCLUDE_PIDS:
            return True
        ent = snap.get(pid)
        if ent is None or ent[2] <= 1:
            return False
        pid = ent[2]
    return False


def foreign_cpu(before: dict[int, tuple[str, float, int]],
                after: dict[int, tuple[str, float, int]]) -> tuple[float, str]:
    used = []
    for pid, (comm, t, _ppid) in after.items():
        if EXCLUDE_PIDS and _excluded(pid, after):
            continue
        prev = before.get(pid)
        d = t - (prev[1] if prev and prev[0] == comm else 0.0)
        if d > 0:
            used.append((d, comm))
    used.sort(reverse=True)
    return sum(d for d, _ in used), ", ".join(f"{c} {d:.1f}s" for d, c in used[:3])


def wait_quiet(max_wait: float, window: float = 2.0, limit: float = 0.05) -> bool:
    """Wait (up to max_wait s) until other processes use < limit CPU-seconds per second
    over a `window`-second sample. Returns True if the machine became quiet."""
    deadline = time.monotonic() + max_wait
    told = False
    while True:
        a = cpu_snapshot()
        time.sleep(window)
        used, top = foreign_cpu(a, cpu_snapshot())
        if used < limit * window:
            if told:
                log("machine quiet again")
            return True
        if time.monotonic() >= deadline:
            log(f"machine still busy after waiting {max_wait:.0f} s ({top}); running anyway")
            return False
        if not told:
            log(f"waiting for the machine to be quiet: other processes use {used / window:.2f} CPUs ({top})")
            told = True


def _kill_quiet(pid: int) -> None:
    """SIGKILL the run's whole process group (it was started in its own session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------
# datasets


def _marker_ok(root: str, want: dict) -> bool:
    try:
        with open(os.path.join(root, MARKER)) as f:
            return json.load(f) == want
    except (OSError, ValueError):
        return False


def _write_marker(root: str, want: dict) -> None:
    os.sync()
    tmp = os.path.join(root, MARKER + ".tmp")
    with open(tmp, "w") as f:
        json.dump(want, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(root, MARKER))


def ensure_large_dataset(workdir: str, size: int) -> str:
    """One file of `size` random bytes. Returns the file path.

    A 64 MiB os.urandom block is reused, but every 4 KiB page gets a unique
    16-byte header (block index, page offset), so the data is neither
    compressible nor dedupable at page or block granularity.
    """
    root = os.path.join(workdir, "data", f"large-{size}")
    path = os.path.join(root, "large.bin")
    want = {"kind": "large", "size": size, "version": DATASET_VERSION}
    if _marker_ok(root, want) and os.path.isfile(path) and os.path.getsize(path) == size:
        log(f"large dataset reused: {path} ({human_bytes(size)})")
        return path
    rm_rf(root)
    os.makedirs(root)
    log(f"generating large dataset {path} ({human_bytes(size)}) ...")
    t0 = time.perf_counter()
    block_size = 64 * MiB
    base = os.urandom(block_size)
    salt = random.SystemRandom().getrandbits(64)
    with open(path, "wb", buffering=0) as f:
        written = 0
        bi = 0
        while written < size:
            n = min(block_size, size - written)
            blk = bytearray(base[:n])
            for off in range(0, n - 15, 4096):
                struct.pack_into("<QQ", blk, off, bi ^ salt, written + off)
            f.write(blk)
            written += n
            bi += 1
        os.fsync(f.fileno())
    _write_marker(root, want)
    log(f"large dataset ready in {time.perf_counter() - t0:.1f} s")
    return path


def ensure_small_dataset(workdir: str, count: int, file_size: int, per_dir: int = 100) -> str:
    """`count` files of `file_size` random bytes, `per_dir` per folder. Returns tree root."""
    root = os.path.join(workdir, "data", f"small-{count}x{file_size}")
    tree = os.path.join(root, "tree")
    want = {"kind": "small", "count": count, "file_size": file_size, "per_dir": per_dir,
            "version": DATASET_VERSION}
    if _marker_ok(root, want) and os.path.isdir(tree):
        log(f"small dataset reused: {tree} ({count} files)")
        return tree
    rm_rf(root)
    os.makedirs(tree)
    ndirs = math.ceil(count / per_dir)
    log(f"generating small dataset {tree} ({count} files x {file_size} B in {ndirs} dirs) ...")
    t0 = time.perf_counter()
    done = 0
    for d in range(ndirs):
        dpath = os.path.join(tree, f"d{d:05d}")
        os.mkdir(dpath)
        for i in range(min(per_dir, count - done)):
            fd = os.open(os.path.join(dpath, f"f{i:04d}.bin"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, os.urandom(file_size))
            finally:
                os.close(fd)
            done += 1
    _write_marker(root, want)
    log(f"small dataset ready in {time.perf_counter() - t0:.1f} s")
    return tree


# --------------------------------------------------------------------------
# verification


def _sha_piece(path: str, off: int, n: int) -> str:
    with open(path, "rb") as f:
        f.seek(off)
        return hashlib.sha256(f.read(n)).hexdigest()


def _files_equal(a: str, b: str, chunk: int = 8 * MiB) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(chunk)
            y = fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def verify_large(src: str, dst: str, full: bool, pieces: int = 16) -> tuple[bool, str]:
    if not os.path.isfile(dst):
        return False, f"missing output file {dst}"
    ss, ds = os.path.getsize(src), os.path.getsize(dst)
    if ss != ds:
        return False, f"size mismatch: source {ss} B, dest {ds} B"
    if full:
        return (True, "full compare ok") if _files_equal(src, dst) else (False, "full compare: contents differ")
    n = min(MiB, ss)
    offs = sorted({(ss - n) * i // max(1, pieces - 1) for i in range(pieces)})
    for off in offs:
        if _sha_piece(src, off, n) != _sha_piece(dst, off, n):
            return False, f"sampled checksum mismatch at offset {off}"
    return True, f"size + {len(offs)} sampled 1 MiB sha256 ok"


def list_tree(root: str) -> tuple[set[str], set[str]]:
    """(relative file paths, relative dir paths) below root."""
    files, dirs = set(), set()
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel)) as it:
            for e in it:
                r = os.path.join(rel, e.name)
                if e.is_dir(follow_symlinks=False):
                    dirs.add(r)
                    stack.append(r)
                else:
                    files.add(r)
    return files, dirs


def make_tree_verifier(src_root: str, sample: int = 200):
    cache: dict = {}

    def verify(dst_root: str, full: bool) -> tuple[bool, str]:
        if not os.path.isdir(dst_root):
            return False, f"missing output directory {dst_root}"
        if "src" not in cache:
            cache["src"] = list_tree(src_root)
        sfiles, sdirs = cache["src"]
        dfiles, ddirs = list_tree(dst_root)
        if sfiles != dfiles or sdirs != ddirs:
            missing = len(sfiles - dfiles)
            extra = len(dfiles - sfiles)
            return False, (f"tree mismatch: {len(dfiles)}/{len(sfiles)} files, {len(ddirs)}/{len(sdirs)} dirs,"
                           f" {missing} missing, {extra} unexpected")
        names = sorted(sfiles)
        chosen = names if full else random.Random(len(names)).sample(names, min(sample, len(names)))
        for rel in chosen:
            a, b = os.path.join(src_root, rel), os.path.join(dst_root, rel)
            if os.path.getsize(a) != os.path.getsize(b) or not _files_equal(a, b):
                return False, f"content mismatch: {rel}"
        what = "all" if full else f"{len(chosen)} sampled"
        return True, f"{len(sfiles)} files / {len(sdirs)} dirs present, {what} files equal"

    return verify



# --------------------------------------------------------------------------
# fresh journaled ext4 destination (small scenario)
#
# The root fs of some machines is ext4 *without a journal*. There, ext4's
# inode allocator (find_inode_bit -> recently_deleted) skips every free inode
# whose i_dtime is less than RECENTCY_MIN = 60 s old (360 s while its
# inode-table block is dirty). Right after the `rm -rf` of a 100k-file
# destination every create then scans the inode bitmap, looking up buffer
# heads, and file creation becomes CPU-bound in the kernel for every tool. To
# measure the tools and not that scan, the `small` scenario writes each run
# into a freshly made journaled ext4 (an image file in the workdir, attached
# with `losetup --direct-io=on`, so its I/O goes to the same disk without a
# second page cache). mkfs + mount are not timed.

FRESH_IMAGE_SIZE = 8 << 30
MKFS_ARGV = ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
_LIVE_FS: list["FreshExt4"] = []


def _run_quiet(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed (rc {p.returncode}): {(p.stderr or p.stdout).strip()[:500]}")
    return p


class FreshExt4:
    """An ext4 (with journal) made anew on an image file before every run."""

    description = ("fresh journaled ext4 per run: 8 GiB image file in the workdir, "
                   "`losetup --direct-io=on`, `" + shlex.join(MKFS_ARGV) + "`, default mount options")

    def __init__(self, image: str, mnt: str, size: int = FRESH_IMAGE_SIZE) -> None:
        self.image, self.mnt, self.size = image, mnt, size
        self.loop: str | None = None
        self.mounted = False
        _LIVE_FS.append(self)
        self._cleanup_stale()

    def _cleanup_stale(self) -> None:
        """Undo what an earlier, killed harness may have left behind."""
        if _run_quiet(["findmnt", "-n", self.mnt], check=False).returncode == 0:
            log(f"unmounting stale {self.mnt}")
            _run_quiet(["umount", self.mnt], check=False)
        if os.path.exists(self.image):
            out = _run_quiet(["losetup", "-j", self.image], check=False).stdout
            for line in out.splitlines():
                dev = line.split(":", 1)[0].strip()
                if dev:
                    log(f"detaching stale {dev}")
                    _run_quiet(["losetup", "-d", dev], check=False)

    def create(self) -> None:
        """(Re-)create: unmount/detach, attach the image, mkfs.ext4, mount. Not timed."""
        self.destroy()
        if not os.path.exists(self.image):
            with open(self.image, "wb") as f:
                f.truncate(self.size)
        self.loop = _run_quiet(["losetup", "--direct-io=on", "-f", "--show", self.image]).stdout.strip()
        _run_quiet([*MKFS_ARGV, self.loop])
        os.makedirs(self.mnt, exist_ok=True)
        _run_quiet(["mount", "-t", "ext4", self.loop, self.mnt])
        self.mounted = True

    def destroy(self) -> None:
        """Unmount and detach the loop device (idempotent, never raises)."""
        if self.mounted:
            os.sync()
            for attempt in range(20):  # a just-killed tool may still hold the fs for a moment
                p = _run_quiet(["umount", self.mnt], check=False)
                if p.returncode == 0:
                    break
                time.sleep(0.25)
            else:
                log(f"umount {self.mnt} failed ({p.stderr.strip()}); lazy unmount")
                _run_quiet(["umount", "-l", self.mnt], check=False)
            self.mounted = False
        if self.loop:
            if _run_quiet(["losetup", "-d", self.loop], check=False).returncode != 0:
                log(f"losetup -d {self.loop} failed")
            self.loop = None

    def remove(self) -> None:
        self.destroy()
        for fn in (lambda: os.unlink(self.image), lambda: os.rmdir(self.mnt)):
            try:
                fn()
            except OSError:
                pass
        try:
            os.rmdir(os.path.dirname(self.mnt))
        except OSError:
            pass
        if self in _LIVE_FS:
            _LIVE_FS.remove(self)


@atexit.register
def _destroy_all_fresh_fs() -> None:
    for fs in list(_LIVE_FS):
        fs.remove()


def _sigterm(signum, frame):  # turn SIGTERM/SIGHUP into a clean exit: finally blocks + atexit run
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------
# scenarios


@dataclass
class ToolSpec:
    argv: list[str]          # full command line for one run (@NAME@ = per-run value, e.g. @SSH_PORT@)
    binary: str              # executable checked for availability
    servers: list[str] = field(default_factory=list)    # network: servers started (fresh) for every run
    requires: list[str] = field(default_factory=list)   # other executables it needs (sshd, xferd)
    kind: str = "copy"       # "copy" (output verified) | "ceiling" (iperf3: no output, rate parsed)


@dataclass
class ScenarioPlan:
    name: str
    description: str
    total_bytes: int
    total_files: int
    dest_dir: str                         # emptied + recreated before every run
    output: str                           # what the tools produce (verified)
    tools: dict[str, ToolSpec]
    verify: Callable[[str, bool], tuple[bool, str]]   # (output, full) -> (ok, msg)
    wants_fio: bool = False
    cleanup: Callable[[], None] | None = None
    prepare_run: Callable[[], None] | None = None   # before each run, untimed (e.g. mkfs + mount)
    finish_run: Callable[[], None] | None = None    # after each run + verification (e.g. umount)
    pause_after_delete: float = 0.0                 # untimed sleep after deleting the previous DST
    destination: str = ""                            # where DST lives (reported)
    tool_names: list[str] | None = None             # the scenario's own tools (ignores --tools), e.g. xfer vs xfer-nockpt
    compare: tuple[str, str] | None = None          # (tool, baseline): report the tool's throughput cost vs baseline
    runner: Callable[..., dict] | None = None       # custom runner (args, cache, logdir) -> scenario entry for the JSON
    # network scenarios
    network: bool = False                           # reported in the network table
    in_memory: bool = False                         # datasets + DST on tmpfs: no cache drop, no timed sync
    servers: dict[str, Callable[[str], "ManagedServer"]] = field(default_factory=dict)  # name -> factory(log base)
    scratch_dirs: list[str] = field(default_factory=list)   # emptied before and after every run
    targets: list[dict] = field(default_factory=list)       # issue targets, evaluated in the report
    state_dir: str | None = None                    # XFER_STATE_DIR for this scenario (default WORKDIR/xfer-state)
    notes: list[str] = field(default_factory=list)  # extra lines for the report
    run_vars: dict[str, str] = field(default_factory=dict)  # @NAME@ values of the current run


@dataclass
class ScenarioDef:
    build: Callable[["Ctx"], ScenarioPlan]
    local: bool
    help: str
    default: bool = True      # run when no --scenario is given


@dataclass
class Ctx:
    args: argparse.Namespace
    workdir: str
    xfer: str
    xfer_args: list[str]
    netdir: str = DEFAULT_NETDIR
    xferd: str = DEFAULT_XFERD
    _net: "NetEnv | None" = None

    @property
    def net(self) -> "NetEnv":
        if self._net is None:
            self._net = NetEnv(self.netdir, self.xferd)
        return self._net


def xfer_quiet(ctx: Ctx) -> list[str]:
    """`-q` unless the user already silenced the progress line: it must never be drawn."""
    return [] if any(a in ("-q", "--quiet", "--no-progress") for a in ctx.xfer_args) else ["-q"]


def scenario_large(ctx: Ctx) -> ScenarioPlan:
    size = ctx.args.large_size
    src = ensure_large_dataset(ctx.workdir, size)
    dest_dir = os.path.join(ctx.workdir, "dst", "large")
    out = os.path.join(dest_dir, "large.bin")
    tools = {
        "cp": ToolSpec(["cp", src, out], "cp"),
        "rsync": ToolSpec(["rsync", "-a", src, out], "rsync"),
        "rclone": ToolSpec(["rclone", "--config", "/dev/null", "copyto", src, out], "rclone"),
        "xfer": ToolSpec([ctx.xfer, "cp", *xfer_quiet(ctx), *ctx.xfer_args, src, out], ctx.xfer),
    }
    return ScenarioPlan(
        name="large",
        description=f"1 file of {human_bytes(size)}",
        total_bytes=size, total_files=1, dest_dir=dest_dir, output=out, tools=tools,
        verify=lambda o, full: verify_large(src, o, full), wants_fio=True,
        destination=f"workdir ({dest_dir}, root fs)")


def _small_plan(ctx: Ctx, name: str, dest_dir: str) -> ScenarioPlan:
    count, fsize = ctx.args.small_count, ctx.args.small_file_size
    src = ensure_small_dataset(ctx.workdir, count, fsize)
    out = os.path.join(dest_dir, "tree")
    # DST is an existing (empty) directory for every tool -> output is DST/tree.
    tools = {
        "cp": ToolSpec(["cp", "-r", src, dest_dir + "/"], "cp"),
        "rsync": ToolSpec(["rsync", "-a", src, dest_dir + "/"], "rsync"),
        "rclone": ToolSpec(["rclone", "--config", "/dev/null", "copy", "--transfers", "16",
                            "--checkers", "16", src, out], "rclone"),
        "xfer": ToolSpec([ctx.xfer, "cp", "-r", *xfer_quiet(ctx), *ctx.xfer_args, src, dest_dir + "/"], ctx.xfer),
    }
    ndirs = math.ceil(count / 100)
    return ScenarioPlan(
        name=name,
        description=f"{count} files of {human_bytes(fsize)} in {ndirs} dirs",
        total_bytes=count * fsize, total_files=count, dest_dir=dest_dir, output=out, tools=tools,
        verify=make_tree_verifier(src))


def scenario_small(ctx: Ctx) -> ScenarioPlan:
    if ctx.args.small_dest == "workdir":
        dest_dir = os.path.join(ctx.workdir, "dst", "small")
        plan = _small_plan(ctx, "small", dest_dir)
        plan.destination = f"workdir ({dest_dir}, root fs), no pause after deleting the previous DST"
        return plan
    fs = FreshExt4(os.path.join(ctx.workdir, "small-dest.img"), os.path.join(ctx.workdir, "mnt", "small"))
    plan = _small_plan(ctx, "small", os.path.join(fs.mnt, "dst"))
    plan.prepare_run, plan.finish_run, plan.cleanup = fs.create, fs.destroy, fs.remove
    plan.destination = FreshExt4.description
    return plan


# ext4 (fs/ext4/ialloc.c) skips a free inode in no-journal mode while
# now < i_dtime + RECENTCY_MIN (60 s), or + RECENTCY_MIN + RECENTCY_DIRTY
# (360 s) if its inode-table block is dirty (values since 2020; the minimum was
# 5 s before). A sync after the delete does not help for long: the first new
# inode written into a table block dirties it again, and its freed neighbours
# are then "recent" for 360 s. Measured here: 40 s and 70 s pauses leave
# recently_deleted() at the top of the profile. So the pause must exceed 360 s.
SMALL_ROOTFS_PAUSE = 370.0


def scenario_small_rootfs(ctx: Ctx) -> ScenarioPlan:
    dest_dir = os.path.join(ctx.workdir, "dst", "small-rootfs")
    plan = _small_plan(ctx, "small-rootfs", dest_dir)
    plan.pause_after_delete = ctx.args.rootfs_pause
    plan.destination = (f"workdir ({dest_dir}, root fs), {ctx.args.rootfs_pause:.0f} s untimed pause after "
                        "deleting the previous DST (and a sync)")
    return plan


# ----- checkpoints (issue 4): xfer with its default checkpointing vs --no-checkpoint, and kill + resume
# Both ckpt tools get `-q --json` (the summary line lands in the run's log and
# gives the journal figures); they differ only by --no-checkpoint.

CKPT_TOOLS = ["xfer", "xfer-nockpt"]


def _ckpt_tools(ctx: Ctx, pre: list[str], post: list[str]) -> dict[str, ToolSpec]:
    base = [ctx.xfer, "cp", *pre, *xfer_quiet(ctx), "--json", *ctx.xfer_args]
    return {"xfer": ToolSpec([*base, *post], ctx.xfer),
            "xfer-nockpt": ToolSpec([*base, "--no-checkpoint", *post], ctx.xfer)}


def scenario_ckpt_large(ctx: Ctx) -> ScenarioPlan:
    plan = scenario_large(ctx)
    plan.name, plan.wants_fio = "ckpt-large", False
    plan.dest_dir = os.path.join(ctx.workdir, "dst", "ckpt-large")
    plan.output = os.path.join(plan.dest_dir, "large.bin")
    src = ensure_large_dataset(ctx.workdir, ctx.args.large_size)
    plan.tools = _ckpt_tools(ctx, [], [src, plan.output])
    plan.tool_names, plan.compare = CKPT_TOOLS, ("xfer", "xfer-nockpt")
    plan.destination = f"workdir ({plan.dest_dir}, root fs)"
    return plan


def scenario_ckpt_small(ctx: Ctx) -> ScenarioPlan:
    fs = FreshExt4(os.path.join(ctx.workdir, "ckpt-small-dest.img"), os.path.join(ctx.workdir, "mnt", "ckpt-small"))
    dest_dir = os.path.join(fs.mnt, "dst")
    plan = _small_plan(ctx, "ckpt-small", dest_dir)
    src = ensure_small_dataset(ctx.workdir, ctx.args.small_count, ctx.args.small_file_size)
    plan.tools = _ckpt_tools(ctx, ["-r"], [src, dest_dir + "/"])
    plan.tool_names, plan.compare = CKPT_TOOLS, ("xfer", "xfer-nockpt")
    plan.prepare_run, plan.finish_run, plan.cleanup = fs.create, fs.destroy, fs.remove
    plan.destination = FreshExt4.description + "; xfer state in the workdir (root fs)"
    return plan


RESUME_KILL_FRACTION = 0.5
RESUME_POLL_S = 0.005
DEFAULT_STREAMS = 4      # xfer's --chunk-parallelism on loopback (auto: 4 there)


def _proc_wchar(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def kill_at_wchar(argv: list[str], threshold: int, log_path: str, timeout: float | None) -> dict:
    """Start argv (no GNU time: we need the tool's own PID), poll /proc/PID/io every
    RESUME_POLL_S s and SIGKILL it once wchar >= threshold. The wchar reported is read
    after the kill, from the zombie (waitid WNOWAIT), so it counts every byte written."""
    res: dict = {"threshold": threshold}
    with open(log_path, "wb") as logf:
        logf.write(("$ " + shlex.join(argv) + f"   # SIGKILL at wchar >= {threshold}\n").encode())
        logf.flush()
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             close_fds=True, start_new_session=True)
        try:
            last = 0
            while True:
                w = _proc_wchar(p.pid)
                if w is not None:
                    last = w
                if w is not None and w >= threshold:
                    os.kill(p.pid, signal.SIGKILL)
                    res["killed"] = True
                    res["wchar_before_kill"] = w
                    break
                if p.poll() is not None:
                    res["killed"] = False
                    break
                if timeout and time.perf_counter() - t0 > timeout:
                    _kill_quiet(p.pid)
                    res["killed"] = False
                    res["error"] = f"wchar stayed below {threshold} for {timeout:g} s"
                    break
                time.sleep(RESUME_POLL_S)
            res["kill_after_s"] = time.perf_counter() - t0
            if res.get("killed"):
                os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
                w = _proc_wchar(p.pid)
                res["wchar_at_kill"] = w if w is not None and w >= res["wchar_before_kill"] else res["wchar_before_kill"]
            else:
                res["wchar_at_kill"] = last
        except BaseException:
            _kill_quiet(p.pid)
            raise
        finally:
            try:
                p.wait()
            except ChildProcessError:
                pass
    res["exit_code"] = p.returncode
    if not res.get("killed") and "error" not in res:
        res["error"] = f"exited (rc {p.returncode}) before wchar reached {threshold} (last {res['wchar_at_kill']})"
    return res


def _partials(dest_dir: str, name: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(dest_dir) if n.startswith(f".{name}.xfer-part-"))
    except OSError:
        return []


def _state_files() -> list[str]:
    out = []
    if STATE_DIR and os.path.isdir(STATE_DIR):
        for d, _, fs in os.walk(STATE_DIR):
            out += [os.path.relpath(os.path.join(d, f), STATE_DIR) for f in fs]
    return sorted(out)


def _streams(xfer_args: list[str]) -> int:
    for i, a in enumerate(xfer_args):
        if a.startswith("--chunk-parallelism="):
            return int(a.split("=", 1)[1])
        if a == "--chunk-parallelism" and i + 1 < len(xfer_args):
            return int(xfer_args[i + 1])
    return DEFAULT_STREAMS


def scenario_resume_large(ctx: Ctx) -> ScenarioPlan:
    size = ctx.args.large_size
    src = ensure_large_dataset(ctx.workdir, size)
    dest_dir = os.path.join(ctx.workdir, "dst", "resume-large")
    out = os.path.join(dest_dir, "large.bin")
    # --no-zero-copy: every data byte goes through pwrite, so /proc/PID/io wchar counts it
    argv = [ctx.xfer, "cp", *xfer_quiet(ctx), "--json", "--no-zero-copy", *ctx.xfer_args, src, out]
    plan = ScenarioPlan(
        name="resume-large",
        description=f"1 file of {human_bytes(size)}, --no-zero-copy: full runs vs SIGKILL at "
                    f"{RESUME_KILL_FRACTION:.0%} (wchar) + resume",
        total_bytes=size, total_files=1, dest_dir=dest_dir, output=out,
        tools={"xfer": ToolSpec(argv, ctx.xfer)},
        verify=lambda o, full: verify_large(src, o, full),
        destination=f"workdir ({dest_dir}, root fs)", tool_names=["xfer"])
    plan.runner = lambda args, cache, logdir: run_resume(plan, ctx, args, cache, logdir)
    return plan


def run_resume(plan: ScenarioPlan, ctx: Ctx, args, cache: "CacheControl", logdir: str) -> dict:
    """Each round: one full timed run, then one kill/resume pair:
    cold cache -> run, SIGKILL at wchar >= 50% of the size -> (untimed) sync + drop caches ->
    the same command again, timed like any run (command + sync): the time to finish.
    re-sent bytes = wchar at the kill + the resumed run's summary "bytes" - size."""
    size = plan.total_bytes
    spec = plan.tools["xfer"]
    full = ToolOutcome("xfer", spec.argv)
    resumed = ToolOutcome("xfer-resume", spec.argv)
    pairs: list[dict] = []
    streams = _streams(ctx.xfer_args)
    if not tool_available(spec):
        full.status = resumed.status = "not installed"
        log(f"{plan.name}: xfer not installed ({spec.binary})")
    else:
        for r in range(args.runs):
            _run_with_retries(plan, full, "xfer", r, args, cache, logdir)
            for attempt in range(1 + args.busy_retries):
                if attempt:
                    resumed.discarded.append(resumed.runs.pop())
                    pairs[-1]["discarded"] = True
                    log(f"{plan.name} pair {r + 1}: resumed run BUSY, pair redone ({attempt}/{args.busy_retries})")
                pairs.append(_kill_resume_pair(plan, resumed, r, args, cache, logdir, size))
                if pairs[-1].get("seconds") is None or not resumed.runs[-1].busy:
                    break
    rm_rf(plan.dest_dir)
    reset_xfer_state()
    rows = summarize(plan, {"xfer": full, "xfer-resume": resumed}, None)
    kept = [p for p in pairs if not p.get("discarded")]
    good = [p for p in kept if p.get("ok")]
    res: dict = {"kill_fraction": RESUME_KILL_FRACTION, "poll_s": RESUME_POLL_S, "streams": streams,
                 "pairs": pairs, "n_ok": len(good), "n_pairs": len(kept)}
    full_med = rows["xfer"].get("median_s")
    res["full_median_s"] = full_med
    chunks = [p["summary"].get("chunks") for p in good if p.get("summary") and p["summary"].get("chunks")]
    if chunks:
        res["chunk_size"] = math.ceil(size / chunks[0])
        res["bound_bytes"] = streams * res["chunk_size"]
    for p in good:
        p["pct_of_full"] = 100.0 * p["seconds"] / full_med if full_med else None
    if good:
        res["median_resent_bytes"] = statistics.median(p["resent_bytes"] for p in good)
        res["max_resent_bytes"] = max(p["resent_bytes"] for p in good)
        res["median_finish_s"] = statistics.median(p["seconds"] for p in good)
        if full_med:
            res["median_finish_pct"] = 100.0 * res["median_finish_s"] / full_med
            res["max_finish_pct"] = max(p["pct_of_full"] for p in good)
    failed = full.status == "FAIL" or resumed.status == "FAIL" or len(good) < len(kept)
    return {
        "name": plan.name, "description": plan.description, "total_bytes": size, "total_files": 1,
        "cold_cache": bool(cache.cold), "destination": plan.destination,
        "runs_per_tool": {"xfer": args.runs, "xfer-resume": args.runs},
        "tools": {},   # not a throughput comparison: kept out of the main table and the chart
        "full_runs": rows["xfer"], "resumed_runs": rows["xfer-resume"], "resume": res,
        "runs": {t: [dataclasses.asdict(x) for x in oc.runs] for t, oc in (("xfer", full), ("xfer-resume", resumed))},
        "discarded_busy_runs": {t: [dataclasses.asdict(x) for x in oc.discarded]
                                for t, oc in (("xfer", full), ("xfer-resume", resumed)) if oc.discarded},
        "failed": failed,
    }


def _kill_resume_pair(plan: ScenarioPlan, oc: "ToolOutcome", r: int, args, cache: "CacheControl",
                      logdir: str, size: int) -> dict:
    pair: dict = {"run": r + 1, "ok": False}
    try:
        if plan.prepare_run:
            plan.prepare_run()
        rm_rf(plan.dest_dir)
        reset_xfer_state()
        os.makedirs(plan.dest_dir)
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        cache.drop()
        k = kill_at_wchar(oc.argv, int(size * RESUME_KILL_FRACTION),
                          os.path.join(logdir, f"{plan.name}-kill-run{r + 1}.log"), args.timeout)
        pair["kill"] = k
        name = os.path.basename(plan.output)
        pair["partials_after_kill"] = _partials(plan.dest_dir, name)
        pair["state_after_kill"] = _state_files()
        if not k.get("killed"):
            oc.status = "FAIL"
            pair["error"] = k.get("error", "not killed")
            log(f"FAIL {plan.name} pair {r + 1}: {pair['error']}")
            return pair
        log(f"{plan.name} pair {r + 1}: SIGKILL after {k['kill_after_s']:.2f} s at wchar "
            f"{k['wchar_at_kill']} ({100.0 * k['wchar_at_kill'] / size:.1f}%); partial {pair['partials_after_kill']}")
        cold = cache.drop()   # not timed: flushes the killed run's dirty pages, then cold cache
        _one_run(plan, oc, "xfer-resume", r, args, cold, os.path.join(logdir, f"{plan.name}-resume-run{r + 1}.log"))
        rr = oc.runs[-1]
        pair["seconds"] = rr.seconds
        pair["summary"] = rr.summary
        pair["partials_after_resume"] = _partials(plan.dest_dir, name)
        pair["state_after_resume"] = _state_files()
        if rr.exit_code != 0 or rr.verified is False or rr.seconds is None:
            pair["error"] = rr.error or rr.verify_msg or "resumed run failed"
            return pair
        s = rr.summary or {}
        if "bytes" not in s:
            oc.status = "FAIL"
            pair["error"] = "no --json summary in the resumed run's log"
            log(f"FAIL {plan.name} pair {r + 1}: {pair['error']}")
            return pair
        pair["bytes"] = s["bytes"]
        pair["bytes_resumed"] = s.get("bytes_resumed")
        pair["resent_bytes"] = k["wchar_at_kill"] + s["bytes"] - size
        if pair["partials_after_resume"]:
            oc.status = "FAIL"
            pair["error"] = f"partial left after the resumed run: {pair['partials_after_resume']}"
            log(f"FAIL {plan.name} pair {r + 1}: {pair['error']}")
            return pair
        pair["ok"] = True
        log(f"{plan.name} pair {r + 1}: resumed in {rr.seconds:.3f} s, sent {s['bytes']} B, "
            f"bytes_resumed {s.get('bytes_resumed')}, re-sent {pair['resent_bytes'] / MiB:.1f} MiB")
        return pair
    finally:
        if plan.finish_run:
            plan.finish_run()


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


class ServerError(RuntimeError):
    pass


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


PLACEHOLDER_RE = re.compile(r"@([A-Z][A-Z0-9_]*)@")


def expand_argv(argv: list[str], values: dict[str, str]) -> list[str]:
    """Replace @NAME@ by values[NAME]; a placeholder without a value is an error."""
    out = []
    for a in argv:
        def sub(m: re.Match) -> str:
            if m.group(1) not in values:
                raise ServerError(f"no value for @{m.group(1)}@ (server not started?)")
            return values[m.group(1)]
        out.append(PLACEHOLDER_RE.sub(sub, a))
    return out


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


# ----- xferd-mem: N concurrent clients against one xferd

def ensure_mem_dataset(netdir: str, clients: int, big: int, nfiles: int, fsize: int, per_dir: int = 100) -> str:
    """clients x (one `big`-byte file + a tree of nfiles x fsize); each client's data is its own."""
    root = os.path.join(netdir, "data", f"mem-{clients}x{big}+{nfiles}x{fsize}")
    want = {"kind": "mem", "clients": clients, "big": big, "nfiles": nfiles, "fsize": fsize,
            "per_dir": per_dir, "version": DATASET_VERSION}
    if _marker_ok(root, want):
        log(f"xferd-mem dataset reused: {root}")
        return root
    rm_rf(root)
    os.makedirs(root)
    log(f"generating xferd-mem dataset {root} ({clients} clients x ({human_bytes(big)} + {nfiles} x "
        f"{human_bytes(fsize)})) ...")
    for c in range(clients):
        cdir = os.path.join(root, f"c{c:03d}")
        os.makedirs(os.path.join(cdir, "tree"))
        with open(os.path.join(cdir, "big.bin"), "wb") as f:
            left = big
            while left:
                n = min(left, 8 * MiB)
                f.write(os.urandom(n))
                left -= n
        for i in range(nfiles):
            d = os.path.join(cdir, "tree", f"d{i // per_dir:03d}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"f{i % per_dir:04d}.bin"), "wb") as f:
                f.write(os.urandom(fsize))
    _write_marker(root, want)
    return root


def scenario_xferd_mem(ctx: Ctx) -> ScenarioPlan:
    a = ctx.args
    data = ensure_mem_dataset(ctx.netdir, a.mem_clients, a.mem_file_size, a.mem_tree_files, a.mem_tree_file_size)
    root = _net_root(ctx, "srv")
    tools = {"xfer": _xfer_tool(ctx, [ctx.xfer, "transfer", "-r", "@CLIENT@", "xfer://@XFER_A@/dst/", "--token",
                                      "@TOKEN@", *xfer_net_flags(ctx), *ctx.xfer_args], ["xferd"])}
    per = a.mem_file_size + a.mem_tree_files * a.mem_tree_file_size
    plan = _net_plan(ctx, "xferd-mem",
                     f"{a.mem_clients} concurrent clients, each uploads {human_bytes(a.mem_file_size)} + "
                     f"{a.mem_tree_files} x {human_bytes(a.mem_tree_file_size)}",
                     a.mem_clients * per, a.mem_clients * (1 + a.mem_tree_files), root,
                     os.path.join(root, "dst"), tools, None,
                     [{"label": "xferd peak RSS <= 300 MiB", "kind": "server_rss", "tool": "xfer", "max_mib": 300.0}])
    plan.tool_names = ["xfer"]
    clients = sorted(os.path.join(data, d) for d in os.listdir(data) if d.startswith("c"))
    plan.runner = lambda args, cache, logdir: run_xferd_mem(plan, clients, args, cache, logdir)
    return plan


def run_xferd_mem(plan: ScenarioPlan, clients: list[str], args, cache: "CacheControl", logdir: str) -> dict:
    spec = plan.tools["xfer"]
    oc = ToolOutcome("xfer", spec.argv)
    missing = missing_binaries(spec)
    if missing:
        oc.status = "missing (" + ", ".join(os.path.basename(m) for m in missing) + ")"
        log(f"{plan.name}/xfer: {oc.status}")
    else:
        for r in range(args.runs):
            for attempt in range(1 + args.busy_retries):
                if attempt:
                    oc.discarded.append(oc.runs.pop())
                    log(f"{plan.name} run {r + 1}: BUSY, discarded; retry {attempt}/{args.busy_retries}")
                _mem_round(plan, oc, clients, r, args, logdir)
                if not oc.runs[-1].busy:
                    break
    rm_rf(plan.dest_dir)
    reset_xfer_state()
    rows = summarize(plan, {"xfer": oc}, None)
    return scenario_entry(plan, {"xfer": oc}, rows, args, cache)


def _mem_round(plan: ScenarioPlan, oc: "ToolOutcome", clients: list[str], r: int, args, logdir: str) -> None:
    rm_rf(plan.dest_dir)
    reset_xfer_state()
    os.makedirs(plan.dest_dir)
    base = os.path.join(logdir, f"{plan.name}-xfer-run{r + 1}")
    srv = plan.servers["xferd"](base)
    rr = RunResult(r + 1, None, None, None, None, None, False, log_file=base + ".cNNN.log")
    try:
        try:
            srv.start()
        except ServerError as e:
            rr.error, rr.verified = str(e), False
            oc.status = "FAIL"
            log(f"FAIL {plan.name} run {r + 1}: {e}")
            return
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        os.sync()
        procs = []
        before = cpu_snapshot()
        timed_out: list[bool] = []
        t0 = time.perf_counter()
        try:
            for i, cdir in enumerate(clients):
                argv = expand_argv(oc.argv, {**srv.vars, "CLIENT": cdir})
                lp = f"{base}.c{i:03d}.log"
                full = [GNU_TIME, "-f", "%M", "-o", lp + ".rss", *argv] if GNU_TIME else argv
                env = dict(os.environ, XFER_STATE_DIR=os.path.join(STATE_DIR or plan.dest_dir + ".state", f"c{i:03d}"))
                with open(lp, "wb") as lf:
                    lf.write(("$ " + shlex.join(argv) + "\n").encode())
                    lf.flush()
                    procs.append((subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.STDOUT,
                                                   close_fds=True, start_new_session=True, env=env), lp, cdir))
            killer = None
            if args.timeout:
                def _expire() -> None:
                    timed_out.append(True)
                    for p, _, _ in procs:
                        _kill_quiet(p.pid)
                killer = threading.Timer(args.timeout, _expire)
                killer.daemon = True
                killer.start()
            ends = []
            for p, _, _ in procs:
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                ends.append(time.perf_counter() - t0)
            if killer:
                killer.cancel()
        except BaseException:
            for p, _, _ in procs:
                _kill_quiet(p.pid)
                try:
                    p.wait()
                except ChildProcessError:
                    pass
            raise
        wall = time.perf_counter() - t0
        rr.foreign_cpu_s, rr.foreign_top = foreign_cpu(before, cpu_snapshot())
        rr.seconds, rr.cmd_seconds, rr.sync_seconds = wall, wall, 0.0
        rr.rss_source = "GNU time (max over the clients)" if GNU_TIME else "wait4 (includes harness RSS floor)"
        rr.clients = []
        rss_all, bad = [], []
        for (p, lp, cdir), end in zip(procs, ends):
            c: dict = {"client": os.path.basename(cdir), "exit_code": p.returncode, "seconds": end, "log_file": lp}
            try:
                with open(lp + ".rss") as f:
                    c["maxrss_kib"] = int(f.read().split()[-1])
                    rss_all.append(c["maxrss_kib"])
                os.unlink(lp + ".rss")
            except (OSError, ValueError, IndexError):
                pass
            s = xfer_summary(lp)
            if s:
                c["bytes"], c["files"] = s.get("bytes"), s.get("files")
            if p.returncode != 0:
                bad.append(f"{c['client']}: exit code {p.returncode}")
            elif not args.no_verify:
                ok, msg = make_tree_verifier(cdir, sample=20)(os.path.join(plan.dest_dir, os.path.basename(cdir)),
                                                              args.check_full)
                c["verified"], c["verify_msg"] = ok, msg
                if not ok:
                    bad.append(f"{c['client']}: {msg}")
            rr.clients.append(c)
        rr.maxrss_kib = max(rss_all) if rss_all else None
        rcs = [p.returncode for p, _, _ in procs]
        rr.exit_code = next((rc for rc in rcs if rc != 0), 0)
        rr.busy = rr.foreign_cpu_s > max(BUSY_MIN_S, BUSY_FRACTION * wall)
        if timed_out:
            rr.error = f"timed out after {args.timeout:g} s (all clients killed)"
        if bad or timed_out:
            rr.verified = False
            rr.verify_msg = f"{len(bad)}/{len(procs)} clients failed: " + "; ".join(bad[:5])
            oc.status = "FAIL"
            log(f"FAIL {plan.name} run {r + 1}: {rr.error or rr.verify_msg}\n{_tail(procs[0][1]) if procs else ''}")
        else:
            rr.verified = None if args.no_verify else True
            rr.verify_msg = f"{len(procs)}/{len(procs)} clients exit 0" + ("" if args.no_verify else ", outputs verified")
    finally:
        st = srv.stop()
        rr.servers = {srv.name: st}
        rr.server_rss_kib, rr.server_rss_source = st.get("peak_kib"), "xferd VmHWM"
        oc.runs.append(rr)
        if rr.seconds is not None:
            log(f"{plan.name} run {r + 1}/{args.runs}: {rr.seconds:.3f} s, xferd VmHWM "
                f"{(rr.server_rss_kib or 0) / 1024:.1f} MiB, clients max RSS {(rr.maxrss_kib or 0) / 1024:.1f} MiB; "
                f"{rr.verify_msg}" + (f"; BUSY ({rr.foreign_top})" if rr.busy else ""))


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
# fio disk ceiling


def run_fio(workdir: str, size: int) -> dict:
    if not shutil.which("fio"):
        return {"error": "fio not installed"}
    path = os.path.join(workdir, "fio.tmp")
    res: dict = {"size": size, "bs": "4M", "iodepth": 16, "direct": 1}
    try:
        for engine in ("io_uring", "libaio"):
            ok = True
            for rw in ("write", "read"):
                argv = ["fio", f"--name=seq{rw}", f"--filename={path}", f"--rw={rw}", "--bs=4M",
                        "--iodepth=16", f"--ioengine={engine}", "--direct=1", f"--size={size}",
                        "--numjobs=1", "--output-format=json"]
                if rw == "write":
                    argv.append("--end_fsync=1")
                log("fio: " + shlex.join(argv))
                p = subprocess.run(argv, capture_output=True, text=True)
                try:
                    data = json.loads(p.stdout[p.stdout.index("{"):])
                    job = data["jobs"][0]
                    if job.get("error"):
                        raise ValueError(f"job error {job['error']}")
                    bw = job[rw]["bw_bytes"]
                except (ValueError, KeyError, IndexError) as e:
                    log(f"fio {rw} with {engine} failed: {e}; {p.stderr.strip()[:300]}")
                    ok = False
                    break
                res[f"{rw}_bytes_per_s"] = bw
            if ok:
                res["ioengine"] = engine
                res["ceiling_bytes_per_s"] = min(res["write_bytes_per_s"], res["read_bytes_per_s"])
                log(f"fio: write {res['write_bytes_per_s'] / 1e6:.0f} MB/s, "
                    f"read {res['read_bytes_per_s'] / 1e6:.0f} MB/s ({engine})")
                return res
        return {"error": "fio failed with io_uring and libaio (see log)"}
    finally:
        if os.path.exists(path):
            os.unlink(path)


# --------------------------------------------------------------------------
# machine description


def machine_info(workdir: str, xfer: str, xferd: str | None = None) -> dict:
    info: dict = {}
    info["hostname"] = platform.node()
    info["nproc"] = os.cpu_count()
    try:
        info["nproc_available"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    u = os.uname()
    info["kernel"] = f"{u.sysname} {u.release} {u.machine}"
    fm = first_line(["findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", workdir])
    if fm:
        parts = fm.split(None, 2)
        info["workdir_fstype"] = parts[0]
        info["workdir_device"] = parts[1] if len(parts) > 1 else ""
        info["workdir_mount_options"] = parts[2] if len(parts) > 2 else ""
    info["python"] = platform.python_version()
    versions = {
        "cp": first_line(["cp", "--version"]),
        "rsync": first_line(["rsync", "--version"]),
        "rclone": first_line(["rclone", "--config", "/dev/null", "version"]),
        "fio": first_line(["fio", "--version"]),
        "gnuplot": first_line(["gnuplot", "--version"]),
    }
    if os.access(xfer, os.X_OK):
        versions["xfer"] = first_line([xfer, "--version"], need_ok=True) or f"{xfer} (no --version)"
        try:
            with open(xfer, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            mtime = _dt.datetime.fromtimestamp(os.path.getmtime(xfer)).astimezone().isoformat(timespec="seconds")
            info["xfer_binary"] = {"path": xfer, "sha256": digest, "mtime": mtime}
        except OSError:
            pass
    else:
        versions["xfer"] = None
    if xferd is not None:
        for t, argv in (("ssh", ["ssh", "-V"]), ("iperf3", ["iperf3", "--version"]), ("tar", ["tar", "--version"])):
            versions[t] = first_line(argv) if shutil.which(argv[0]) else None
        if os.access(xferd, os.X_OK):
            versions["xferd"] = first_line([xferd, "--version"], need_ok=True) or f"{xferd} (no --version)"
            try:
                with open(xferd, "rb") as f:
                    digest = hashlib.file_digest(f, "sha256").hexdigest()
                mtime = _dt.datetime.fromtimestamp(os.path.getmtime(xferd)).astimezone().isoformat(timespec="seconds")
                info["xferd_binary"] = {"path": xferd, "sha256": digest, "mtime": mtime}
            except OSError:
                pass
        else:
            versions["xferd"] = None
    info["versions"] = versions
    return info


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


# --------------------------------------------------------------------------
# runner


@dataclass
class ToolOutcome:
    tool: str
    argv: list[str]
    status: str = "ok"   # ok | not installed | FAIL
    runs: list[RunResult] = field(default_factory=list)
    discarded: list[RunResult] = field(default_factory=list)   # BUSY runs that were redone


def _have(b: str) -> bool:
    if os.sep in b:
        return os.path.isfile(b) and os.access(b, os.X_OK)
    return shutil.which(b) is not None


def missing_binaries(spec: ToolSpec) -> list[str]:
    return [b for b in [spec.binary, *spec.requires] if not _have(b)]


def tool_available(spec: ToolSpec) -> bool:
    return not missing_binaries(spec)


def parse_iperf3(log_path: str) -> float | None:
    """end.sum_received.bits_per_second of an `iperf3 -J` log (after the harness's `$ cmd` line)."""
    try:
        with open(log_path, errors="replace") as f:
            text = f.read()
        d = json.loads(text[text.index("{"):text.rindex("}") + 1])
        return float(d["end"]["sum_received"]["bits_per_second"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _one_run(plan: ScenarioPlan, oc: "ToolOutcome", t: str, r: int, args, cold: bool, log_path: str) -> None:
    spec = plan.tools.get(t)
    ceiling = spec is not None and spec.kind == "ceiling"
    before = cpu_snapshot()
    try:
        argv = expand_argv(oc.argv, plan.run_vars)
        cmd_s, sync_s, rc, rss, rss_src = timed_exec(argv, log_path, args.timeout, sync=not plan.in_memory)
    except (OSError, ServerError) as e:  # OSError includes TimeoutError
        what = str(e) if isinstance(e, TimeoutError) else f"exec failed: {e}"
        oc.runs.append(RunResult(r + 1, None, None, None, None, None, cold, False, "", what, log_path))
        oc.status = "FAIL"
        log(f"FAIL {plan.name}/{t} run {r + 1}: {what}")
        return
    rr = RunResult(r + 1, cmd_s + sync_s, cmd_s, sync_s, rss, rc, cold, log_file=log_path,
                   rss_source=rss_src)
    rr.foreign_cpu_s, rr.foreign_top = foreign_cpu(before, cpu_snapshot())
    # the tool itself was reaped by GNU time / the harness: it never shows up in `after`
    if rr.foreign_cpu_s > max(BUSY_MIN_S, BUSY_FRACTION * rr.seconds):
        rr.busy = True
        log(f"WARNING {plan.name}/{t} run {r + 1}: machine NOT quiet: other processes used "
            f"{rr.foreign_cpu_s:.1f} s CPU during the run ({rr.foreign_top})")
    if "--json" in oc.argv:
        rr.summary = xfer_summary(log_path)
    if rc != 0:
        rr.error = f"exit code {rc}"
        rr.verified = False
        tail = _tail(log_path)
        log(f"FAIL {plan.name}/{t} run {r + 1}: exit code {rc}\n{tail}")
        oc.status = "FAIL"
    elif ceiling:   # iperf3: nothing to verify, the rate is the result
        rr.ceiling_bps = parse_iperf3(log_path)
        rr.verified = rr.ceiling_bps is not None
        rr.verify_msg = (f"{rr.ceiling_bps / 1e9:.2f} Gbit/s received" if rr.verified
                         else "no end.sum_received.bits_per_second in the iperf3 -J output")
        if not rr.verified:
            oc.status = "FAIL"
            log(f"FAIL {plan.name}/{t} run {r + 1}: {rr.verify_msg}")
    elif not args.no_verify:
        ok, msg = plan.verify(plan.output, args.check_full)
        rr.verified, rr.verify_msg = ok, msg
        if not ok:
            oc.status = "FAIL"
            log(f"FAIL {plan.name}/{t} run {r + 1}: wrong result: {msg}")
    log(f"{plan.name}/{t} run {r + 1}/{runs_for(args, t)}: {rr.seconds:.3f} s "
        f"(cmd {cmd_s:.3f} + sync {sync_s:.3f}), maxrss {rss / 1024:.1f} MiB, rc {rc}"
        + (f", verify: {rr.verify_msg}" if rr.verify_msg else "")
        + ("" if cold or plan.in_memory else ", WARM cache"))
    oc.runs.append(rr)


def xfer_summary(log_path: str) -> dict | None:
    """The last `{"event":"summary",...}` JSON line of an `xfer cp --json` log, or None."""
    try:
        with open(log_path, errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("event") == "summary":
                return d
    return None


def runs_for(args, tool: str) -> int:
    return (getattr(args, "tool_runs", None) or {}).get(tool, args.runs)


def run_scenario(plan: ScenarioPlan, tools: list[str], args, cache: CacheControl, logdir: str) -> dict[str, ToolOutcome]:
    outcomes: dict[str, ToolOutcome] = {}
    active: list[str] = []
    for t in tools:
        spec = plan.tools.get(t)
        if spec is None:
            continue
        oc = ToolOutcome(t, spec.argv)
        outcomes[t] = oc
        missing = missing_binaries(spec)
        if missing:
            oc.status = ("missing (" + ", ".join(os.path.basename(m) for m in missing) + ")") if plan.network \
                else "not installed"
            log(f"{plan.name}/{t}: {'missing' if plan.network else 'not installed'} ({', '.join(missing)})")
        else:
            active.append(t)
    for r in range(max([runs_for(args, t) for t in active], default=0)):
        # round-robin, rotated each round so no tool always runs first
        order = active[r % len(active):] + active[: r % len(active)] if active else []
        for t in order:
            if r >= runs_for(args, t):
                continue
            _run_with_retries(plan, outcomes[t], t, r, args, cache, logdir)
    rm_rf(plan.dest_dir)
    return outcomes


def _run_with_retries(plan: ScenarioPlan, oc: "ToolOutcome", t: str, r: int, args, cache: "CacheControl",
                      logdir: str) -> None:
    """One timed run; redone (up to --busy-retries times) while it is flagged BUSY."""
    for attempt in range(1 + args.busy_retries):
        if attempt:
            dropped = oc.runs.pop()
            oc.discarded.append(dropped)
            log(f"{plan.name}/{t} run {r + 1}: BUSY, discarded ({dropped.seconds:.3f} s, "
                f"{dropped.foreign_top}); retry {attempt}/{args.busy_retries}")
        _prepare_and_run(plan, oc, t, r, args, cache, logdir)
        if not (oc.runs and oc.runs[-1].busy):
            break


def _prepare_and_run(plan: ScenarioPlan, oc: "ToolOutcome", t: str, r: int, args, cache: "CacheControl",
                     logdir: str) -> None:
    servers: list[ManagedServer] = []
    n_runs = len(oc.runs)
    log_path = os.path.join(logdir, f"{plan.name}-{t}-run{r + 1}.log")
    spec = plan.tools.get(t)
    try:
        if plan.prepare_run:
            plan.prepare_run()
        rm_rf(plan.dest_dir)   # also removes xfer's partials (DST/.NAME.xfer-part-*) of a killed run
        reset_xfer_state()     # no job of an earlier (killed) run may be resumed
        os.makedirs(plan.dest_dir)
        for d in plan.scratch_dirs:
            rm_rf(d)
            os.makedirs(d)
        if plan.pause_after_delete:
            os.sync()  # freed inodes in clean table blocks: 60 s window, not 360 s (until a create dirties them)
            log(f"{plan.name}: pausing {plan.pause_after_delete:.0f} s (untimed) after deleting DST")
            time.sleep(plan.pause_after_delete)
        plan.run_vars = {}
        if spec is not None and spec.servers:   # fresh servers for this run (untimed)
            try:
                for name in spec.servers:
                    srv = plan.servers[name](log_path[:-len(".log")])
                    servers.append(srv)
                    srv.start()
                    plan.run_vars.update(srv.vars)
            except ServerError as e:
                oc.runs.append(RunResult(r + 1, None, None, None, None, None, False, False, "", str(e), log_path))
                oc.status = "FAIL"
                log(f"FAIL {plan.name}/{t} run {r + 1}: server did not start: {e}")
                return
        if args.wait_quiet > 0:
            wait_quiet(args.wait_quiet)
        if plan.in_memory:
            os.sync()      # tmpfs: nothing to drop; the sync only flushes other processes' dirty data, untimed
            cold = False
        else:
            cold = cache.drop()
        _one_run(plan, oc, t, r, args, cold, log_path)
    finally:
        stats = [s.stop() for s in servers]   # after the verification; never raises
        if stats and len(oc.runs) > n_runs:
            rr = oc.runs[-1]
            rr.servers = {st["name"]: st for st in stats}
            peaks = [(s.peak_kib(), s) for s in servers if s.peak_kib() is not None]
            if peaks:
                rr.server_rss_kib = max(k for k, _ in peaks)
                rr.server_rss_source = ", ".join(sorted({("xferd VmHWM" if s.rss_mode == "vmhwm" else
                                                         f"{s.name} process tree (GNU time)") for _, s in peaks}))
            if len(peaks) > 1:
                rr.server_rss_source += " (max of " + ", ".join(f"{s.name} {k / 1024:.1f} MiB" for k, s in peaks) + ")"
            bad = [st for st in stats if st.get("killed")]
            if bad:
                log(f"{plan.name}/{t} run {r + 1}: server(s) needed SIGKILL: {[st['name'] for st in bad]}")
        for d in plan.scratch_dirs:   # e.g. via-client's staged copy: free the memory now
            rm_rf(d)
        if plan.finish_run:
            plan.finish_run()


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def summarize(plan: ScenarioPlan, outcomes: dict[str, ToolOutcome], fio: dict | None) -> dict:
    rows = {}
    for t, oc in outcomes.items():
        good = [r for r in oc.runs if r.seconds is not None and r.exit_code == 0 and r.verified is not False]
        row: dict = {"status": oc.status, "argv": oc.argv, "n_ok": len(good),
                     "busy_runs": sum(1 for r in oc.runs if r.busy)}
        spec = plan.tools.get(t)
        if good and spec is not None and spec.kind == "ceiling":
            # iperf3: the rate is the result; "seconds" = the time the dataset would take at that rate
            bps = [r.ceiling_bps for r in good]
            row["ceiling"] = True
            row["median_bps"] = statistics.median(bps)
            row["median_MBps"] = row["median_bps"] / 8 / 1e6
            row["median_s"] = plan.total_bytes * 8 / row["median_bps"]
            row["min_s"] = plan.total_bytes * 8 / max(bps)
            row["max_s"] = plan.total_bytes * 8 / min(bps)
            row["median_files_per_s"] = plan.total_files / row["median_s"]
            row["peak_rss_kib"] = max(r.maxrss_kib for r in good)
        elif good:
            secs = [r.seconds for r in good]
            row["median_s"] = statistics.median(secs)
            row["min_s"] = min(secs)
            row["max_s"] = max(secs)
            row["median_MBps"] = statistics.median(plan.total_bytes / s / 1e6 for s in secs)
            row["median_files_per_s"] = statistics.median(plan.total_files / s for s in secs)
            row["peak_rss_kib"] = max(r.maxrss_kib for r in good)
            if fio and fio.get("ceiling_bytes_per_s"):
                row["pct_of_disk"] = 100.0 * row["median_MBps"] * 1e6 / fio["ceiling_bytes_per_s"]
        srss = [r.server_rss_kib for r in good if r.server_rss_kib is not None]
        if srss:
            row["server_peak_rss_kib"] = max(srss)
            row["server_rss_source"] = next(r.server_rss_source for r in good if r.server_rss_kib is not None)
        rows[t] = row
    x = rows.get("xfer", {}).get("median_s")
    for t, row in rows.items():
        if x and row.get("median_s") and not row.get("ceiling"):
            row["peer_over_xfer"] = row["median_s"] / x
    ceil = next((row for row in rows.values() if row.get("ceiling") and row.get("median_MBps")), None)
    if ceil:
        for row in rows.values():
            if row.get("median_MBps") and not row.get("ceiling"):
                row["pct_of_ceiling"] = 100.0 * row["median_MBps"] / ceil["median_MBps"]
    return rows


def evaluate_targets(targets: list[dict], rows: dict) -> list[dict]:
    """Each target -> {label, measured, verdict: met | missed | n/a}."""
    out = []
    for tg in targets:
        e = {"label": tg["label"], "verdict": "n/a", "measured": ""}
        k = tg["kind"]
        x = rows.get("xfer", {})
        if k == "speedup":
            p = rows.get(tg["peer"], {})
            if x.get("median_s") and p.get("median_s"):
                v = p["median_s"] / x["median_s"]
                e["value"] = v
                e["measured"] = f"{tg['peer']} {p['median_s']:.3f} s / xfer {x['median_s']:.3f} s = {v:.2f}x"
                e["verdict"] = "met" if v >= tg["min"] else "missed"
            else:
                e["measured"] = "; ".join(f"{n}: {rows.get(n, {}).get('status', 'not run')}"
                                          for n in ("xfer", tg["peer"]) if not rows.get(n, {}).get("median_s"))
        elif k == "pct_ceiling":
            if x.get("pct_of_ceiling") is not None:
                v = x["pct_of_ceiling"]
                ceil = next(r for r in rows.values() if r.get("ceiling"))
                e["value"] = v
                e["measured"] = (f"xfer {x['median_MBps'] * 8 / 1000:.2f} Gbit/s of iperf3 "
                                 f"{ceil['median_bps'] / 1e9:.2f} Gbit/s = {v:.0f}%")
                e["verdict"] = "met" if v >= tg["min"] else "missed"
            else:
                ceil_row = next((r for n, r in rows.items() if n == "iperf3"), {})
                e["measured"] = (f"xfer: {x.get('status', 'not run')}; "
                                 f"iperf3: {ceil_row.get('status', 'not run')}")
        elif k == "server_rss":
            r = rows.get(tg["tool"], {})
            if r.get("server_peak_rss_kib") is not None:
                v = r["server_peak_rss_kib"] / 1024
                e["value"] = v
                e["measured"] = f"{v:.1f} MiB ({r.get('server_rss_source', '')}, max over runs)"
                e["verdict"] = "met" if v <= tg["max_mib"] else "missed"
            else:
                e["measured"] = f"{tg['tool']}: {r.get('status', 'not run')}"
        out.append(e)
    return out


def scenario_entry(plan: ScenarioPlan, outcomes: dict[str, "ToolOutcome"], rows: dict, args,
                   cache: "CacheControl") -> dict:
    entry = {
        "name": plan.name, "description": plan.description, "total_bytes": plan.total_bytes,
        "total_files": plan.total_files, "cold_cache": bool(cache.cold) and not plan.in_memory,
        "destination": plan.destination,
        "runs_per_tool": {t: runs_for(args, t) for t in outcomes},
        "tools": rows,
        "runs": {t: [dataclasses.asdict(r) for r in oc.runs] for t, oc in outcomes.items()},
        "discarded_busy_runs": {t: [dataclasses.asdict(r) for r in oc.discarded]
                                for t, oc in outcomes.items() if oc.discarded},
    }
    if plan.network:
        entry["network"] = True
        entry["in_memory"] = plan.in_memory
        entry["notes"] = plan.notes
        entry["targets"] = evaluate_targets(plan.targets, rows)
        entry["failed"] = any(oc.status == "FAIL" for oc in outcomes.values())
    return entry


CKPT_KEYS = ["records", "fsyncs", "journal_bytes", "done_index_bytes", "compactions", "snapshots",
             "max_queue_depth", "max_flush_lag_us", "backpressure_waits"]


def ckpt_compare(plan: ScenarioPlan, outcomes: dict[str, ToolOutcome], rows: dict) -> dict:
    """Throughput cost of `tool` vs `baseline` (plan.compare), from the medians and per round
    (the two runs of a round are back to back), plus the checkpoint figures of tool's --json summaries."""
    t, b = plan.compare
    res: dict = {"tool": t, "baseline": b}
    mt, mb = rows.get(t, {}).get("median_MBps"), rows.get(b, {}).get("median_MBps")
    if mt and mb:
        res["cost_pct"] = 100.0 * (1.0 - mt / mb)   # throughput lost, % of the baseline's
    ok = lambda r: r.seconds is not None and r.exit_code == 0 and r.verified is not False
    tr = {r.run: r for r in outcomes[t].runs if ok(r)} if t in outcomes else {}
    br = {r.run: r for r in outcomes[b].runs if ok(r)} if b in outcomes else {}
    paired = [100.0 * (1.0 - br[n].seconds / tr[n].seconds) for n in sorted(tr) if n in br]
    if paired:
        res["paired_cost_pct"] = paired
        res["median_paired_cost_pct"] = statistics.median(paired)
    sums = [r.summary.get("checkpoint") for r in tr.values() if r.summary and r.summary.get("checkpoint")]
    if sums:
        res["checkpoint_runs"] = sums
        res["checkpoint"] = {k: {"median": statistics.median(c.get(k, 0) for c in sums),
                                 "min": min(c.get(k, 0) for c in sums), "max": max(c.get(k, 0) for c in sums)}
                             for k in CKPT_KEYS}
    return res


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
    ctx = Ctx(args, workdir, xfer, shlex.split(args.xfer_args), netdir=netdir, xferd=os.path.abspath(args.xferd))
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
                   "rootfs_pause": args.rootfs_pause, "xfer_state_dir": STATE_DIR,
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
