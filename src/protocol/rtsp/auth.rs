//! RTSP authentication (RFC 2326, 16.8 and 16.47, which take HTTP's: RFC 2617): the
//! `Authorization` header a client sends (Basic or Digest), the `WWW-Authenticate`
//! challenge of a 401, and the check of a Digest response given the password.
//!
//! Deciding is the driver's: Basic hands it the user and password; Digest hands it the user,
//! realm, nonce, uri and response, and the driver (having the password, or asking a service
//! that has it) calls [`DigestCredentials::verify`]. The nonce comes from the caller's
//! randomness; the driver checks that the response answers the nonce it issued.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};

/// Credentials from an `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { user: String, pass: String },
    Digest(DigestCredentials),
}

/// A Digest response's fields (RFC 2617, 3.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestCredentials {
    pub user: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// `auth` when the client used the qop form, with its `nc` and `cnonce`.
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

impl Credentials {
    /// The user named, whatever the scheme.
    pub fn user(&self) -> &str {
        match self {
            Credentials::Basic { user, .. } => user,
            Credentials::Digest(digest) => &digest.user,
        }
    }
}

/// Parses an `Authorization` header value; `None` for another scheme or a malformed value.
pub fn parse_authorization(value: &str) -> Option<Credentials> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("Basic") {
        let decoded = BASE64.decode(rest.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, pass) = decoded.split_once(':')?;
        return Some(Credentials::Basic { user: user.to_owned(), pass: pass.to_owned() });
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut digest = DigestCredentials::default();
    for (key, value) in parameters(rest) {
        match key.to_ascii_lowercase().as_str() {
            "username" => digest.user = value,
            "realm" => digest.realm = value,
            "nonce" => digest.nonce = value,
            "uri" => digest.uri = value,
            "response" => digest.response = value,
            "qop" => digest.qop = Some(value),
            "nc" => digest.nc = Some(value),
            "cnonce" => digest.cnonce = Some(value),
            _ => {}
        }
    }
    (!digest.response.is_empty() && !digest.nonce.is_empty()).then_some(Credentials::Digest(digest))
}

/// `key=value` and `key="quoted, value"` pairs separated by commas.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else { break };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.split_once('"') {
                Some((value, remaining)) => (value.to_owned(), remaining),
                None => (quoted.to_owned(), ""),
            }
        } else {
            match after.split_once(',') {
                Some((value, remaining)) => (value.trim().to_owned(), remaining),
                None => (after.trim().to_owned(), ""),
            }
        };
        pairs.push((key, value));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    pairs
}

impl DigestCredentials {
    /// Whether the response is right for `password` and the request's `method` (RFC 2617,
    /// 3.2.2.1, MD5, with or without `qop=auth`). The caller also checks that `nonce` is one it
    /// issued and `realm` its own.
    pub fn verify(&self, method: &str, password: &str) -> bool {
        let expected = digest_response(self, method, password);
        // Constant-time comparison: the response is a secret-derived value.
        let given = self.response.to_ascii_lowercase();
        expected.len() == given.len()
            && expected.bytes().zip(given.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The response a client with `password` computes for these fields.
pub fn digest_response(fields: &DigestCredentials, method: &str, password: &str) -> String {
    let ha1 = md5_hex(&format!("{}:{}:{}", fields.user, fields.realm, password));
    let ha2 = md5_hex(&format!("{method}:{}", fields.uri));
    match (&fields.qop, &fields.nc, &fields.cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => md5_hex(&format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", fields.nonce)),
        _ => md5_hex(&format!("{ha1}:{}:{ha2}", fields.nonce)),
    }
}

/// A challenge as a client reads it from a 401's `WWW-Authenticate`: the scheme and the
/// fields a Digest answer echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    Basic,
    Digest {
        realm: String,
        nonce: String,
        /// Echoed as it came: a server that sets it expects it back.
        opaque: Option<String>,
        /// The server offered `qop=auth`: the answer then carries `nc` and `cnonce`.
        qop_auth: bool,
    },
}

/// Parses one `WWW-Authenticate` value; `None` for another scheme, a Digest without a nonce,
/// or an algorithm other than MD5.
pub fn parse_challenge(value: &str) -> Option<Offered> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("Basic") {
        return Some(Offered::Basic);
    }
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let (mut realm, mut nonce, mut opaque, mut qop_auth) = (String::new(), None, None, false);
    for (key, value) in parameters(rest) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = value,
            "nonce" => nonce = Some(value),
            "opaque" => opaque = Some(value),
            "qop" => qop_auth = value.split(',').any(|qop| qop.trim().eq_ignore_ascii_case("auth")),
            "algorithm" if !value.eq_ignore_ascii_case("MD5") => return None,
            _ => {}
        }
    }
    Some(Offered::Digest { realm, nonce: nonce.filter(|nonce| !nonce.is_empty())?, opaque, qop_auth })
}

