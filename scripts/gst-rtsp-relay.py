#!/usr/bin/python3
"""GStreamer's RTSP server (gst-rtsp-server) relaying one RTSP stream, or serving as a camera.

Serves rtsp://127.0.0.1:PORT/PATH over TCP (interleaved) only. The media is shared by every
client. With --source (scripts/bench-rtsp.sh): one rtspsrc pulls the source (H.264 and AAC),
depayloads it and payloads it again, and gst-rtsp-server fans the RTP packets out. Without it
(tests/rtsp_source.rs), an IP camera: a live test pattern, H.264 320x240 at 30 fps (a
keyframe every second) and AAC stereo, wanting Digest credentials when --user and
--password are given, as cameras do. Prints "ready" once it listens, and "client" for each
RTSP connection it accepts.

Usage: gst-rtsp-relay.py --port PORT [--source rtsp://HOST:PORT/live/bench] [--path /live/bench]
                         [--user U --password P]
Needs python3-gi and gir1.2-gst-rtsp-server-1.0 (Debian's python3, not a virtualenv's).
"""

import argparse

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

# Each track by its caps: the source's pads appear once it has described the stream.
RELAY = (
    "( rtspsrc location={source} protocols=tcp latency=200 name=src "
    "src. ! application/x-rtp,media=video ! rtph264depay ! rtph264pay name=pay0 pt=96 config-interval=-1 "
    "src. ! application/x-rtp,media=audio ! rtpmp4gdepay ! rtpmp4gpay name=pay1 pt=97 )"
)
CAMERA = (
    "( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 "
    "! x264enc tune=zerolatency bframes=0 key-int-max=30 ! h264parse "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 "
    "audiotestsrc is-live=true ! audio/x-raw,rate=44100,channels=2 ! voaacenc ! aacparse "
    "! rtpmp4gpay name=pay1 pt=97 )"
)


def require_digest(server, factory, user, password):
    """Only `user` with `password`, by Digest, may play."""
    auth = GstRtspServer.RTSPAuth()
    auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    auth.add_digest(user, password, token)
    server.set_auth(auth)
    role = "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
    factory.add_role_from_structure(Gst.Structure.from_string(role)[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", help="the RTSP stream to relay; without it, a camera's test pattern")
    parser.add_argument("--path", default="/live/bench")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    # Room for a thousand clients' sockets and their RTSP requests without refusals.
    server.set_backlog(4096)
    server.connect("client-connected", lambda *_: print("client", flush=True))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(RELAY.format(source=args.source) if args.source else CAMERA)
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    if args.user:
        require_digest(server, factory, args.user, args.password or "")
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"gst-rtsp-relay: cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
