#!/usr/bin/python3
"""GStreamer's RTSP server (gst-rtsp-server) relaying one RTSP stream, for scripts/bench-rtsp.sh.

Serves rtsp://127.0.0.1:PORT/PATH over TCP (interleaved) only. The media is shared by every
client: one rtspsrc pulls the source (H.264 and AAC), depayloads it and payloads it again,
and gst-rtsp-server fans the RTP packets out. Prints "ready" once it listens.

Usage: gst-rtsp-relay.py --port PORT --source rtsp://HOST:PORT/live/bench [--path /live/bench]
Needs python3-gi and gir1.2-gst-rtsp-server-1.0 (Debian's python3, not a virtualenv's).
"""

import argparse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", required=True, help="the RTSP stream to relay")
    parser.add_argument("--path", default="/live/bench")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    # Room for a thousand clients' sockets and their RTSP requests without refusals.
    server.set_backlog(4096)

    factory = GstRtspServer.RTSPMediaFactory()
    # Each track by its caps: the source's pads appear once it has described the stream.
    factory.set_launch(
        f"( rtspsrc location={args.source} protocols=tcp latency=200 name=src "
        "src. ! application/x-rtp,media=video ! rtph264depay ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "src. ! application/x-rtp,media=audio ! rtpmp4gdepay ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"gst-rtsp-relay: cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
