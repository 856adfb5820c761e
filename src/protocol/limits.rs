//! The wire limits: how much of one message or request head a connection may make the server
//! hold before it is refused. The state machines take them when they are built (operators set
//! them in the configuration); `Default` is what every protocol used before they were
//! configurable.

use crate::protocol::{http_server, rtmp::chunk, rtsp::message};

/// Per-connection wire limits of every protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireLimits {
    /// Largest RTMP message assembled; a larger declared length closes the connection. The
    /// format's 24-bit length field caps it at 16 MiB.
    pub rtmp_message_bytes: u32,
    /// RTMP chunk streams that may hold a partly assembled message at once; one more closes
    /// the connection.
    pub rtmp_chunk_streams: usize,
    /// Largest HTTP-FLV (and WebSocket-FLV) request head; past it the client gets `431`.
    pub http_request_head_bytes: usize,
    /// Largest RTSP request head; past it the client gets `413`.
    pub rtsp_request_head_bytes: usize,
    /// Largest RTSP request body (an ANNOUNCE's SDP); past it the client gets `413`.
    pub rtsp_body_bytes: usize,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            rtmp_message_bytes: chunk::MAX_MESSAGE_LEN,
            rtmp_chunk_streams: chunk::MAX_OPEN_CHUNK_STREAMS,
            http_request_head_bytes: http_server::MAX_REQUEST_HEAD,
            rtsp_request_head_bytes: message::MAX_HEAD,
            rtsp_body_bytes: message::MAX_BODY,
        }
    }
}
