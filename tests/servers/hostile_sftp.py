#!/usr/bin/env python3
"""A hostile SFTP server for the tests (HostileSftp.* in
tests/integration/sftp_test.cpp): sshd runs it as its sftp subsystem, so
it speaks SFTP version 3 on stdin/stdout behind a real SSH login. What it
does wrong depends on the path asked for:

  /loopdir        a folder whose READDIR answers never end (no names)
  /dotsdir        a folder whose READDIR answers only "." and ".." for ever
  /badname        a folder listing "../escaped" and "a/b"
  /deep...        every path below is a folder holding one folder "x"
  /short.bin      reads answered one byte at a time
  /long.bin       reads answered with more bytes than asked
  /wrongid.bin    reads answered under another request id
  /noisy.bin      a good 64 KiB file, but 64 MiB on the channel's stderr first
  anything else   a folder (for uploads into it); an upload's writes are
                  all acknowledged under the first write's id

Files are 4 MiB (noisy.bin: 64 KiB) of 'x'. Standard library only; ends
when the client goes.
"""
import struct
import sys

inp = sys.stdin.buffer
out = sys.stdout.buffer
FILE_SIZE = 4 << 20
NOISY_SIZE = 64 << 10
MTIME = 1_600_000_000


def read_exact(n):
    data = b""
    while len(data) < n:
        chunk = inp.read(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data


def send(ptype, payload):
    out.write(struct.pack(">IB", len(payload) + 1, ptype) + payload)
    out.flush()


def string(b):
    return struct.pack(">I", len(b)) + b


def attrs(is_dir, size=0):
    perm = 0o040755 if is_dir else 0o100644
    return struct.pack(">IQII", 0x1 | 0x4 | 0x8, size, perm, MTIME) + struct.pack(">I", MTIME)


def status(rid, code, msg=b""):
    send(101, struct.pack(">II", rid, code) + string(msg) + string(b""))


def name_reply(rid, names, is_dir=False):
    body = struct.pack(">II", rid, len(names))
    for n in names:
        body += string(n) + string(n) + attrs(is_dir)
    send(104, body)


class Reader:
    def __init__(self, data):
        self.d, self.i = data, 0

    def u32(self):
        v = struct.unpack(">I", self.d[self.i:self.i + 4])[0]
        self.i += 4
        return v

    def u64(self):
        v = struct.unpack(">Q", self.d[self.i:self.i + 8])[0]
        self.i += 8
        return v

    def str(self):
        n = self.u32()
        v = self.d[self.i:self.i + n]
        self.i += n
        return v


def size_of(path):
    return NOISY_SIZE if path.endswith(b"noisy.bin") else FILE_SIZE


def is_file(path):
    return path.endswith(b".bin") and b"/up" not in path


def main():
    first_write_id = None
    listed = set()
    handles = []
    while True:
        (length,) = struct.unpack(">I", read_exact(4))
        packet = read_exact(length)
        ptype, r = packet[0], Reader(packet[1:])
        if ptype == 1:  # INIT
            send(2, struct.pack(">I", 3) + string(b"posix-rename@openssh.com") + string(b"1"))
            continue
        rid = r.u32()
        if ptype == 16:  # REALPATH
            name_reply(rid, [b"/home"], True)
        elif ptype in (7, 17):  # LSTAT, STAT
            path = r.str()
            if b"xfer-tmp" in path or b"xfer-part" in path:
                status(rid, 2, b"No such file")
            elif is_file(path):
                send(105, struct.pack(">I", rid) + attrs(False, size_of(path)))
            elif path.startswith(b"/up/") and path != b"/up/":
                status(rid, 2, b"No such file")
            else:
                send(105, struct.pack(">I", rid) + attrs(True))
        elif ptype == 11:  # OPENDIR
            handles.append(r.str())  # handles stay short however deep the path
            send(102, struct.pack(">I", rid) + string(b"d:%d" % (len(handles) - 1)))
        elif ptype == 12:  # READDIR
            handle = handles[int(r.str()[2:])]
            if handle.startswith(b"/loopdir"):
                name_reply(rid, [])
            elif handle.startswith(b"/dotsdir"):
                name_reply(rid, [b".", b".."], True)
            elif handle.startswith(b"/badname"):
                name_reply(rid, [b"../escaped", b"a/b"])
            elif handle.startswith(b"/deep"):
                if handle in listed:
                    status(rid, 1, b"EOF")
                else:
                    listed.add(handle)
                    name_reply(rid, [b"x"], True)
            else:
                status(rid, 1, b"EOF")
        elif ptype == 3:  # OPEN
            path = r.str()
            pflags = r.u32()
            kind = b"w:" if pflags & 0x02 else b"f:"
            send(102, struct.pack(">I", rid) + string(kind + path))
        elif ptype == 8:  # FSTAT
            handle = r.str()[2:]
            send(105, struct.pack(">I", rid) + attrs(False, size_of(handle)))
        elif ptype == 5:  # READ
            handle = r.str()[2:]
            offset = r.u64()
            want = r.u32()
            left = max(0, size_of(handle) - offset)
            if left == 0:
                status(rid, 1, b"EOF")
            elif handle.endswith(b"short.bin"):
                send(103, struct.pack(">I", rid) + string(b"x"))
            elif handle.endswith(b"long.bin"):
                send(103, struct.pack(">I", rid) + string(b"x" * (want + 10)))
            elif handle.endswith(b"wrongid.bin"):
                send(103, struct.pack(">I", rid + 1000) + string(b"x" * min(want, left)))
            else:
                if handle.endswith(b"noisy.bin") and offset == 0:
                    block = b"e" * (1 << 20)
                    for _ in range(64):
                        sys.stderr.buffer.write(block)
                    sys.stderr.buffer.flush()
                send(103, struct.pack(">I", rid) + string(b"x" * min(want, left)))
        elif ptype == 6:  # WRITE
            if first_write_id is None:
                first_write_id = rid
            status(first_write_id, 0, b"OK")
        elif ptype in (4, 9, 10, 13, 14, 15, 18, 200):  # CLOSE, SETSTAT... : fine
            status(rid, 0, b"OK")
        else:
            status(rid, 8, b"Unsupported")


if __name__ == "__main__":
    main()