/// What a 401 offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    /// A fresh nonce from the caller's randomness, for Digest.
    pub nonce: String,
    pub digest: bool,
    pub basic: bool,
}

impl Challenge {
    /// The `WWW-Authenticate` header values, Digest first (clients take the first they know,
    /// and Digest does not send the password). Without `qop`, as RTSP cameras and servers
    /// offer it and every client answers.
    pub fn headers(&self) -> Vec<String> {
        let realm = self.realm.replace('"', "");
        let mut headers = Vec::new();
        if self.digest {
            headers.push(format!("Digest realm=\"{realm}\", nonce=\"{}\"", self.nonce.replace('"', "")));
        }
        if self.basic {
            headers.push(format!("Basic realm=\"{realm}\""));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        assert_eq!(
            parse_authorization("Basic dXNlcjpwYTpzcw=="),
            Some(Credentials::Basic { user: "user".into(), pass: "pa:ss".into() })
        );
        assert_eq!(parse_authorization("Basic !!!"), None);
        assert_eq!(parse_authorization("Bearer x"), None);
    }

    /// RFC 2617, 3.5's worked example (the HTTP one; the arithmetic is the same for RTSP).
    #[test]
    fn digest_of_rfc_2617_example_verifies() {
        let header = r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let Some(Credentials::Digest(digest)) = parse_authorization(header) else { panic!() };
        assert_eq!((digest.user.as_str(), digest.uri.as_str()), ("Mufasa", "/dir/index.html"));
        assert!(digest.verify("GET", "Circle Of Life"));
        assert!(!digest.verify("GET", "circle of life"));
        assert!(!digest.verify("POST", "Circle Of Life"));
    }

    /// What ffmpeg sends after a qop-less challenge, checked against its own arithmetic.
    #[test]
    fn digest_without_qop() {
        let fields = DigestCredentials {
            user: "cam".into(),
            realm: "ringcast".into(),
            nonce: "abc".into(),
            uri: "rtsp://127.0.0.1:8554/live/cam1".into(),
            ..Default::default()
        };
        let response = digest_response(&fields, "ANNOUNCE", "secret");
        let header = format!(
            "Digest username=\"cam\", realm=\"ringcast\", nonce=\"abc\", uri=\"rtsp://127.0.0.1:8554/live/cam1\", response=\"{response}\""
        );
        let Some(Credentials::Digest(digest)) = parse_authorization(&header) else { panic!() };
        assert!(digest.verify("ANNOUNCE", "secret"));
        assert!(!digest.verify("ANNOUNCE", "secreT"));
    }

    #[test]
    fn challenges_as_cameras_send_them() {
        assert_eq!(parse_challenge("Basic realm=\"IPCam\""), Some(Offered::Basic));
        assert_eq!(
            parse_challenge("Digest realm=\"IP Camera(12345)\", nonce=\"a1b2\", stale=\"FALSE\""),
            Some(Offered::Digest {
                realm: "IP Camera(12345)".into(),
                nonce: "a1b2".into(),
                opaque: None,
                qop_auth: false
            })
        );
        assert_eq!(
            parse_challenge("Digest realm=\"r\", qop=\"auth,auth-int\", nonce=\"n\", opaque=\"o\""),
            Some(Offered::Digest { realm: "r".into(), nonce: "n".into(), opaque: Some("o".into()), qop_auth: true })
        );
        assert_eq!(parse_challenge("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256"), None);
        assert_eq!(parse_challenge("Digest realm=\"r\""), None);
        assert_eq!(parse_challenge("Bearer x"), None);
        // What this server's own challenge says reads back as it was meant.
        let ours = Challenge { realm: "ringcast".into(), nonce: "n1".into(), digest: true, basic: true };
        let offered: Vec<_> = ours.headers().iter().filter_map(|value| parse_challenge(value)).collect();
        assert_eq!(offered[1], Offered::Basic);
        assert!(matches!(&offered[0], Offered::Digest { nonce, .. } if nonce == "n1"));
    }

    #[test]
    fn challenge_headers() {
        let challenge = Challenge { realm: "ringcast".into(), nonce: "n1".into(), digest: true, basic: true };
        assert_eq!(challenge.headers(), ["Digest realm=\"ringcast\", nonce=\"n1\"", "Basic realm=\"ringcast\""]);
    }
}
