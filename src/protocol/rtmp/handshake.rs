//! The RTMP handshake, sans IO: both sides, simple and digest forms.
//!
//! # The simple form (Adobe RTMP 1.0 specification, section 5.2)
//!
//! ```text
//! client                                   server
//!   C0 (1 byte: version 3) + C1 (1536) --->
//!                                      <--- S0 (1) + S1 (1536) + S2 (1536)
//!   C2 (1536)                          --->
//!   ... RTMP chunks (section 5.3) ...
//! ```
//!
//! C1/S1 (5.2.3) are `time (4, big endian) | zero (4) | random (1528)`; C2/S2 (5.2.4) echo the
//! peer's C1/S1 (`time | time2 | random echo`). C0/S0 (5.2.2) carry the version: 3. The spec
//! reserves 32..=255 precisely so text protocols are told apart at once, which is why a first
//! byte other than 3 fails right away, before 1537 bytes have arrived (an HTTP `GET ` on the RTMP
//! port gives `Version(0x47)`).
//!
//! # The digest ("complex") form
//!
//! Flash Player 9+ and the encoders that imitate it (ffmpeg, librtmp/OBS) put a non-zero version
//! in C1's `zero` field and hide an HMAC-SHA256 digest in C1. It is not in the spec; it is what
//! Flash Media Server did, and Flash Player is known to refuse H.264/AAC from servers that do
//! not answer in kind.
//! C1 is cut into two 764-byte halves after the 8-byte header; in scheme 0 the digest half comes
//! first and its 4 offset bytes sit at 8..12, in scheme 1 the key half comes first and the offset
//! bytes sit at 772..776. The digest is at `base + 4 + (sum of the 4 offset bytes) % 728`, and
//! is the HMAC-SHA256 of the 1504 other bytes of the packet, keyed with the open part of the
//! sender's key: `"Genuine Adobe Flash Player 001"` for C1, `"Genuine Adobe Flash Media Server
//! 001"` for S1. The full keys append the same 32 bytes to those texts. S2 (and C2) end with
//! `HMAC(HMAC(full key of the signer, peer's C1/S1 digest), first 1504 bytes)`.
//!
//! # Decisions
//!
//! - The caller keeps the bytes. `handle_input` consumes a piece only when it is whole (C0+C1 =
//!   1537 bytes, C2 = 1536; the client wants S0+S1+S2 = 3073) and otherwise returns `Ok(0)`: the
//!   caller keeps the unconsumed bytes and presents them again with more appended. So the codec
//!   buffers nothing, and its read buffer must be able to hold 1537 bytes (3073 for the client).
//! - Only the first byte is checked before a piece is whole, so garbage fails on its first byte
//!   and a truncated handshake just waits (timing it out is the session driver's job).
//! - The caller supplies randomness as a 32-byte seed that is stretched with SHA-256 into S1's
//!   and S2's random fields. The spec asks that field to be unpredictable enough to tell two
//!   handshakes apart, not cryptographically strong; a seed keeps the state tiny where 1528 bytes
//!   of caller randomness would sit in every half-open connection.
//! - S0+S1+S2 exist only between `handle_input` (which reads C1) and the next `poll_transmit`
//!   (which hands them out and frees them); afterwards the server keeps no packet at all.
//! - The server answers in the digest form when C1's digest verifies under either scheme (it
//!   uses the client's scheme for S1), and otherwise falls back to the simple form, whatever C1's
//!   version field says: a digest that verifies is the only trustworthy sign.
//! - The simple S2 is C1 byte for byte, `time2` included: librtmp compares the whole packet.
//! - C2 is read and ignored. Many clients echo S1 wrongly (or send random bytes); real servers
//!   accept them, and the digest form gives the server nothing to check that matters.
//! - A C0 version other than 3 is an error (RTMPE's 6 included: ringcast does not encrypt),
//!   where the spec suggests answering 3 to versions it does not know: a client that asked for
//!   something else would not understand what follows anyway.
//! - Errors are sticky: after one, `handle_input` keeps returning it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The only RTMP version ringcast speaks (C0/S0).
pub const RTMP_VERSION: u8 = 3;
/// Length of C1, C2, S1 and S2.
pub const PACKET_LEN: usize = 1536;
/// Length of C0 + C1, what the server needs before it can answer.
pub const C0C1_LEN: usize = 1 + PACKET_LEN;
/// Length of S0 + S1 + S2, what the client needs before it can answer.
pub const S0S1S2_LEN: usize = 1 + 2 * PACKET_LEN;
/// Length of the random seed the caller passes in (see the module doc).
pub const SEED_LEN: usize = 32;

const DIGEST_LEN: usize = 32;
/// Where a response's (S2/C2) signature starts: the last 32 bytes of the packet.
const SIGNATURE_AT: usize = PACKET_LEN - DIGEST_LEN;
/// Keeps a digest inside its 764-byte half: 764 - 4 offset bytes - 32 digest bytes.
const OFFSET_MODULO: usize = 728;

