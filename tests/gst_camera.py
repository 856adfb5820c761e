#!/usr/bin/python3
"""An IP camera for tests/rtsp_source.rs: GStreamer's RTSP server with a live test pattern.

Serves rtsp://127.0.0.1:PORT/PATH over TCP (interleaved): H.264 320x240 at 30 fps (a
keyframe every second) and AAC stereo, encoded once for every client. With --user and
--password it wants Digest credentials, as cameras do. Prints "ready" once it listens and
"client" for each RTSP connection it accepts, so a test can count connections.

Usage: gst_camera.py --port PORT [--path /stream1] [--user U --password P]
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
    parser.add_argument("--path", default="/stream1")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.connect("client-connected", lambda *_: print("client", flush=True))

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 "
        "! x264enc tune=zerolatency bframes=0 key-int-max=30 ! h264parse "
        "! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "audiotestsrc is-live=true ! audio/x-raw,rate=44100,channels=2 ! voaacenc ! aacparse "
        "! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_digest(args.user, args.password, token)
        server.set_auth(auth)
        role = Gst.Structure.from_string(
            "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )[0]
        factory.add_role_from_structure(role)

    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        raise SystemExit(f"gst_camera: cannot listen on 127.0.0.1:{args.port}")
    print("ready", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
