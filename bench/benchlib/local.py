"""Local scenarios of the xfer benchmark: large, small, small-rootfs.

xfer cp against cp, rsync and rclone on the workdir's disk, cold cache,
sync included. Owns the scenario builders and SMALL_ROOTFS_PAUSE; the
runner, datasets and FreshExt4 are in harness.
"""

from __future__ import annotations

import math
import os

from .harness import (Ctx, FreshExt4, ScenarioPlan, ToolSpec, ensure_large_dataset, ensure_small_dataset,
                      human_bytes, make_tree_verifier, verify_large, xfer_quiet)


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
