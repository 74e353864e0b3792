#!/usr/bin/env python3
# Writes the seed corpora of the server fuzzers: corpus/data_server_fuzz/
# (frame records, data_server_fuzz.cpp) and corpus/grpc_fuzz/ (method byte +
# protobuf request, grpc_fuzz.cpp). Run it after changing either format:
#   python3 tests/fuzz/make_seeds.py
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- data_server_fuzz ----------------------------------------------------
# Record kinds (data_server_fuzz.cpp): kind < 16 is frame type kind + 1.
HELLO, DATA, ACK, COMMIT, ABORT, READ, CLOSE, SUSPEND, PING = 0, 5, 6, 7, 8, 11, 12, 13, 14
OPEN_WRITE, PUT_FILE, OPEN_READ, COPY_BASIS = 16, 17, 18, 20
BASIS = 8  # FileMeta flag: the old file is a delta's basis


def record(kind, id=0, offset=0, aux=0, payload=b""):
    return struct.pack("<BQQIH", kind, id, offset, aux, len(payload)) + payload


def fields(path, resume=b"", flags=0, data=b""):
    path = path.encode() if isinstance(path, str) else path
    resume = resume.encode() if isinstance(resume, str) else resume
    return struct.pack("<HBB", len(path), len(resume), flags) + path + resume + data


def put(id, path, data=b"x", mode=0o644, resume=b"", flags=0):
    return record(PUT_FILE, id, 1_650_000_000_000_000_000, mode, fields(path, resume, flags, data))


def open_write(id, path, size, mode=0o644, resume=b"", flags=0, data=b""):
    return record(OPEN_WRITE, id, size, mode, fields(path, resume, flags, data))


def copy_basis(id, offset, basis_offset, length):
    return record(COPY_BASIS, id, offset, 0, struct.pack("<QQ", basis_offset, length))


def open_read(id, path, inline_limit=0):
    return record(OPEN_READ, id, 0, inline_limit, fields(path))


# Names the handlers must refuse or keep inside the root.
HOSTILE = [
    "../x", "/../x", "a/../../b", "/dir/../../outside/secret.txt", "/.x.xfer-part-abc",
    "/.a.txt.xfer-part-job1", "/.empty.xfer-part-job2", "/fifo", "/link", "/link/x",
    "/link/secret.txt", "/rel/x", "/up/x", "/dir/up2/outside/secret.txt", "/link_file",
    "/dir", "/", "", "//", "/.", "/a\0b", "/" + "n" * 300, "/" + "d/" * 2100 + "f",
]


