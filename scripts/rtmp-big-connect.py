#!/usr/bin/env python3
"""`connect` with a huge tcUrl, again and again, while the webhook receiver hangs.

Starts a webhook receiver that accepts and never answers, starts the given ringcast binary with
it as a [[webhook]] (loopback ports, 2 shards), then sends COUNT `connect` commands carrying a
tcUrl of SIZE bytes: re-sent on one connection while the server keeps it open, on a new
connection whenever it closes one (as an attacker would). Prints how many connects were answered
`_result` or `_error`, the server's peak RSS, and its RSS at the end.

    python3 scripts/rtmp-big-connect.py target/release/ringcast [--count 300] [--size 1048576]
"""
import argparse
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def hung_receiver():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    held = []

    def accept():
        while True:
            conn, _ = listener.accept()
            held.append(conn)  # never read, never answered

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()


def start_server(binary, receiver, log_path, config_path):
    with open(config_path, "w") as f:
        f.write(f'[[webhook]]\nurl = "http://{receiver[0]}:{receiver[1]}/events"\nretries = 0\n')
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "--config", config_path, "--rtmp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
         "--rtsp-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--shards", "2"],
        stdout=log, stderr=log, env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
    deadline = time.time() + 15
    while time.time() < deadline:
        found = re.search(r"rtmp=([0-9.]+):(\d+)", open(log_path).read())
        if found:
            return proc, (found.group(1), int(found.group(2)))
        time.sleep(0.1)
    proc.kill()
    sys.exit("no ready line:\n" + open(log_path).read())


def amf_string(text):
    data = text.encode()
    if len(data) > 0xFFFF:
        return b"\x0c" + struct.pack(">I", len(data)) + data
    return b"\x02" + struct.pack(">H", len(data)) + data


def connect_message(tc_url, transaction):
    body = amf_string("connect") + b"\x00" + struct.pack(">d", transaction) + b"\x03"
    for key, value in (("app", "live"), ("tcUrl", tc_url)):
        body += struct.pack(">H", len(key)) + key.encode() + amf_string(value)
    body += b"\x00\x00\x09"
    # Chunk stream 3, 128-byte chunks (the client never announces another size).
    out = bytes([0x03]) + b"\x00\x00\x00" + struct.pack(">I", len(body))[1:] + b"\x14" + struct.pack("<I", 0)
    for i in range(0, len(body), 128):
        if i:
            out += bytes([0xC3])
        out += body[i:i + 128]
    return out


def handshake(addr):
    s = socket.create_connection(addr, timeout=5)
    s.sendall(b"\x03" + bytes(1536))
    got = b""
    while len(got) < 1 + 2 * 1536:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("closed in handshake")
        got += chunk
    s.sendall(got[1:1 + 1536])
    return s


def drain(s):
    """Reads what the server sent so far; returns (bytes, closed)."""
    s.settimeout(0.05)
    data, closed = b"", False
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        pass
    except OSError:
        closed = True
    return data, closed


def vm(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--size", type=int, default=1 << 20)
    args = parser.parse_args()
    receiver = hung_receiver()
    log_path = tempfile.mktemp(prefix="ringcast-bigconnect-", suffix=".log")
    config_path = tempfile.mktemp(prefix="ringcast-bigconnect-", suffix=".toml")
    proc, addr = start_server(args.binary, receiver, log_path, config_path)
    tc_url = f"rtmp://{addr[0]}:{addr[1]}/live?pad=" + "a" * args.size
    results = errors = connections = 0
    s = None
    for i in range(args.count):
        if s is None:
            s = handshake(addr)
            connections += 1
        try:
            s.sendall(connect_message(tc_url, float(i + 1)))
        except OSError:
            s.close()
            s = None
            continue
        data, closed = drain(s)
        results += data.count(b"_result")
        errors += data.count(b"_error")
        if closed:
            s.close()
            s = None
    time.sleep(1)
    peak, now = vm(proc.pid, "VmHWM"), vm(proc.pid, "VmRSS")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    print(f"{args.count} connects of a {args.size}-byte tcUrl over {connections} connections: "
          f"{results} _result, {errors} _error; server peak RSS {peak:.1f} MiB, RSS after {now:.1f} MiB")
    os.unlink(log_path)
    os.unlink(config_path)


if __name__ == "__main__":
    main()
