"""xferd-mem scenario of the xfer benchmark (issue 3): N concurrent clients against one xferd.

Owns its dataset (ensure_mem_dataset), plan and custom runner (all clients
started at once, xferd VmHWM and wall time). Uses the network helpers of
net.py and the runner pieces of harness.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time

from . import harness
from .harness import (BUSY_FRACTION, BUSY_MIN_S, DATASET_VERSION, GNU_TIME, MiB, CacheControl, Ctx, RunResult,
                      ScenarioPlan, ServerError, ToolOutcome, _kill_quiet, _marker_ok, _tail, _write_marker,
                      cpu_snapshot, expand_argv, foreign_cpu, human_bytes, log, make_tree_verifier,
                      missing_binaries, reset_xfer_state, rm_rf, scenario_entry, summarize, wait_quiet,
                      xfer_summary)
from .net import _net_plan, _net_root, _xfer_tool, xfer_net_flags


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
                env = dict(os.environ, XFER_STATE_DIR=os.path.join(harness.STATE_DIR or plan.dest_dir + ".state", f"c{i:03d}"))
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