def data_seeds():
    seeds = {
        "ping": record(PING, 1),
        "put_file": put(1, "/new.txt", b"hello") + record(PING, 2),
        "write_commit": open_write(2, "/w.bin", 10) + record(DATA, 2, 0, 0, b"0123456789")
        + record(COMMIT, 2),
        "write_abort": open_write(2, "/w.bin", 10) + record(DATA, 2, 0, 0, b"01234")
        + record(ABORT, 2),
        "read_close": open_read(3, "/big.bin") + record(READ, 3, 0, 65536)
        + record(READ, 3, 199_990, 4096) + record(CLOSE, 3),
        "read_inline": open_read(4, "/a.txt", 1 << 20) + open_read(5, "/dir/b.txt", 1 << 20),
        "read_past_end": open_read(3, "/big.bin") + record(READ, 3, 10**12, 4096)
        + record(READ, 3, 0, 0xFFFFFFFF),
        "suspend_resume": open_write(6, "/r.bin", 8, resume="job9") + record(DATA, 6, 0, 0, b"abcd")
        + record(SUSPEND, 6) + open_write(7, "/r.bin", 8, resume="job9", flags=4)
        + record(DATA, 7, 4, 0, b"efgh") + record(COMMIT, 7),
        "resume_symlink_partial": open_write(1, "/a.txt", 64, resume="job1", flags=4)
        + record(DATA, 1, 0, 0, b"overwrite") + record(COMMIT, 1),
        "resume_hardlink_partial": open_write(1, "/empty", 64, resume="job2", flags=4)
        + record(DATA, 1, 0, 0, b"overwrite") + record(COMMIT, 1),
        "resume_real_partial": open_write(1, "/dir/b.txt", 12, resume="job3", flags=4)
        + record(DATA, 1, 4, 0, b" folder\n") + record(COMMIT, 1),
        "resume_names": b"".join(
            put(i, "/p%d" % i, b"p", resume=r, flags=4)
            for i, r in enumerate([b"../x", b"a/b", b"..", b"/", b".", b"j\0b", b"r" * 255])),
        "special_modes": b"".join(
            put(i, "/m%d" % i, b"m", mode=m)
            for i, m in enumerate([0o4755, 0o2755, 0o1777, 0o170777, 0xFFFFFFFF])),
        "sparse_fsync_huge": open_write(1, "/huge", 1 << 40, flags=3)
        + record(DATA, 1, 1 << 39, 0, b"far") + record(COMMIT, 1),
        "unknown_handles": record(DATA, 9, 0, 0, b"zz") + record(COMMIT, 9) + record(READ, 9, 0, 1)
        + open_write(1, "/d.bin", 1) + open_write(1, "/d.bin", 1),
        "unexpected_frames": record(ACK, 1) + record(HELLO, 0, 0, 0, b"hello again"),
        "folder_targets": open_write(1, "/dir", 1) + open_read(2, "/dir") + put(3, "/dir/sub"),
        # A delta's basis: the seeded file's mtime is not known here, so
        # the open is refused as "changed"; the copies then meet no handle.
        "delta_basis": open_write(1, "/big.bin", 1 << 20, flags=BASIS,
                                  data=struct.pack("<Qq", 200_000, 0))
        + copy_basis(1, 0, 0, 65536) + copy_basis(1, 1 << 20, 0, 1 << 30) + record(COMMIT, 1),
        "delta_no_basis": open_write(2, "/w.bin", 1 << 20) + copy_basis(2, 0, 0, 4096)
        + copy_basis(2, 0, 2**64 - 8, 16) + record(COMMIT, 2),
        "delta_basis_symlink": open_write(3, "/link/secret.txt", 100, flags=BASIS,
                                          data=struct.pack("<Qq", 100, 0))
        + copy_basis(3, 0, 0, 100) + record(COMMIT, 3),
    }
    for i, name in enumerate(HOSTILE):
        path = name.encode("latin-1")
        seeds["name_%02d" % i] = (put(1, path) + open_write(2, path, 4) + record(DATA, 2, 0, 0, b"data")
                                  + record(COMMIT, 2) + open_read(3, path, 1 << 20))
    return seeds


# ---- grpc_fuzz -----------------------------------------------------------
# Methods (grpc_fuzz.cpp), then the request message in protobuf wire format.
(STAT, LIST, MKDIR, REMOVE, RENAME, TOUCH, SYMLINK, SET_ATTRS, OPEN_SESSION, CLOSE_SESSION,
 ISSUE_TOKEN, SUBMIT_JOB, WATCH_JOB, CANCEL_JOB, CHECKSUM, SIGNATURE, WATCH_CHANGES) = range(17)


def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def vfield(num, value):
    return varint(num << 3) + varint(value)


def sfield(num, value):
    value = value.encode() if isinstance(value, str) else value
    return varint((num << 3) | 2) + varint(len(value)) + value


def attrs(mode=None, mtime_ns=None, size=None, type_=None):
    out = b""
    if type_ is not None:
        out += vfield(1, type_)
    if size is not None:
        out += vfield(2, size)
    if mode is not None:
        out += vfield(3, mode)
    if mtime_ns is not None:
        out += vfield(4, mtime_ns)
    return out


def job(sources, dest, recursive=False, checkpoint=False, job_id=None):
    out = b"".join(sfield(1, s) for s in sources) + sfield(2, dest)
    opts = b""
    if recursive:
        opts += vfield(1, 1)
    if checkpoint:
        opts += vfield(7, 1)
    if job_id is not None:
        opts += sfield(8, job_id)
    if opts:
        out += sfield(4, opts)
    return out


