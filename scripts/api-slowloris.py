#!/usr/bin/env python3
"""Slowloris against ringcast's admin API, with /healthz polled meanwhile.

Starts the given ringcast binary (loopback ports, 2 shards), opens CONNECTIONS connections that
each trickle a request head one byte every 250 ms and never finish it (reconnecting whenever the
server cuts one, as an attacker would), polls GET /healthz every 200 ms for SECONDS, then prints:
health checks answered 200 / asked, the slowest answer, the server's peak RSS and thread count,
and how many WARN/ERROR lines the admin API wrote.

    python3 scripts/api-slowloris.py target/release/ringcast [--connections 1000] [--seconds 40]
"""
import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def start_server(binary, log_path):
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [binary, "--rtmp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--rtsp-listen",
         "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--shards", "2", "--log-level", "info"],
        stdout=log, stderr=log, env={k: v for k, v in os.environ.items() if k != "RUST_LOG"})
    deadline = time.time() + 15
    while time.time() < deadline:
        text = open(log_path).read()
        found = re.search(r"api=([0-9.]+):(\d+)", text)
        if found:
            return proc, (found.group(1), int(found.group(2)))
        time.sleep(0.1)
    proc.kill()
    sys.exit("no ready line:\n" + open(log_path).read())


def attack(addr, count, stop):
    def open_one():
        try:
            s = socket.create_connection(addr, timeout=2)
            s.settimeout(1)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            return s
        except OSError:
            return None

    socks = [open_one() for _ in range(count)]
    while not stop.is_set():
        for i, s in enumerate(socks):
            try:
                if s is None:
                    raise OSError
                s.sendall(b"a")
            except OSError:
                if s is not None:
                    s.close()
                socks[i] = open_one()
        time.sleep(0.25)
    for s in socks:
        if s is not None:
            s.close()


def health(addr):
    started = time.time()
    try:
        s = socket.create_connection(addr, timeout=5)
        s.settimeout(5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        status = int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else 0
    except OSError:
        status = 0
    return status, time.time() - started


def proc_status(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return line.split()[1]
    return "?"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    log_path = tempfile.mktemp(prefix="ringcast-slowloris-", suffix=".log")
    proc, addr = start_server(args.binary, log_path)
    stop = threading.Event()
    threads_peak = 0
    attacker = threading.Thread(target=attack, args=(addr, args.connections, stop))
    attacker.start()
    time.sleep(1)
    ok = asked = 0
    slowest = 0.0
    end = time.time() + args.seconds
    while time.time() < end:
        status, took = health(addr)
        asked += 1
        ok += status == 200
        slowest = max(slowest, took)
        threads_peak = max(threads_peak, int(proc_status(proc.pid, "Threads")))
        time.sleep(0.2)
    peak_rss_kb = proc_status(proc.pid, "VmHWM")
    stop.set()
    attacker.join()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    lines = [l for l in open(log_path) if "admin API" in l and (" WARN " in l or " ERROR " in l)
             and "no api_token" not in l]
    print(f"slow connections {args.connections}, {args.seconds:.0f} s: /healthz 200 for {ok}/{asked}, "
          f"slowest {slowest * 1000:.0f} ms, peak RSS {int(peak_rss_kb) / 1024:.1f} MiB, "
          f"peak threads {threads_peak}, admin API WARN/ERROR lines {len(lines)}")
    os.unlink(log_path)


if __name__ == "__main__":
    main()
