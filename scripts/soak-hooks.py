#!/usr/bin/env python3
"""Hook receiver for scripts/soak.sh: answers every callback (on_publish, on_play, ...) and
webhook delivery with 200 and counts them by path, keep-alive, so the server's hook paths run
for the whole soak. Usage: soak-hooks.py PORT_FILE COUNTS_FILE. Binds 127.0.0.1 on an ephemeral
port, writes the port to PORT_FILE, and rewrites COUNTS_FILE (path count per line) every few
seconds until killed.
"""

import collections
import os
import http.server
import sys
import threading
import time

counts = collections.Counter()
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        with lock:
            counts[self.path.split("?")[0]] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


def main():
    port_file, counts_file = sys.argv[1], sys.argv[2]
    # A listen backlog of 5 (the default) drops the SYNs of a storm of callbacks when 500
    # players leave at once; the server then sees timeouts that are the receiver's.
    http.server.ThreadingHTTPServer.request_queue_size = 4096
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file, "w") as out:
        out.write(str(server.server_address[1]))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while True:
        time.sleep(5)
        with lock:
            lines = "".join(f"{path} {n}\n" for path, n in sorted(counts.items()))
        with open(counts_file + ".tmp", "w") as out:
            out.write(lines)
        # Atomic, so a reader never sees half a file.
        os.replace(counts_file + ".tmp", counts_file)


if __name__ == "__main__":
    main()