const PLAYER_KEY_TEXT: &[u8] = b"Genuine Adobe Flash Player 001";
const SERVER_KEY_TEXT: &[u8] = b"Genuine Adobe Flash Media Server 001";
/// Appended to either text to make the full key that signs S2 and C2.
const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57, 0x6e, 0xec, 0x5d,
    0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];

/// S1's version field in the digest form. ffmpeg checks S1's digest (when playing) only if the
/// first byte is at least 3; an FMS-like version makes players that want a digest see one.
const SERVER_VERSION: [u8; 4] = [5, 0, 17, 0];
/// C1's version field in the digest form: what ffmpeg sends (Flash Player 9.0.124.2).
const CLIENT_VERSION: [u8; 4] = [9, 0, 124, 2];

/// Domain labels so S1, S2 and the client's packets draw different filler from one seed.
const LABEL_S1: u8 = 1;
const LABEL_S2: u8 = 2;
const LABEL_C1: u8 = 3;
const LABEL_C2: u8 = 4;

/// What went wrong; either side closes the connection on any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// C0 (or S0, for the client) is not 3: not RTMP, or RTMPE.
    #[error("unsupported RTMP version {0} (expected 3)")]
    Version(u8),
    /// The server proved it read our digest C1 (S1 carried a valid digest) but S2 is not
    /// signed with our C1 digest: a broken or impersonating server.
    #[error("S2 is not signed with our C1 digest")]
    ServerSignature,
}

/// Where the digest hides in C1/S1: see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestScheme {
    /// Offset bytes at 8..12, digest in the first half.
    Scheme0,
    /// Offset bytes at 772..776, digest in the second half.
    Scheme1,
}

/// Which form the handshake took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Section 5.2 as written: S2 echoes C1, C2 echoes S1.
    Simple,
    /// The Flash-era digest form.
    Digest {
        /// The scheme the peer's C1 (or S1, on the client) used.
        scheme: DigestScheme,
    },
}

impl DigestScheme {
    const ALL: [DigestScheme; 2] = [DigestScheme::Scheme0, DigestScheme::Scheme1];

    /// Position of the 32-byte digest; at most 776 + 727 = 1503, so it always fits.
    fn digest_pos(self, packet: &[u8; PACKET_LEN]) -> usize {
        let base = match self {
            DigestScheme::Scheme0 => 8,
            DigestScheme::Scheme1 => 772,
        };
        let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        base + 4 + sum % OFFSET_MODULO
    }
}

