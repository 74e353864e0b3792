"""Shared parts of the xfer benchmark harness (bench/bench.py).

Owns: constants and small helpers, XFER_STATE_DIR handling, cache control,
timed execution (timed_exec, RunResult, GNU time), the "is the machine
quiet?" guard (CPU snapshots, wait_quiet), datasets and their verification,
the fresh journaled ext4 destination (FreshExt4), the plan types (ToolSpec,
ScenarioPlan, ScenarioDef, Ctx), @NAME@ placeholders and ServerError, fio,
the machine description, and the generic runner (run_scenario, retries,
summarize, evaluate_targets, scenario_entry).

It imports none of the scenario modules (local, ckpt, net, mem); they import
it. Module globals that change at run time (STATE_DIR) are read as
harness.STATE_DIR by the other modules, never copied.
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
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:   # annotations only: harness never imports the scenario modules at run time
    from .net import ManagedServer, NetEnv

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # bench/
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
# scenario plans (the scenarios themselves: local.py, ckpt.py, net.py, mem.py)


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
    net_env: Callable[[str, str], "NetEnv"] | None = None   # net.NetEnv, passed in by main (harness does not import net)

    @property
    def net(self) -> "NetEnv":
        if self._net is None:
            self._net = self.net_env(self.netdir, self.xferd)
        return self._net


def xfer_quiet(ctx: Ctx) -> list[str]:
    """`-q` unless the user already silenced the progress line: it must never be drawn."""
    return [] if any(a in ("-q", "--quiet", "--no-progress") for a in ctx.xfer_args) else ["-q"]


# ----- @NAME@ placeholders in tool argv, filled in with what the servers publish
# (net.ManagedServer); the runner and xferd-mem expand them.


class ServerError(RuntimeError):
    pass


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


def _describe_binary(name: str, path: str, versions: dict, info: dict) -> None:
    """versions[name]: the binary's --version line (None when not
    executable); info[name + "_binary"]: its path, sha256 and mtime."""
    if not os.access(path, os.X_OK):
        versions[name] = None
        return
    versions[name] = first_line([path, "--version"], need_ok=True) or f"{path} (no --version)"
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        mtime = _dt.datetime.fromtimestamp(os.path.getmtime(path)).astimezone().isoformat(timespec="seconds")
        info[f"{name}_binary"] = {"path": path, "sha256": digest, "mtime": mtime}
    except OSError:
        pass


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
    _describe_binary("xfer", xfer, versions, info)
    if xferd is not None:
        for t, argv in (("ssh", ["ssh", "-V"]), ("iperf3", ["iperf3", "--version"]), ("tar", ["tar", "--version"])):
            versions[t] = first_line(argv) if shutil.which(argv[0]) else None
        _describe_binary("xferd", xferd, versions, info)
    info["versions"] = versions
    return info


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
