#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real server, for the tests.

It forwards every request to the upstream port on 127.0.0.1, one request
per connection (it asks the upstream to close after answering, and closes
the client's connection after relaying), except the requests a rule
catches: a rule matches the method and a substring of the request target,
fires `times` times, and then answers in its own way:

  "503"   the body is read and dropped, and the answer is 503 SlowDown
          with Retry-After (the rule's "retry_after", default 1)
  "429"   the same with 429 Too Many Requests
  "cut"   the head and `after` bytes of the body are read, and the
          connection is reset (SO_LINGER 0): a server that died mid-part
  "501"   the body is read and dropped, and the answer is 501
          NotImplemented: a store without the call

Every request is logged to the log file as one line:
  <seconds since start> <fired rule action or "fwd"> <METHOD> <target>

Usage: fault_proxy.py UPSTREAM_PORT PORT_FILE LOG_FILE RULES_JSON
It listens on 127.0.0.1 on a port of the kernel's pick and writes the
port to PORT_FILE when it is ready. It runs until killed, and exits by
itself after 10 minutes in any case.
"""

import json
import socket
import struct
import sys
import threading
import time

START = time.monotonic()
LOCK = threading.Lock()


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
        if len(data) > 1 << 20:
            return None, b""
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def content_length(head):
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value.strip())
    return 0


def read_body(conn, rest, n, sink=None):
    """Reads n body bytes (rest first); hands them to sink if given."""
    got = rest[:n]
    if sink is not None and got:
        sink(got)
    left = n - len(got)
    while left > 0:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            return False
        if sink is not None:
            sink(chunk)
        left -= len(chunk)
    return True


def answer_throttle(conn, status, retry_after):
    if status == 503:
        reason = "Slow Down"
        body = ("<Error><Code>SlowDown</Code><Message>Please reduce your request rate."
                "</Message></Error>")
    else:
        reason = "Too Many Requests"
        body = ("<Error><Code>TooManyRequests</Code><Message>Please reduce your request "
                "rate.</Message></Error>")
    conn.sendall((f"HTTP/1.1 {status} {reason}\r\nRetry-After: {retry_after}\r\n"
                  f"Content-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
                  f"Connection: close\r\n\r\n{body}").encode())


def answer_not_implemented(conn):
    body = ("<Error><Code>NotImplemented</Code><Message>A header you provided implies "
            "functionality that is not implemented</Message></Error>")
    conn.sendall((f"HTTP/1.1 501 Not Implemented\r\nContent-Type: application/xml\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode())


def forward(conn, head, rest, upstream):
    lines = head.split("\r\n")
    kept = [lines[0]] + [l for l in lines[1:] if not l.lower().startswith("connection:")]
    kept.append("Connection: close")
    up = socket.create_connection(("127.0.0.1", upstream))
    try:
        up.sendall(("\r\n".join(kept) + "\r\n\r\n").encode("latin-1"))
        if not read_body(conn, rest, content_length(head), up.sendall):
            return
        while True:
            chunk = up.recv(1 << 20)
            if not chunk:
                break
            conn.sendall(chunk)
    finally:
        up.close()


def serve(conn, rules, upstream, log):
    try:
        head, rest = read_head(conn)
        if head is None:
            return
        method, target = (head.split("\r\n", 1)[0].split(" ") + ["", ""])[:2]
        rule = None
        with LOCK:
            for r in rules:
                if r["times"] > 0 and r["method"] == method and r["match"] in target:
                    r["times"] -= 1
                    rule = r
                    break
            log.write(f"{time.monotonic() - START:.3f} {rule['do'] if rule else 'fwd'} "
                      f"{method} {target}\n")
            log.flush()
        if rule is None:
            forward(conn, head, rest, upstream)
        elif rule["do"] in ("503", "429"):
            if read_body(conn, rest, content_length(head)):
                answer_throttle(conn, int(rule["do"]), rule.get("retry_after", 1))
        elif rule["do"] == "501":
            if read_body(conn, rest, content_length(head)):
                answer_not_implemented(conn)
        elif rule["do"] == "cut":
            read_body(conn, rest, min(rule.get("after", 0), content_length(head)))
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    finally:
        conn.close()


def main():
    upstream, port_file, log_file, rules_json = sys.argv[1:5]
    rules = json.loads(rules_json)
    for r in rules:
        r.setdefault("match", "")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(128)
    threading.Timer(600, lambda: __import__("os")._exit(0)).start()
    with open(log_file, "a") as log:
        with open(port_file + ".tmp", "w") as f:
            f.write(str(srv.getsockname()[1]))
        __import__("os").rename(port_file + ".tmp", port_file)
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn, rules, int(upstream), log),
                             daemon=True).start()


if __name__ == "__main__":
    main()