/// HMAC-SHA256 keyed with the concatenation of `key_parts`.
///
/// HMAC (RFC 2104) zero-pads a key up to the 64-byte block and hashes a longer one first;
/// doing that here lets the full keys be assembled from their shared tail without a copy, and
/// uses the infallible `KeyInit::new` rather than `new_from_slice`, whose `Result` cannot fail
/// for HMAC but would need an unwrap.
fn hmac_sha256(key_parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut block = [0u8; 64];
    let key_len: usize = key_parts.iter().map(|p| p.len()).sum();
    if key_len <= block.len() {
        let mut at = 0;
        for part in key_parts {
            block[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
    } else {
        let mut hash = Sha256::new();
        for part in key_parts {
            hash.update(part);
        }
        block[..DIGEST_LEN].copy_from_slice(&hash.finalize());
    }
    Hmac::<Sha256>::new(&block.into())
}

/// The digest-form MAC of `packet` without the 32 bytes at `pos`, not yet finalized.
fn mac_around(key_parts: &[&[u8]], packet: &[u8; PACKET_LEN], pos: usize) -> Hmac<Sha256> {
    let mut mac = hmac_sha256(key_parts);
    mac.update(&packet[..pos]);
    mac.update(&packet[pos + DIGEST_LEN..]);
    mac
}

/// Finds a digest keyed with `key_text` under either scheme.
fn find_digest(packet: &[u8; PACKET_LEN], key_text: &[u8]) -> Option<(DigestScheme, [u8; DIGEST_LEN])> {
    DigestScheme::ALL.into_iter().find_map(|scheme| {
        let pos = scheme.digest_pos(packet);
        let claimed = &packet[pos..pos + DIGEST_LEN];
        mac_around(&[key_text], packet, pos).verify_slice(claimed).is_ok().then(|| {
            let mut digest = [0u8; DIGEST_LEN];
            digest.copy_from_slice(claimed);
            (scheme, digest)
        })
    })
}

/// Writes the digest into a C1/S1 whose other bytes are final; returns it.
fn imprint_digest(packet: &mut [u8; PACKET_LEN], scheme: DigestScheme, key_text: &[u8]) -> [u8; DIGEST_LEN] {
    let pos = scheme.digest_pos(packet);
    let digest: [u8; DIGEST_LEN] = mac_around(&[key_text], packet, pos).finalize().into_bytes().into();
    packet[pos..pos + DIGEST_LEN].copy_from_slice(&digest);
    digest
}

/// The signature that ends an S2 (or C2): proves the signer read the peer's digest.
fn response_signature(
    packet: &[u8; PACKET_LEN],
    signer_key_text: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> Hmac<Sha256> {
    let key: [u8; DIGEST_LEN] =
        hmac_sha256(&[signer_key_text, &KEY_TAIL]).chain_update(peer_digest).finalize().into_bytes().into();
    hmac_sha256(&[&key]).chain_update(&packet[..SIGNATURE_AT])
}

/// Fills `out` with bytes derived from the caller's seed (SHA-256 in counter mode).
fn fill_random(seed: &[u8; SEED_LEN], label: u8, out: &mut [u8]) {
    for (counter, chunk) in (0u32..).zip(out.chunks_mut(DIGEST_LEN)) {
        let block =
            Sha256::new().chain_update(seed).chain_update([label]).chain_update(counter.to_be_bytes()).finalize();
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// A C1/S1 with `time`, a zero version field and seeded filler.
fn new_challenge(seed: &[u8; SEED_LEN], label: u8, epoch: u32) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[..4].copy_from_slice(&epoch.to_be_bytes());
    fill_random(seed, label, &mut packet[8..]);
    packet
}

/// A digest-form S2/C2: seeded filler, then the signature over it.
fn new_signed_response(
    seed: &[u8; SEED_LEN],
    label: u8,
    signer_key_text: &[u8],
    peer_digest: &[u8; DIGEST_LEN],
) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    fill_random(seed, label, &mut packet[..SIGNATURE_AT]);
    let signature = response_signature(&packet, signer_key_text, peer_digest).finalize().into_bytes();
    packet[SIGNATURE_AT..].copy_from_slice(&signature);
    packet
}

/// Appends `pending` to `out` and frees it, so no packet outlives its transmission.
fn drain_into(pending: &mut Vec<u8>, out: &mut Vec<u8>) {
    if !pending.is_empty() {
        out.extend_from_slice(pending);
        *pending = Vec::new();
    }
}

/// The server side: reads C0+C1, answers S0+S1+S2, reads (and ignores) C2.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    kind: HandshakeKind,
    /// S0+S1+S2 between reading C1 and the next `poll_transmit`; empty (unallocated) otherwise.
    pending: Vec<u8>,
}

#[derive(Debug)]
enum ServerState {
    AwaitC0C1 { seed: [u8; SEED_LEN], epoch: u32 },
    AwaitC2,
    Done,
    Failed(HandshakeError),
}

impl ServerHandshake {
    /// `seed`: 32 random bytes (see the module doc); `epoch`: S1's `time` field, the
    /// timestamp base of the server's chunk streams (0 is fine).
    pub fn new(seed: [u8; SEED_LEN], epoch: u32) -> Self {
        Self { state: ServerState::AwaitC0C1 { seed, epoch }, kind: HandshakeKind::Simple, pending: Vec::new() }
    }

    /// Consumes whole handshake pieces from the front of `input` (C0+C1, then C2) and returns
    /// how many bytes that was; `Ok(0)` until a piece is whole (keep the bytes, offer them again
    /// with more appended). Bytes after C2 are the first RTMP chunks and are left alone.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match &self.state {
                ServerState::AwaitC0C1 { seed, epoch } => {
                    let Some((&c0, after_c0)) = rest.split_first() else {
                        return Ok(consumed);
                    };
                    if c0 != RTMP_VERSION {
                        return Err(self.fail(HandshakeError::Version(c0)));
                    }
                    let Some(c1) = after_c0.first_chunk::<PACKET_LEN>() else {
                        return Ok(consumed);
                    };
                    let (seed, epoch) = (*seed, *epoch);
                    self.answer(c1, &seed, epoch);
                    self.state = ServerState::AwaitC2;
                    consumed += C0C1_LEN;
                }
                ServerState::AwaitC2 => {
                    if rest.len() < PACKET_LEN {
                        return Ok(consumed);
                    }
                    self.state = ServerState::Done;
                    consumed += PACKET_LEN;
                }
                ServerState::Done => return Ok(consumed),
                ServerState::Failed(error) => return Err(*error),
            }
        }
    }

    /// Appends S0+S1+S2 to `out` once C0+C1 was read (once only).
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        drain_into(&mut self.pending, out);
    }

    /// C2 was read and S0+S1+S2 handed out: what follows is chunk streams.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ServerState::Done) && self.pending.is_empty()
    }

    /// The form of the handshake; `Simple` until C1 has been read.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    fn fail(&mut self, error: HandshakeError) -> HandshakeError {
        self.state = ServerState::Failed(error);
        error
    }

    fn answer(&mut self, c1: &[u8; PACKET_LEN], seed: &[u8; SEED_LEN], epoch: u32) {
        let mut s1 = new_challenge(seed, LABEL_S1, epoch);
        let mut reply = Vec::with_capacity(S0S1S2_LEN);
        reply.push(RTMP_VERSION);
        match find_digest(c1, PLAYER_KEY_TEXT) {
            Some((scheme, c1_digest)) => {
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                imprint_digest(&mut s1, scheme, SERVER_KEY_TEXT);
                reply.extend_from_slice(&s1);
                reply.extend_from_slice(&new_signed_response(seed, LABEL_S2, SERVER_KEY_TEXT, &c1_digest));
                self.kind = HandshakeKind::Digest { scheme };
            }
            None => {
                reply.extend_from_slice(&s1);
                reply.extend_from_slice(c1);
                self.kind = HandshakeKind::Simple;
            }
        }
        self.pending = reply;
    }
}

