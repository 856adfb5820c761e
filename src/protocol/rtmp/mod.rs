//! RTMP (Adobe RTMP specification 1.0, 2012): handshake, chunk stream, messages, and the
//! connection state machines built from them.

pub mod chunk;
pub mod client;
pub mod handshake;
pub mod message;
pub mod server;
