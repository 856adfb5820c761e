//! RTSP 1.0 (RFC 2326), sans-IO: the server side (requests in, replies and events out) and
//! the client side a camera pull drives.
//!
//! # Layout
//!
//! - [`client`]: [`client::ClientConnection`], a client playing one stream over TCP (the
//!   pull of a camera, `session/rtsp_pull.rs`); its module doc says what its driver does.
//! - [`server`]: [`ServerConnection`], the state machine of one connection (Init, Ready,
//!   Playing, Recording), CSeq, sessions, and the requests the driver decides.
//! - [`message`]: framing a request before parsing it (head end, bounded `Content-Length`),
//!   status codes, the response writer. `rtsp-types` parses the request itself.
//! - [`url`]: stream, args, track and credentials of a request URL.
//! - [`transport`]: the `Transport` header, asked and answered.
//! - [`auth`]: Basic and Digest `Authorization`, the 401 challenge, Digest verification.
//!
//! SDP is `protocol::sdp`; RTP, RTCP and the interleaved framing are `protocol::rtp`.
//!
//! # What the driver does
//!
//! Read, [`ServerConnection::handle_input`], then drain [`ServerConnection::poll_event`]:
//!
//! - [`Event::Describe`]: look the stream up (`info.target.stream`, `info.target.args`),
//!   ask `on_play`-style hooks, then [`ServerConnection::accept_describe`] with one
//!   [`crate::protocol::sdp::Track`] per track (`Track::new(RtpCodec::from_flv(..), index)` from the stream's
//!   sequence headers), or [`ServerConnection::reject`] with [`Status::NOT_FOUND`] /
//!   [`Status::FORBIDDEN`], or [`ServerConnection::reject_unauthorized`].
//! - [`Event::Announce`]: the publisher's tracks are parsed (`announced.tracks`, each with its
//!   `RtpCodec` and so its FLV sequence header); ask `on_publish`, check nobody publishes the
//!   stream, then [`ServerConnection::accept`] or reject (403 denied, 453 or 403 busy).
//! - [`Event::Setup`]: for UDP, allocate a port pair and answer
//!   [`ServerConnection::accept_setup`] with it (`SetupAnswer::server_port`); for TCP nothing
//!   to allocate. Players get `SetupAnswer::ssrc` = the stream packetizer's SSRC.
//! - [`Event::Play`]: start the player at the next keyframe and answer
//!   [`ServerConnection::accept_play`] with each track's first sequence number and RTP time
//!   (`rtp::Packetizer::next_sequence`, `Packetizer::rtp_time`). From then on media goes out
//!   beside this connection's replies: per RTP packet, [`crate::protocol::rtp::interleaved::header`]
//!   on the track's channel ([`ServerConnection::setups`]) and the shared packet.
//! - [`Event::Record`]: [`ServerConnection::accept`]; then [`Event::Interleaved`] frames (or
//!   UDP datagrams) on the track's channel go to its `rtp::Depacketizer`
//!   ([`ServerConnection::track_of_channel`] says which track and whether RTCP).
//! - [`Event::Pause`]: stop or resume, then [`ServerConnection::accept`].
//! - [`Event::KeepAlive`]: refresh the session's timeout (every request and media does).
//! - [`Event::Teardown`] and [`Event::Refused`]: flush [`ServerConnection::poll_transmit`] and
//!   close.
//!
//! While a decision is pending ([`ServerConnection::is_pending`]) nothing more is processed;
//! the driver should stop reading. The connection has no clock: the driver closes a session
//! that stays silent longer than `ServerSettings::session_timeout_secs` (the timeout announced
//! in `Session: id;timeout=N`), which is how a vanished client is cleaned up.
//!
//! Credentials: [`RequestInfo::user_pass`] gives what the hooks' `user` and `pass` get (the
//! URL's, or Basic's; Digest gives the user only). To require them, answer a request that has
//! none (or wrong ones) with [`ServerConnection::reject_unauthorized`] and a
//! [`auth::Challenge`] (a nonce from the driver's randomness); a Digest answer is checked
//! with [`auth::DigestCredentials::verify`] against the password the driver obtains, after
//! checking its nonce is the one issued.

pub mod auth;
pub mod client;
pub mod message;
pub mod server;
pub mod transport;
pub mod url;

pub use message::Status;
pub use server::{Event, RequestInfo, RtpInfo, ServerConnection, ServerSettings, SetupAnswer};