/// The client side (tests, load generator): sends C0+C1, reads S0+S1+S2, sends C2.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    kind: HandshakeKind,
    /// C2 between reading S2 and the next `poll_transmit`.
    pending: Vec<u8>,
}

#[derive(Debug)]
enum ClientState {
    Start { seed: [u8; SEED_LEN], epoch: u32, digest: Option<DigestScheme> },
    AwaitS0S1S2 { seed: [u8; SEED_LEN], c1_digest: Option<[u8; DIGEST_LEN]> },
    Done,
    Failed(HandshakeError),
}

impl ClientHandshake {
    /// `digest`: `None` for the simple form, or the scheme to hide C1's digest with.
    pub fn new(seed: [u8; SEED_LEN], epoch: u32, digest: Option<DigestScheme>) -> Self {
        Self { state: ClientState::Start { seed, epoch, digest }, kind: HandshakeKind::Simple, pending: Vec::new() }
    }

    /// First call: appends C0+C1. After S0+S1+S2 were read: appends C2.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        if let ClientState::Start { seed, epoch, digest } = self.state {
            let mut c1 = new_challenge(&seed, LABEL_C1, epoch);
            let c1_digest = digest.map(|scheme| {
                c1[4..8].copy_from_slice(&CLIENT_VERSION);
                imprint_digest(&mut c1, scheme, PLAYER_KEY_TEXT)
            });
            out.push(RTMP_VERSION);
            out.extend_from_slice(&c1);
            self.state = ClientState::AwaitS0S1S2 { seed, c1_digest };
        }
        drain_into(&mut self.pending, out);
    }

    /// Consumes S0+S1+S2 (3073 bytes) once whole and returns how many bytes that was; `Ok(0)`
    /// before that, or before C0+C1 was polled. Bytes after S2 are left alone.
    pub fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        let (seed, c1_digest) = match &self.state {
            ClientState::AwaitS0S1S2 { seed, c1_digest } => (*seed, *c1_digest),
            ClientState::Start { .. } | ClientState::Done => return Ok(0),
            ClientState::Failed(error) => return Err(*error),
        };
        let Some((&s0, after_s0)) = input.split_first() else {
            return Ok(0);
        };
        if s0 != RTMP_VERSION {
            return Err(self.fail(HandshakeError::Version(s0)));
        }
        let Some((s1, after_s1)) = after_s0.split_first_chunk::<PACKET_LEN>() else {
            return Ok(0);
        };
        let Some(s2) = after_s1.first_chunk::<PACKET_LEN>() else {
            return Ok(0);
        };
        // A server that answers a digest C1 in the simple form is common and fine (the
        // digest only matters to Flash), so only a server that shows a valid S1 digest is
        // held to signing S2; a simple C1 may be answered any way at all.
        let server_digest = c1_digest.and_then(|ours| find_digest(s1, SERVER_KEY_TEXT).map(|found| (ours, found)));
        let c2 = match server_digest {
            Some((ours, (scheme, s1_digest))) => {
                if response_signature(s2, SERVER_KEY_TEXT, &ours).verify_slice(&s2[SIGNATURE_AT..]).is_err() {
                    return Err(self.fail(HandshakeError::ServerSignature));
                }
                self.kind = HandshakeKind::Digest { scheme };
                new_signed_response(&seed, LABEL_C2, PLAYER_KEY_TEXT, &s1_digest)
            }
            None => *s1,
        };
        self.pending = c2.to_vec();
        self.state = ClientState::Done;
        Ok(S0S1S2_LEN)
    }

    /// S0+S1+S2 were read and C2 handed out.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ClientState::Done) && self.pending.is_empty()
    }

    /// The form the server answered in; `Simple` until S1 has been read.
    pub fn kind(&self) -> HandshakeKind {
        self.kind
    }

    fn fail(&mut self, error: HandshakeError) -> HandshakeError {
        self.state = ClientState::Failed(error);
        error
    }
}

/// What both sides of the handshake offer, so that one buffering driver serves both.
pub trait Handshake {
    fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError>;
    fn poll_transmit(&mut self, out: &mut Vec<u8>);
    fn is_done(&self) -> bool;
}

