"""Checkpoint scenarios of the xfer benchmark (issue 4): ckpt-large, ckpt-small, resume-large.

Owns: xfer vs xfer --no-checkpoint (CKPT_TOOLS, ckpt_compare and its
CKPT_KEYS), and kill + resume (kill_at_wchar, run_resume, the kill/resume
pairs). Builds on the local scenarios' plans (local.scenario_large,
local._small_plan).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import signal
import statistics
import subprocess
import time

from . import harness
from .harness import (MiB, CacheControl, Ctx, FreshExt4, ScenarioPlan, ToolOutcome, ToolSpec, _kill_quiet,
                      _one_run, _run_with_retries, ensure_large_dataset, ensure_small_dataset, human_bytes, log,
                      reset_xfer_state, rm_rf, summarize, tool_available, verify_large, wait_quiet, xfer_quiet)
from .local import _small_plan, scenario_large


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
    if harness.STATE_DIR and os.path.isdir(harness.STATE_DIR):
        for d, _, fs in os.walk(harness.STATE_DIR):
            out += [os.path.relpath(os.path.join(d, f), harness.STATE_DIR) for f in fs]
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
