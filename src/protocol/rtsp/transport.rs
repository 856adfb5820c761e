//! The `Transport` header (RFC 2326, 12.39): what a SETUP asks for and what the reply says.
//! Supported: RTP/AVP over TCP, interleaved on the RTSP connection, and RTP/AVP over unicast
//! UDP. Multicast, other profiles (SAVP, raw) and anything else is "461 Unsupported
//! Transport".

/// How one track's RTP and RTCP travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lower {
    /// Interleaved on the RTSP connection, on these channels (RTP, RTCP). A client that names
    /// none gets a pair chosen by the connection.
    Tcp { interleaved: Option<(u8, u8)> },
    /// UDP to the client's ports (RTP, RTCP).
    Udp { client_port: (u16, u16) },
}

/// The transport a client asked for (the first alternative this server supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportRequest {
    pub lower: Lower,
    /// `mode=record`: the client will publish on this track.
    pub record: bool,
}

/// What the driver adds to a UDP setup's answer, and what the reply states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportReply {
    pub lower: Lower,
    pub record: bool,
    /// The server's UDP ports (RTP, RTCP), for UDP.
    pub server_port: Option<(u16, u16)>,
    /// The SSRC this server sends the track with (players).
    pub ssrc: Option<u32>,
}

impl TransportReply {
    /// The reply's `Transport` header value.
    pub fn header(&self) -> String {
        let mut value = match self.lower {
            Lower::Tcp { interleaved } => {
                let (rtp, rtcp) = interleaved.unwrap_or((0, 1));
                format!("RTP/AVP/TCP;unicast;interleaved={rtp}-{rtcp}")
            }
            Lower::Udp { client_port: (rtp, rtcp) } => format!("RTP/AVP;unicast;client_port={rtp}-{rtcp}"),
        };
        if let (Lower::Udp { .. }, Some((rtp, rtcp))) = (self.lower, self.server_port) {
            value.push_str(&format!(";server_port={rtp}-{rtcp}"));
        }
        if let Some(ssrc) = self.ssrc {
            value.push_str(&format!(";ssrc={ssrc:08X}"));
        }
        if self.record {
            value.push_str(";mode=record");
        }
        value
    }
}

/// The first alternative of `header` this server supports; `None` when there is none.
pub fn parse(header: &str) -> Option<TransportRequest> {
    header.split(',').find_map(parse_alternative)
}

fn parse_alternative(spec: &str) -> Option<TransportRequest> {
    let mut parts = spec.split(';').map(str::trim);
    let protocol = parts.next()?.to_ascii_uppercase();
    let tcp = match protocol.as_str() {
        "RTP/AVP" | "RTP/AVP/UDP" => false,
        "RTP/AVP/TCP" => true,
        _ => return None,
    };
    let (mut interleaved, mut client_port, mut record) = (None, None, false);
    for part in parts {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match key.to_ascii_lowercase().as_str() {
            "multicast" => return None,
            "interleaved" => interleaved = Some(pair(value)?),
            "client_port" => client_port = Some(pair(value)?),
            "mode" => record = value.trim_matches('"').eq_ignore_ascii_case("record"),
            _ => {}
        }
    }
    let lower = if tcp {
        Lower::Tcp { interleaved }
    } else {
        Lower::Udp { client_port: client_port.filter(|(rtp, _)| *rtp != 0)? }
    };
    Some(TransportRequest { lower, record })
}

/// `a-b`, or `a` alone meaning `a-(a+1)`.
fn pair<T: std::str::FromStr + Copy + TryFrom<u32> + Into<u32>>(value: &str) -> Option<(T, T)> {
    let (first, second) = match value.split_once('-') {
        Some((first, second)) => (first.trim().parse().ok()?, second.trim().parse().ok()?),
        None => {
            let first: T = value.trim().parse().ok()?;
            (first, T::try_from(first.into() + 1).ok()?)
        }
    };
    Some((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_real_clients() {
        // ffmpeg over TCP, publishing.
        assert_eq!(
            parse("RTP/AVP/TCP;unicast;interleaved=2-3;mode=record"),
            Some(TransportRequest { lower: Lower::Tcp { interleaved: Some((2, 3)) }, record: true })
        );
        // ffmpeg over UDP, playing; GStreamer's alternatives (the first supported wins).
        assert_eq!(
            parse("RTP/AVP/UDP;unicast;client_port=5000-5001"),
            Some(TransportRequest { lower: Lower::Udp { client_port: (5000, 5001) }, record: false })
        );
        assert_eq!(
            parse("RTP/SAVP;unicast;client_port=1-2,RTP/AVP;multicast,RTP/AVP;unicast;client_port=7000"),
            Some(TransportRequest { lower: Lower::Udp { client_port: (7000, 7001) }, record: false })
        );
        assert_eq!(parse("RTP/AVP/TCP;unicast").unwrap().lower, Lower::Tcp { interleaved: None });
    }

    #[test]
    fn unsupported_transports() {
        for header in [
            "RTP/AVP;multicast",
            "RAW/RAW/UDP;unicast;client_port=1-2",
            "RTP/AVP;unicast",
            "RTP/AVP/TCP;interleaved=300-301",
            "",
        ] {
            assert_eq!(parse(header), None, "{header}");
        }
        assert_eq!(parse("RTP/AVP;unicast;client_port=65535"), None);
    }

    #[test]
    fn reply_headers() {
        let tcp = TransportReply {
            lower: Lower::Tcp { interleaved: Some((0, 1)) },
            record: true,
            server_port: None,
            ssrc: None,
        };
        assert_eq!(tcp.header(), "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record");
        let udp = TransportReply {
            lower: Lower::Udp { client_port: (5000, 5001) },
            record: false,
            server_port: Some((40000, 40001)),
            ssrc: Some(0xabc),
        };
        assert_eq!(udp.header(), "RTP/AVP;unicast;client_port=5000-5001;server_port=40000-40001;ssrc=00000ABC");
    }
}
