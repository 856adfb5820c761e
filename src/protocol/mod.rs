//! Sans-IO codecs: bytes in, events and bytes out.
//!
//! Nothing in this module touches a socket, a clock or an async runtime (a unit test in
//! `tests/layering.rs` checks the imports). Time, when a codec needs it, is a parameter; so
//! are the wire limits ([`limits::WireLimits`]), which the state machines never read from the
//! configuration.

pub mod amf0;
pub mod codec;
pub(crate) mod cursor;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod flv;
pub mod http;
pub mod http_server;
pub mod limits;
pub mod rtmp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
pub mod websocket;