def grpc_seeds():
    s = "/sandbox"
    seeds = {
        "stat": [STAT, sfield(1, s + "/a.txt")],
        "stat_link": [STAT, sfield(1, s + "/link/secret.txt")],
        "stat_side": [STAT, sfield(1, s + "/side/file.txt")],
        "stat_dotdot": [STAT, sfield(1, s + "/../private.txt")],
        "list": [LIST, sfield(1, s) + vfield(2, 1)],
        "list_link": [LIST, sfield(1, s + "/link") + vfield(2, 1)],
        "list_up": [LIST, sfield(1, s + "/up")],
        "list_priv": [LIST, sfield(1, s + "/priv") + vfield(2, 1)],
        "mkdir_parents": [MKDIR, sfield(1, s + "/new/deep") + vfield(2, 1)],
        "mkdir_link": [MKDIR, sfield(1, s + "/link/x")],
        "mkdir_up": [MKDIR, sfield(1, s + "/up/x") + vfield(2, 1)],
        "mkdir_side": [MKDIR, sfield(1, s + "/side/x")],
        "remove_dir": [REMOVE, sfield(1, s + "/dir") + vfield(2, 1)],
        "remove_link_child": [REMOVE, sfield(1, s + "/link/secret.txt")],
        "remove_side": [REMOVE, sfield(1, s + "/side/file.txt")],
        "remove_up": [REMOVE, sfield(1, s + "/up/private.txt")],
        "remove_priv_recursive": [REMOVE, sfield(1, s + "/priv/") + vfield(2, 1)],
        "remove_sandbox": [REMOVE, sfield(1, s) + vfield(2, 1)],
        "rename": [RENAME, sfield(1, s + "/a.txt") + sfield(2, s + "/b.txt")],
        "rename_into_link": [RENAME, sfield(1, s + "/a.txt") + sfield(2, s + "/link/a.txt")],
        "rename_out_of_link": [RENAME, sfield(1, s + "/link/secret.txt") + sfield(2, s + "/s")],
        "rename_into_self": [RENAME, sfield(1, s + "/dir") + sfield(2, s + "/dir/sub/x")],
        "rename_side": [RENAME, sfield(1, s + "/a.txt") + sfield(2, s + "/side/a.txt")],
        "rename_sibling": [RENAME, sfield(1, s + "/a.txt") + sfield(2, "/sandbox2/a.txt")],
        "touch": [TOUCH, sfield(1, s + "/new")],
        "touch_link_file": [TOUCH, sfield(1, s + "/link_file") + vfield(2, 1) + vfield(3, 10**18)],
        "touch_link": [TOUCH, sfield(1, s + "/link/new")],
        "touch_fifo": [TOUCH, sfield(1, s + "/fifo") + vfield(2, 1) + vfield(3, 1)],
        "symlink_root": [SYMLINK, sfield(1, "/") + sfield(2, s + "/l")],
        "symlink_out": [SYMLINK, sfield(1, "../../outside/secret.txt") + sfield(2, s + "/l2")],
        "symlink_in_link": [SYMLINK, sfield(1, "x") + sfield(2, s + "/link/l")],
        "symlink_up": [SYMLINK, sfield(1, "x") + sfield(2, s + "/up/l") + sfield(3, attrs(mtime_ns=5))],
        "setattrs_setuid": [SET_ATTRS, sfield(1, s + "/a.txt") + sfield(2, attrs(mode=0o4755))],
        "setattrs_dir_bits": [SET_ATTRS, sfield(1, s + "/dir") + sfield(2, attrs(mode=0o3777))],
        "setattrs_link_file": [SET_ATTRS, sfield(1, s + "/link_file")
                               + sfield(2, attrs(mode=0o777, mtime_ns=7))],
        "setattrs_link": [SET_ATTRS, sfield(1, s + "/link/secret.txt") + sfield(2, attrs(mode=0))],
        "setattrs_side": [SET_ATTRS, sfield(1, s + "/side/file.txt") + sfield(2, attrs(size=0))],
        "open_session": [OPEN_SESSION, vfield(1, 4) + vfield(2, 1)],
        "close_session": [CLOSE_SESSION, sfield(1, "0123456789abcdef")],
        "issue_wider": [ISSUE_TOKEN, sfield(1, "/") + vfield(2, 1)],
        "issue_narrower": [ISSUE_TOKEN, sfield(1, s + "/dir") + vfield(2, 1) + vfield(3, 60)
                           + sfield(4, "other")],
        "issue_dotdot": [ISSUE_TOKEN, sfield(1, s + "/../")],
        "job_copy": [SUBMIT_JOB, job([s + "/a.txt"], s + "/copy.txt")],
        "job_recursive": [SUBMIT_JOB, job([s + "/dir"], s + "/dir2", recursive=True)],
        # Not here: a job copying a folder into itself (2 s per run, a known
        # finding): crashes/grpc_job_copies_folder_into_itself.
        "job_from_link": [SUBMIT_JOB, job([s + "/link/secret.txt"], s + "/x")],
        "job_to_link": [SUBMIT_JOB, job([s + "/a.txt"], s + "/link/x")],
        "job_side": [SUBMIT_JOB, job([s + "/side/file.txt"], s + "/y")],
        "job_sibling": [SUBMIT_JOB, job([s + "/a.txt"], "/sandbox2/x")],
        "job_peer": [SUBMIT_JOB, job([s + "/a.txt"], "xfer://127.0.0.1:1/x")],
        "job_fifo": [SUBMIT_JOB, job([s + "/fifo"], s + "/f")],
        "job_id": [SUBMIT_JOB, job([s + "/a.txt"], s + "/c", checkpoint=True, job_id="../x")],
        "job_checkpoint": [SUBMIT_JOB, job([s + "/big.bin"], s + "/c", checkpoint=True,
                                           job_id="fuzz-job")],
        "watch": [WATCH_JOB, sfield(1, "srv-1-0")],
        "cancel": [CANCEL_JOB, sfield(1, "../x")],
        "checksum": [CHECKSUM, sfield(1, s + "/big.bin")],
        "checksum_link": [CHECKSUM, sfield(1, s + "/link/secret.txt")],
        "checksum_fifo": [CHECKSUM, sfield(1, s + "/fifo")],
        "checksum_dir": [CHECKSUM, sfield(1, s + "/dir")],
        "checksum_dotdot": [CHECKSUM, sfield(1, s + "/../private.txt")],
        "signature": [SIGNATURE, sfield(1, s + "/big.bin") + vfield(2, 16384) + vfield(3, 65536)
                      + vfield(4, 262144)],
        "signature_tiny_blocks": [SIGNATURE, sfield(1, s + "/big.bin") + vfield(2, 1)
                                  + vfield(3, 2) + vfield(4, 4)],
        "signature_link": [SIGNATURE, sfield(1, s + "/link/secret.txt") + vfield(2, 16384)
                           + vfield(3, 65536) + vfield(4, 262144)],
        "watch_changes": [WATCH_CHANGES, sfield(1, s) + vfield(2, 0) + vfield(3, 0)],
        "watch_changes_dir": [WATCH_CHANGES, sfield(1, s + "/dir") + vfield(2, 50)],
        "watch_changes_link": [WATCH_CHANGES, sfield(1, s + "/link")],
        "watch_changes_up": [WATCH_CHANGES, sfield(1, s + "/up")],
        "watch_changes_file": [WATCH_CHANGES, sfield(1, s + "/a.txt")],
        "watch_changes_dotdot": [WATCH_CHANGES, sfield(1, s + "/../privdir")],
        "watch_changes_root": [WATCH_CHANGES, sfield(1, "/")],
        "watch_changes_reconcile": [WATCH_CHANGES, sfield(1, s) + vfield(3, 1)],
        "signature_fifo": [SIGNATURE, sfield(1, s + "/fifo") + vfield(2, 16384)
                           + vfield(3, 65536) + vfield(4, 262144)],
    }
    return {name: bytes([m]) + body for name, (m, body) in seeds.items()}


def write(target, seeds):
    out = os.path.join(HERE, "corpus", target)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%s: %d seeds" % (out, len(seeds)))


write("data_server_fuzz", data_seeds())
write("grpc_fuzz", grpc_seeds())