impl Handshake for ServerHandshake {
    fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        ServerHandshake::handle_input(self, input)
    }
    fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        ServerHandshake::poll_transmit(self, out)
    }
    fn is_done(&self) -> bool {
        ServerHandshake::is_done(self)
    }
}

impl Handshake for ClientHandshake {
    fn handle_input(&mut self, input: &[u8]) -> Result<usize, HandshakeError> {
        ClientHandshake::handle_input(self, input)
    }
    fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        ClientHandshake::poll_transmit(self, out)
    }
    fn is_done(&self) -> bool {
        ClientHandshake::is_done(self)
    }
}

/// A handshake with the bytes it has not consumed yet: the codec takes C0C1, S0S1S2 and C2
/// only whole, and reads can split them anywhere. Boxed by the connections and dropped once
/// done, so an established connection keeps none of its 3 KiB.
#[derive(Debug)]
pub struct Buffered<H> {
    handshake: H,
    input: Vec<u8>,
}

impl<H: Handshake> Buffered<H> {
    pub fn new(handshake: H) -> Self {
        Buffered { handshake, input: Vec::new() }
    }

    /// Feeds `input`, appends any reply to `transmit`, and once the handshake is done returns
    /// the bytes that followed it (the first chunks).
    pub fn feed(&mut self, input: &[u8], transmit: &mut Vec<u8>) -> Result<Option<Vec<u8>>, HandshakeError> {
        self.input.extend_from_slice(input);
        let used = self.handshake.handle_input(&self.input)?;
        self.handshake.poll_transmit(transmit);
        self.input.drain(..used);
        Ok(self.handshake.is_done().then(|| std::mem::take(&mut self.input)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// C0+C1 that ffmpeg 5.1 sent when publishing to a bare TCP listener
    /// (`ffmpeg -re -f lavfi -i testsrc -t 1 -f flv rtmp://127.0.0.1:PORT/live/x`).
    const FFMPEG_C0C1: &[u8; C0C1_LEN] = include_bytes!("fixtures/ffmpeg_c0c1.bin");

    // Independent of the module's key assembly: the full keys written out whole.
    const FP_FULL_KEY: &[u8; 62] = b"Genuine Adobe Flash Player 001\
        \xf0\xee\xc2\x4a\x80\x68\xbe\xe8\x2e\x00\xd0\xd1\x02\x9e\x7e\x57\
        \x6e\xec\x5d\x2d\x29\x80\x6f\xab\x93\xb8\xe6\x36\xcf\xeb\x31\xae";
    const FMS_FULL_KEY: &[u8; 68] = b"Genuine Adobe Flash Media Server 001\
        \xf0\xee\xc2\x4a\x80\x68\xbe\xe8\x2e\x00\xd0\xd1\x02\x9e\x7e\x57\
        \x6e\xec\x5d\x2d\x29\x80\x6f\xab\x93\xb8\xe6\x36\xcf\xeb\x31\xae";

    fn seed(n: u8) -> [u8; SEED_LEN] {
        [n; SEED_LEN]
    }

    /// Reference HMAC-SHA256 straight from the hmac crate, key taken whole.
    fn reference_hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Reference digest check: the offset computed by hand for the named scheme, the MAC
    /// over the bytes around it. Returns the digest when it verifies.
    fn reference_digest(packet: &[u8], offset_bytes_at: usize, key: &[u8]) -> Option<[u8; 32]> {
        let offset_sum: usize = packet[offset_bytes_at..offset_bytes_at + 4].iter().map(|&b| b as usize).sum();
        let pos = offset_sum % 728 + offset_bytes_at + 4;
        let expected = reference_hmac(key, &[&packet[..pos], &packet[pos + 32..]]);
        (packet[pos..pos + 32] == expected).then_some(expected)
    }

    /// Reference response check: last 32 bytes are HMAC(HMAC(full key, peer digest), rest).
    fn reference_response_ok(packet: &[u8], full_key: &[u8], peer_digest: &[u8; 32]) -> bool {
        let key = reference_hmac(full_key, &[peer_digest]);
        packet[1504..] == reference_hmac(&key, &[&packet[..1504]])
    }

    /// Runs client and server against each other in memory, delivering everything the other
    /// side has sent at each step; returns (C0C1, S0S1S2, C2).
    fn run(client: &mut ClientHandshake, server: &mut ServerHandshake) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut c0c1 = Vec::new();
        client.poll_transmit(&mut c0c1);
        assert_eq!(c0c1.len(), C0C1_LEN);
        assert_eq!(server.handle_input(&c0c1), Ok(C0C1_LEN));
        let mut s0s1s2 = Vec::new();
        server.poll_transmit(&mut s0s1s2);
        assert_eq!(s0s1s2.len(), S0S1S2_LEN);
        assert!(!server.is_done());
        assert_eq!(client.handle_input(&s0s1s2), Ok(S0S1S2_LEN));
        let mut c2 = Vec::new();
        client.poll_transmit(&mut c2);
        assert_eq!(c2.len(), PACKET_LEN);
        assert!(client.is_done());
        assert_eq!(server.handle_input(&c2), Ok(PACKET_LEN));
        assert!(server.is_done());
        (c0c1, s0s1s2, c2)
    }

    #[test]
    fn simple_handshake_in_memory() {
        let mut client = ClientHandshake::new(seed(1), 1000, None);
        let mut server = ServerHandshake::new(seed(2), 2000);
        let (c0c1, s0s1s2, c2) = run(&mut client, &mut server);
        assert_eq!(server.kind(), HandshakeKind::Simple);
        assert_eq!(client.kind(), HandshakeKind::Simple);
        assert_eq!(c0c1[0], 3);
        assert_eq!(&c0c1[1..5], &1000u32.to_be_bytes());
        assert_eq!(&c0c1[5..9], &[0; 4], "simple C1 has a zero field");
        assert_eq!(s0s1s2[0], 3);
        let (s1, s2) = s0s1s2[1..].split_at(PACKET_LEN);
        assert_eq!(&s1[..4], &2000u32.to_be_bytes());
        assert_eq!(&s1[4..8], &[0; 4], "simple S1 has a zero field");
        assert_eq!(s2, &c0c1[1..], "S2 echoes C1 whole");
        assert_eq!(c2, s1, "C2 echoes S1 whole");
        assert_ne!(&s1[8..], &c0c1[9..], "the two sides drew different random fields");
    }

    fn digest_handshake(scheme: DigestScheme, offset_bytes_at: usize) {
        let mut client = ClientHandshake::new(seed(3), 7, Some(scheme));
        let mut server = ServerHandshake::new(seed(4), 9);
        let (c0c1, s0s1s2, c2) = run(&mut client, &mut server);
        assert_eq!(server.kind(), HandshakeKind::Digest { scheme });
        assert_eq!(client.kind(), HandshakeKind::Digest { scheme });

        let c1 = &c0c1[1..];
        assert_eq!(&c1[4..8], &CLIENT_VERSION);
        let fp_open = &FP_FULL_KEY[..30];
        let c1_digest = reference_digest(c1, offset_bytes_at, fp_open).expect("C1 digest");
        let other_base = if offset_bytes_at == 8 { 772 } else { 8 };
        assert!(reference_digest(c1, other_base, fp_open).is_none());

        let (s1, s2) = s0s1s2[1..].split_at(PACKET_LEN);
        assert!(s1[4] >= 3, "a version ffmpeg bothers to verify");
        let s1_digest =
            reference_digest(s1, offset_bytes_at, &FMS_FULL_KEY[..36]).expect("S1 digest, in the client's scheme");
        assert!(reference_response_ok(s2, FMS_FULL_KEY, &c1_digest), "S2 signature");
        assert!(reference_response_ok(&c2, FP_FULL_KEY, &s1_digest), "C2 signature");
    }

    #[test]
    fn digest_handshake_scheme0_in_memory() {
        digest_handshake(DigestScheme::Scheme0, 8);
    }

    #[test]
    fn digest_handshake_scheme1_in_memory() {
        digest_handshake(DigestScheme::Scheme1, 772);
    }

    #[test]
    fn key_assembly_matches_whole_keys() {
        // The >64-byte FMS key goes through the hash-first path of `hmac_sha256`.
        for (parts, whole) in [
            (&[SERVER_KEY_TEXT, &KEY_TAIL[..]][..], &FMS_FULL_KEY[..]),
            (&[PLAYER_KEY_TEXT, &KEY_TAIL[..]][..], &FP_FULL_KEY[..]),
            (&[SERVER_KEY_TEXT][..], &FMS_FULL_KEY[..36]),
        ] {
            let ours: [u8; 32] = hmac_sha256(parts).chain_update(b"abc").finalize().into_bytes().into();
            assert_eq!(ours, reference_hmac(whole, &[b"abc"]));
        }
    }

    #[test]
    fn ffmpeg_c0c1_is_digest_scheme0() {
        assert_eq!(&FFMPEG_C0C1[5..9], &[9, 0, 124, 2], "ffmpeg's Flash Player version");
        let mut server = ServerHandshake::new(seed(5), 0);
        assert_eq!(server.handle_input(FFMPEG_C0C1), Ok(C0C1_LEN));
        assert_eq!(server.kind(), HandshakeKind::Digest { scheme: DigestScheme::Scheme0 });
        let mut reply = Vec::new();
        server.poll_transmit(&mut reply);
        let c1_digest = reference_digest(&FFMPEG_C0C1[1..], 8, &FP_FULL_KEY[..30]).expect("digest");
        assert!(reference_digest(&reply[1..1537], 8, &FMS_FULL_KEY[..36]).is_some());
        assert!(reference_response_ok(&reply[1537..], FMS_FULL_KEY, &c1_digest));
    }

    #[test]
    fn corrupted_digest_falls_back_to_simple() {
        let mut c0c1 = FFMPEG_C0C1.to_vec();
        let pos = DigestScheme::Scheme0.digest_pos(FFMPEG_C0C1[1..].try_into().expect("1536"));
        c0c1[1 + pos] ^= 1;
        let mut server = ServerHandshake::new(seed(6), 0);
        assert_eq!(server.handle_input(&c0c1), Ok(C0C1_LEN));
        assert_eq!(server.kind(), HandshakeKind::Simple);
        let mut reply = Vec::new();
        server.poll_transmit(&mut reply);
        assert_eq!(&reply[1537..], &c0c1[1..], "simple S2 echoes C1");
    }

    #[test]
    fn digest_client_accepts_simple_server_reply() {
        let mut client = ClientHandshake::new(seed(7), 0, Some(DigestScheme::Scheme0));
        let mut c0c1 = Vec::new();
        client.poll_transmit(&mut c0c1);
        // A server that ignores digests: random S1 with a zero version, S2 echoing C1.
        let mut reply = vec![3];
        reply.extend_from_slice(&new_challenge(&seed(8), LABEL_S1, 0));
        reply.extend_from_slice(&c0c1[1..]);
        assert_eq!(client.handle_input(&reply), Ok(S0S1S2_LEN));
        let mut c2 = Vec::new();
        client.poll_transmit(&mut c2);
        assert_eq!(c2, &reply[1..1537]);
        assert_eq!(client.kind(), HandshakeKind::Simple);
    }

    #[test]
    fn digest_client_rejects_bad_s2_signature() {
        let mut client = ClientHandshake::new(seed(9), 0, Some(DigestScheme::Scheme1));
        let mut server = ServerHandshake::new(seed(10), 0);
        let mut buf = Vec::new();
        client.poll_transmit(&mut buf);
        server.handle_input(&buf).expect("C0C1");
        buf.clear();
        server.poll_transmit(&mut buf);
        buf[S0S1S2_LEN - 1] ^= 0x80;
        assert_eq!(client.handle_input(&buf), Err(HandshakeError::ServerSignature));
        assert_eq!(client.handle_input(&buf), Err(HandshakeError::ServerSignature), "sticky");
        assert!(!client.is_done());
    }

    #[test]
    fn wrong_c2_does_not_fail() {
        for c2 in [[0u8; PACKET_LEN], [0xa5; PACKET_LEN]] {
            let mut server = ServerHandshake::new(seed(11), 0);
            assert_eq!(server.handle_input(FFMPEG_C0C1), Ok(C0C1_LEN));
            server.poll_transmit(&mut Vec::new());
            assert_eq!(server.handle_input(&c2), Ok(PACKET_LEN));
            assert!(server.is_done());
        }
    }

    /// Feeds `stream` one byte at a time the way a session driver does: the unconsumed bytes
    /// stay in its buffer and are offered again with the next byte.
    #[test]
    fn one_byte_pieces() {
        let mut client = ClientHandshake::new(seed(12), 0, Some(DigestScheme::Scheme1));
        let mut server = ServerHandshake::new(seed(13), 0);
        let mut to_server = Vec::new();
        client.poll_transmit(&mut to_server);

        let mut to_client = Vec::new();
        let mut buffered = Vec::new();
        for &byte in &to_server {
            buffered.push(byte);
            let n = server.handle_input(&buffered).expect("server input");
            buffered.drain(..n);
            server.poll_transmit(&mut to_client);
        }
        assert!(buffered.is_empty());
        assert_eq!(to_client.len(), S0S1S2_LEN);

        let mut c2 = Vec::new();
        for &byte in &to_client {
            buffered.push(byte);
            let n = client.handle_input(&buffered).expect("client input");
            buffered.drain(..n);
            client.poll_transmit(&mut c2);
        }
        assert!(buffered.is_empty());
        assert!(client.is_done());

        for (i, &byte) in c2.iter().enumerate() {
            assert!(!server.is_done());
            buffered.push(byte);
            let n = server.handle_input(&buffered).expect("server input");
            assert_eq!(n, if i + 1 == PACKET_LEN { PACKET_LEN } else { 0 });
            buffered.drain(..n);
        }
        assert!(server.is_done());
        assert_eq!(server.kind(), HandshakeKind::Digest { scheme: DigestScheme::Scheme1 });
    }

    #[test]
    fn bytes_after_c2_are_not_consumed() {
        let mut server = ServerHandshake::new(seed(14), 0);
        let mut input = FFMPEG_C0C1.to_vec();
        input.extend_from_slice(&[0x55; PACKET_LEN]);
        let chunk = [0x03, 0, 0, 0, 0, 0, 0x19, 0x14, 0, 0, 0, 0];
        input.extend_from_slice(&chunk);
        // All at once: C0C1 and C2 are consumed in one call, the chunk bytes are not.
        assert_eq!(server.handle_input(&input), Ok(C0C1_LEN + PACKET_LEN));
        assert!(!server.is_done(), "S0S1S2 not handed out yet");
        let mut reply = Vec::new();
        server.poll_transmit(&mut reply);
        assert_eq!(reply.len(), S0S1S2_LEN);
        assert!(server.is_done());
        assert_eq!(server.handle_input(&chunk), Ok(0));
        server.poll_transmit(&mut reply);
        assert_eq!(reply.len(), S0S1S2_LEN, "S0S1S2 go out once");
    }

    #[test]
    fn http_on_the_rtmp_port_is_rejected_at_once() {
        let mut server = ServerHandshake::new(seed(15), 0);
        assert_eq!(server.handle_input(b"G"), Err(HandshakeError::Version(0x47)));
        assert_eq!(server.handle_input(b"GET / HTTP/1.1\r\n"), Err(HandshakeError::Version(b'G')), "sticky");
        let mut out = Vec::new();
        server.poll_transmit(&mut out);
        assert!(out.is_empty());
        assert!(!server.is_done());
        assert_eq!(HandshakeError::Version(b'G').to_string(), "unsupported RTMP version 71 (expected 3)");
    }

    #[test]
    fn client_rejects_bad_s0() {
        let mut client = ClientHandshake::new(seed(16), 0, None);
        client.poll_transmit(&mut Vec::new());
        assert_eq!(client.handle_input(&[6]), Err(HandshakeError::Version(6)));
    }

    #[test]
    fn truncated_input_waits() {
        let mut c0c1 = Vec::new();
        ClientHandshake::new(seed(17), 0, Some(DigestScheme::Scheme0)).poll_transmit(&mut c0c1);
        for len in 0..C0C1_LEN {
            let mut server = ServerHandshake::new(seed(18), 0);
            assert_eq!(server.handle_input(&c0c1[..len]), Ok(0));
            let mut out = Vec::new();
            server.poll_transmit(&mut out);
            assert!(out.is_empty());
        }
        let mut server = ServerHandshake::new(seed(18), 0);
        assert_eq!(server.handle_input(&c0c1), Ok(C0C1_LEN));
        for len in 0..PACKET_LEN {
            assert_eq!(server.handle_input(&vec![0; len]), Ok(0));
        }
        let mut client = ClientHandshake::new(seed(19), 0, None);
        assert_eq!(client.handle_input(&[3; 10]), Ok(0), "nothing expected before C0C1");
        client.poll_transmit(&mut Vec::new());
        let mut reply = vec![3u8];
        reply.resize(S0S1S2_LEN, 0x11);
        for len in 0..S0S1S2_LEN {
            assert_eq!(client.handle_input(&reply[..len]), Ok(0));
        }
        assert_eq!(client.handle_input(&reply), Ok(S0S1S2_LEN));
    }

    /// xorshift64*: deterministic garbage without an RNG dependency.
    fn garbage(state: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *state ^= *state >> 12;
                *state ^= *state << 25;
                *state ^= *state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let lengths = (0..40).chain([1535, 1536, 1537, 1538, 3072, 3073, 3074, 4609, 6000]);
        for len in lengths.clone().chain(lengths.map(|l| l * 3 / 2 + 1)) {
            for first in [None, Some(3u8)] {
                let mut input = garbage(&mut state, len);
                if let (Some(v), Some(b)) = (first, input.first_mut()) {
                    *b = v;
                }
                let mut server = ServerHandshake::new(seed(20), 0);
                let mut out = Vec::new();
                if let Ok(n) = server.handle_input(&input) {
                    assert!(n <= input.len());
                    server.poll_transmit(&mut out);
                    let _ = server.handle_input(input.get(n..).unwrap_or_default());
                }
                for digest in [None, Some(DigestScheme::Scheme0), Some(DigestScheme::Scheme1)] {
                    let mut client = ClientHandshake::new(seed(21), 0, digest);
                    client.poll_transmit(&mut out);
                    if let Ok(n) = client.handle_input(&input) {
                        assert!(n <= input.len());
                        client.poll_transmit(&mut out);
                    }
                }
            }
        }
    }

    #[test]
    fn state_is_small_and_freed_when_done() {
        assert!(size_of::<ServerHandshake>() <= 80, "{}", size_of::<ServerHandshake>());
        let mut server = ServerHandshake::new(seed(22), 0);
        server.handle_input(FFMPEG_C0C1).expect("C0C1");
        server.poll_transmit(&mut Vec::new());
        assert_eq!(server.pending.capacity(), 0, "S0S1S2 freed once handed out");
        server.handle_input(&[0; PACKET_LEN]).expect("C2");
        assert!(server.is_done());
    }
}
