#!/usr/bin/env python3
"""Hostile hook endpoints and clients against a real ringcast.

Usage: scripts/hook-limits.py SCENARIO [--bin target/release/ringcast] [--load target/release/ringcast-load] [-n N]

  fds       on_publish to an endpoint that accepts and never answers (timeout 1s); N publish
            attempts (ringcast-load connect --then publish). Prints the server's descriptors
            and the connections still open at the endpoint afterwards. --https: the same over
            https:// (the blocking pool; the TLS handshake never completes).
  queue     a webhook whose receiver is down (retries 5); N connections each send a `connect`
            with a --tcurl-bytes tcUrl (default 4000, under the server's 4 KiB cap). Prints the
            server's peak RSS growth and, when the binary has them, the queued bytes and drops
            in /metrics.
  fairness  a webhook that accepts and never answers beside a healthy one (hook_timeout 30s);
            N events (N/2 raw connections). Prints how many the healthy one got, and when.
  shutdown  N players (ringcast-load play) with on_done and a webhook both hanging (timeouts
            30s); SIGTERM. Prints how long the process took to exit and its last log lines.

Python 3 standard library only. Each run starts its own ringcast on ephemeral ports and stops it.
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
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class BlackHole:
    """Accepts and holds connections without reading or answering."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            conn, _ = self.sock.accept()
            self.held.append(conn)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.sock.getsockname()[1], path)

    def open_connections(self):
        import select
        still = 0
        for conn in self.held:
            poller = select.poll()
            poller.register(conn, select.POLLRDHUP)
            if not poller.poll(0):
                still += 1
        return still


class Healthy:
    """Answers 200 at once; records arrival times."""

    def __init__(self):
        arrivals = self.arrivals = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                arrivals.append(time.monotonic())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.server.server_address[1], path)


def closed_port_url(path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d%s" % (port, path)


class Server:
    def __init__(self, binary, toml, shards=2):
        self.config = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
        self.config.write(toml)
        self.config.close()
        self.log = []
        self.proc = subprocess.Popen(
            [binary, "--config", self.config.name, "--rtmp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
             "--rtsp-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--shards", str(shards)],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, errors="replace")
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self.ready.wait(15):
            sys.exit("ringcast did not start:\n" + "".join(self.log))

    def _read(self):
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"ready: rtmp=(\S+) api=(\S+)", line)
            if m:
                self.rtmp, self.api = m.group(1), m.group(2)
                self.ready.set()

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def status(self, field):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])  # kB
        return 0

    def metric(self, name):
        try:
            text = urllib.request.urlopen("http://%s/metrics" % self.api, timeout=5).read().decode()
        except OSError:
            return None
        values = [float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + "{") or l.startswith(name + " ")]
        return int(sum(values)) if values else None

    def stop(self, timeout=120):
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        took = time.monotonic() - started
        time.sleep(0.2)
        os.unlink(self.config.name)
        return took


def amf_string(text):
    data = text.encode()
    if len(data) > 0xFFFF:
        return b"\x0c" + struct.pack(">I", len(data)) + data
    return b"\x02" + struct.pack(">H", len(data)) + data


def amf_object(pairs):
    out = b"\x03"
    for key, value in pairs:
        out += struct.pack(">H", len(key)) + key.encode() + value
    return out + b"\x00\x00\x09"


def rtmp_message(csid, type_id, payload, chunk):
    header = bytes([csid]) + b"\x00\x00\x00" + struct.pack(">I", len(payload))[1:] + bytes([type_id]) + b"\x00\x00\x00\x00"
    out = header + payload[:chunk]
    for i in range(chunk, len(payload), chunk):
        out += bytes([0xC0 | csid]) + payload[i:i + chunk]
    return out


def connect_message(tcurl_len, chunk):
    tcurl = "rtmp://" + "x" * tcurl_len
    payload = amf_string("connect") + b"\x00" + struct.pack(">d", 1.0) + amf_object(
        [("app", amf_string("live")), ("tcUrl", amf_string(tcurl))])
    return rtmp_message(3, 20, payload, chunk)


def rtmp_handshaken(addr, chunk):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.sendall(b"\x03" + bytes(1536))
    need = 3073
    while need > 0:
        got = s.recv(need)
        if not got:
            raise ConnectionError("closed during the handshake")
        need -= len(got)
    s.sendall(bytes(1536))
    s.sendall(rtmp_message(2, 1, struct.pack(">I", chunk), 128))
    return s


