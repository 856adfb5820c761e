#!/usr/bin/env python3
"""Hostile RTMP clients against a running server, with the server's memory watched: a player
that never reads but floods pings, big frames to a stalled player, trickled partial messages.
Prints the server's RSS before and at its peak, and how the hostile connections ended.

  pings       a player that never reads floods ping requests
  big-frames  a stalled player of a stream of big frames
  trickle     many connections each start a 16 MiB message and trickle it

Example:
  scripts/hostile-rtmp.py pings --addr 127.0.0.1:1935 --pid $(pidof ringcast) --seconds 10
"""

import argparse
import os
import socket
import struct
import threading
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def chunk(csid, type_id, stream_id, payload, chunk_size=128, timestamp=0):
    out = bytearray([csid])
    out += timestamp.to_bytes(3, "big") + len(payload).to_bytes(3, "big")
    out += bytes([type_id]) + struct.pack("<I", stream_id)
    for i in range(0, max(len(payload), 1), chunk_size):
        if i:
            out.append(0xC0 | csid)
        out += payload[i : i + chunk_size]
    return bytes(out)


def amf_string(text):
    data = text.encode()
    return b"\x02" + struct.pack(">H", len(data)) + data


def amf_number(value):
    return b"\x00" + struct.pack(">d", value)


def amf_object(fields):
    out = b"\x03"
    for key, value in fields.items():
        out += struct.pack(">H", len(key)) + key.encode() + amf_string(value)
    return out + b"\x00\x00\x09"


def command(name, txn, *args, stream_id=0):
    body = amf_string(name) + amf_number(txn) + b"".join(args)
    return chunk(3, 20, stream_id, body)


def connect(addr, app="live", rcvbuf=None):
    """Handshake and `connect`, `createStream`; returns the socket (stream id 1 is assumed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(addr)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(b"\x03" + bytes(8) + os.urandom(1528))
    reply = b""
    while len(reply) < 3073:
        part = sock.recv(3073 - len(reply))
        if not part:
            raise ConnectionError("closed during handshake")
        reply += part
    sock.sendall(reply[1:1537])
    tc_url = f"rtmp://{addr[0]}:{addr[1]}/{app}"
    sock.sendall(command("connect", 1, amf_object({"app": app, "tcUrl": tc_url})))
    sock.sendall(command("createStream", 2, b"\x05"))
    return sock


def drain(sock, seconds):
    """Reads what the server sends for a while (command replies)."""
    sock.settimeout(0.1)
    end = time.time() + seconds
    while time.time() < end:
        try:
            if not sock.recv(65536):
                return
        except socket.timeout:
            pass


class Watch(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.baseline, self.peak, self.stop = pid, rss(pid), 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.05)

    def report(self):
        mib = 1 << 20
        print(f"server RSS: before {self.baseline / mib:.1f} MiB, peak {self.peak / mib:.1f} MiB, "
              f"growth {(self.peak - self.baseline) / mib:.1f} MiB")


def closed(sock):
    """Whether the server closed `sock`: reads through what it had sent (a stalled client's
    buffer is full) to find the end."""
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def pings(args, addr):
    sock = connect(addr, rcvbuf=4096)
    sock.sendall(command("play", 3, b"\x05", amf_string(args.name), stream_id=1))
    drain(sock, 0.5)
    batch = b"".join(chunk(2, 4, 0, struct.pack(">HI", 6, n)) for n in range(2000))
    sock.settimeout(0.2)
    started, sent, ended = time.time(), 0, None
    while time.time() - started < args.seconds:
        try:
            sent += sock.send(batch)
        except socket.timeout:
            pass
        except OSError:
            ended = time.time() - started
            break
    print(f"sent {sent / (1 << 20):.1f} MiB of pings in {time.time() - started:.1f} s; "
          + (f"server closed the connection after {ended:.1f} s" if ended else "connection still open"))


def big_frames(args, addr):
    stalled = connect(addr, rcvbuf=4096)
    stalled.sendall(command("play", 3, b"\x05", amf_string(args.name), stream_id=1))
    drain(stalled, 0.5)
    publisher = connect(addr)
    publisher.sendall(command("publish", 3, b"\x05", amf_string(args.name), amf_string("live"), stream_id=1))
    drain(publisher, 0.5)
    publisher.sendall(chunk(2, 1, 0, struct.pack(">I", 65536)))
    avc_header = bytes([0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0, 4, 0x67, 0x64, 0, 0x1F, 1, 0, 2, 0x68, 0xEE])
    publisher.sendall(chunk(6, 9, 1, avc_header, 65536))
    started = time.time()
    for seq in range(args.frames):
        body = bytes([0x17 if seq % 4 == 0 else 0x27, 1, 0, 0, 0]) + bytes(args.size - 5)
        publisher.sendall(chunk(6, 9, 1, body, 65536, timestamp=seq * 40))
    time.sleep(1)
    print(f"published {args.frames} frames of {args.size} bytes in {time.time() - started:.1f} s; "
          f"stalled player {'closed' if closed(stalled) else 'still connected'}")


def trickle(args, addr):
    socks, failed = [], 0
    header = bytes([6, 0, 0, 0]) + (0xFFFFFF).to_bytes(3, "big") + bytes([9, 1, 0, 0, 0])
    for _ in range(args.connections):
        try:
            sock = connect(addr)
            drain(sock, 0.05)
            sock.settimeout(5)
            sock.sendall(chunk(2, 1, 0, struct.pack(">I", 0x7FFFFFFF)) + header + bytes(args.size))
            socks.append(sock)
        except OSError:
            failed += 1
    started = time.time()
    while time.time() - started < args.seconds:
        for sock in socks:
            try:
                sock.send(b"\x00")
            except OSError:
                pass
        time.sleep(0.1)
    gone = sum(closed(sock) for sock in socks)
    print(f"{len(socks)} connections started a message ({failed} failed to start); "
          f"after {args.seconds} s of trickling {gone} were closed by the server")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("attack", choices=["pings", "big-frames", "trickle"])
    parser.add_argument("--addr", default="127.0.0.1:1935")
    parser.add_argument("--pid", type=int, required=True, help="the server's process id, to read its RSS")
    parser.add_argument("--name", default="hostile")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--frames", type=int, default=300, help="big-frames: frames to publish")
    parser.add_argument("--size", type=int, default=None,
                        help="big-frames: frame bytes (default 4 MiB); trickle: bytes sent up front (default 4 MiB)")
    parser.add_argument("--connections", type=int, default=40, help="trickle: connections")
    args = parser.parse_args()
    args.size = args.size or (4 << 20)
    host, port = args.addr.rsplit(":", 1)
    watch = Watch(args.pid)
    watch.start()
    {"pings": pings, "big-frames": big_frames, "trickle": trickle}[args.attack](args, (host, int(port)))
    time.sleep(0.5)
    watch.stop = True
    watch.join()
    watch.report()


if __name__ == "__main__":
    main()
