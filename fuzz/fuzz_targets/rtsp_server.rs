//! The server-side RTSP state machine: the fuzzer's bytes as what a client sends (requests,
//! interleaved frames, garbage), fed in pieces whose size the first byte picks. Every request
//! is accepted (DESCRIBE with a fixed H.264 + AAC description), so SETUP, PLAY and RECORD
//! paths are reached too. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::rtp::RtpCodec;
use ringcast::protocol::rtp::codec::AacTrack;
use ringcast::protocol::rtsp::server::{Event, ServerConnection, ServerSettings, SetupAnswer};
use ringcast::protocol::rtsp::RtpInfo;
use ringcast::protocol::sdp::Track;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else { return };
    let piece = usize::from(piece).max(1);
    let mut conn = ServerConnection::new(ServerSettings::default(), 1);
    let mut out = Vec::new();
    for chunk in stream.chunks(piece) {
        conn.handle_input(chunk);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Describe(_) => {
                    let mut tracks = vec![Track::new(RtpCodec::H264 { config: None }, 0)];
                    if let Ok(aac) = AacTrack::from_config(&[0x11, 0x90]) {
                        tracks.push(Track::new(RtpCodec::Aac(aac), 1));
                    }
                    conn.accept_describe(tracks, 1);
                }
                Event::Announce { .. } | Event::Record(_) | Event::Pause(_) => conn.accept(),
                Event::Setup { .. } => conn.accept_setup(SetupAnswer { server_port: Some((1000, 1001)), ssrc: Some(5) }),
                Event::Play { .. } => conn.accept_play(&[RtpInfo { track: 0, sequence: 1, rtp_time: 2 }]),
                Event::Interleaved { channel, .. } => {
                    let _ = conn.track_of_channel(channel);
                }
                Event::Teardown | Event::KeepAlive | Event::Refused(_) => {}
            }
        }
        out.clear();
        conn.poll_transmit(&mut out);
    }
});