def hostile_connects(addr, count, tcurl_len, threads=8):
    """`count` connects with a `tcurl_len`-byte tcUrl, each on a connection of its own (a
    server may refuse a second connect on one connection), `threads` at a time."""
    chunk = 65536
    message = connect_message(tcurl_len, chunk)
    left = [count]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                s = rtmp_handshaken(addr, chunk)
                s.sendall(message)
                s.settimeout(2)
                try:
                    s.recv(65536)
                except OSError:
                    pass
                s.close()
            except OSError:
                pass

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def scenario_fds(args):
    hole = BlackHole()
    url = hole.url("/on_publish")
    if args.https:
        url = url.replace("http://", "https://")
    server = Server(args.bin, '[notify]\ntimeout = "1s"\non_publish = "%s"\n' % url)
    baseline = server.fds()
    subprocess.run([args.load, "--url", "rtmp://%s/live/hung" % server.rtmp, "connect", "-k", str(args.n),
                    "--then", "publish", "--timeout", "5s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    print("fds: %d publish attempts against a silent %s on_publish (timeout 1s)" % (args.n, url.split(":")[0]))
    print("  server descriptors: %d before, %d after" % (baseline, server.fds()))
    print("  endpoint: %d connections accepted, %d still open" % (len(hole.held), hole.open_connections()))
    server.stop()


def scenario_queue(args):
    server = Server(args.bin, '[[webhook]]\nurl = "%s"\nretries = 5\n' % closed_port_url("/down"))
    time.sleep(0.5)
    base = server.status("VmRSS")
    peak_queued = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak_queued[0] = max(peak_queued[0], server.metric("ringcast_sink_queued_bytes") or 0)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    hostile_connects(server.rtmp, args.n, args.tcurl_bytes)
    time.sleep(2)
    done.set()
    watcher.join()
    print("queue: %d connections each sent a connect with a %d-byte tcUrl; webhook receiver down" % (
        args.n, args.tcurl_bytes))
    print("  server RSS: %d MiB at start, peak %d MiB (+%d MiB), %d MiB after the clients left" % (
        base >> 10, server.status("VmHWM") >> 10, (server.status("VmHWM") - base) >> 10, server.status("VmRSS") >> 10))
    print("  queued bytes at most %s; dropped %s; requests refused %s" % (
        peak_queued[0] or "n/a (no metric)", server.metric("ringcast_sink_dropped_total"),
        server.metric("ringcast_requests_refused_total")))
    server.stop()


def scenario_fairness(args):
    hole, healthy = BlackHole(), Healthy()
    server = Server(args.bin, 'hook_timeout = "30s"\n\n[[webhook]]\nurl = "%s"\n\n[[webhook]]\nurl = "%s"\n' % (
        hole.url("/hung"), healthy.url("/events")))
    host, port = server.rtmp.rsplit(":", 1)
    started = time.monotonic()
    for _ in range(args.n // 2):
        socket.create_connection((host, int(port))).close()
    while len(healthy.arrivals) < args.n and time.monotonic() - started < 30:
        time.sleep(0.01)
    got = len(healthy.arrivals)
    last = (healthy.arrivals[-1] - started) if got else 0
    print("fairness: %d events to a hung sink and a healthy one (hook_timeout 30s)" % args.n)
    print("  healthy sink: %d of %d within %.1f s (last at %.3f s); hung sink holds %d connections" % (
        got, args.n, time.monotonic() - started, last, len(hole.held)))
    server.stop()


def scenario_shutdown(args):
    hole = BlackHole()
    toml = 'hook_timeout = "30s"\n\n[notify]\ntimeout = "30s"\non_done = "%s"\n\n[[webhook]]\nurl = "%s"\n' % (
        hole.url("/on_done"), hole.url("/events"))
    server = Server(args.bin, toml)
    players = subprocess.Popen([args.load, "--url", "rtmp://%s/live/wait" % server.rtmp, "play", "-n", str(args.n),
                                "--ramp", "0", "--duration", "120s"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(4)
    took = server.stop()
    players.kill()
    print("shutdown: %d players, on_done and a webhook that never answer (timeouts 30s); SIGTERM" % args.n)
    print("  exited after %.1f s; last lines:" % took)
    for line in server.log[-3:]:
        print("   ", line.rstrip()[:400])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["fds", "queue", "fairness", "shutdown"])
    parser.add_argument("--bin", default="target/release/ringcast")
    parser.add_argument("--load", default="target/release/ringcast-load")
    parser.add_argument("-n", type=int, default=None)
    parser.add_argument("--https", action="store_true", help="fds: call the endpoint over https://")
    parser.add_argument("--tcurl-bytes", type=int, default=4000,
                        help="queue: tcUrl length (4000 fits under the server's 4 KiB cap; the old binary took 1 MiB)")
    args = parser.parse_args()
    defaults = {"fds": 300, "queue": 20000, "fairness": 100, "shutdown": 300}
    args.n = args.n or defaults[args.scenario]
    globals()["scenario_" + args.scenario](args)


if __name__ == "__main__":
    main()
