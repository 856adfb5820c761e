//! Request signatures (docs/hooks.md, "Signing"): Standard Webhooks, `sha256` and the
//! Dolby.io / Millicast style `sha1`.
//!
//! Every scheme keys its HMAC with [`Secret::key`], the secret's base64-decoded bytes (a
//! `whsec_` prefix stripped first). That is what Standard Webhooks specifies, exactly what Dolby.io's
//! verification sample does (`Buffer.from(webhookSecret, 'base64')`), and, for `sha256`,
//! keeps one meaning of "the secret" across schemes: a receiver verifies with the decoded bytes
//! of the string the admin API showed it.
//!
//! Rotation: the caller passes the current secret first, then the previous one while its grace
//! period lasts. `standard` and `sha256` put one signature per secret in the same header,
//! space-separated (Standard Webhooks' rule; a receiver accepts if any matches). `sha1` signs
//! with the current secret only: Dolby.io's sample compares the whole header with one computed
//! value, so a second signature would make every such receiver reject every request during the
//! grace period, old secret or new.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::config::{Secret, Signature};

/// The Standard Webhooks header names (fixed by that spec; `signature_header` does not rename
/// them).
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The headers that sign `body`. Empty when `secrets` is empty (the sink is unsigned).
///
/// `header_name` is where a `sha256`/`sha1` signature goes (`X-Ringcast-Signature` unless the
/// config renames it); `id` and `timestamp_secs` are the Standard Webhooks message id and the
/// time of this attempt (a receiver rejects stale timestamps, so a retry signs anew).
pub fn signature_headers(
    signature: Signature,
    header_name: &str,
    secrets: &[&Secret],
    id: &str,
    timestamp_secs: u64,
    body: &[u8],
) -> Vec<(String, String)> {
    let Some(current) = secrets.first() else {
        return Vec::new();
    };
    match signature {
        Signature::Standard => {
            let timestamp = timestamp_secs.to_string();
            let signatures: Vec<String> =
                secrets.iter().map(|secret| standard(secret.key(), id, &timestamp, body)).collect();
            vec![
                (WEBHOOK_ID.to_owned(), id.to_owned()),
                (WEBHOOK_TIMESTAMP.to_owned(), timestamp),
                (WEBHOOK_SIGNATURE.to_owned(), signatures.join(" ")),
            ]
        }
        Signature::Sha256 => {
            let signatures: Vec<String> =
                secrets.iter().map(|secret| format!("sha256={}", hex(&hmac_sha256(secret.key(), &[body])))).collect();
            vec![(header_name.to_owned(), signatures.join(" "))]
        }
        Signature::Sha1 => vec![(header_name.to_owned(), format!("sha1={}", hex(&hmac_sha1(current.key(), body))))],
    }
}

/// `v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`.
fn standard(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body]);
    format!("v1,{}", BASE64.encode(mac))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length (long ones are hashed), so this never fails; the empty
    // fallback only keeps a library surprise from becoming a panic on a worker thread.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha1(key: &[u8], body: &[u8]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> Secret {
        Secret::parse(text).unwrap()
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
    }

    #[test]
    fn standard_webhooks_vectors() {
        let vectors = [
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (key, id, ts, body, expected) in vectors {
            let s = secret(key);
            let headers = signature_headers(Signature::Standard, "ignored", &[&s], id, ts, body.as_bytes());
            assert_eq!(header(&headers, WEBHOOK_ID), id);
            assert_eq!(header(&headers, WEBHOOK_TIMESTAMP), ts.to_string());
            assert_eq!(header(&headers, WEBHOOK_SIGNATURE), expected);
            assert_eq!(headers.len(), 3);
        }
    }

    #[test]
    fn rotation_signs_with_both_secrets() {
        let new = secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let old = secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let headers = signature_headers(Signature::Standard, "", &[&new, &old], id, 1_614_265_330, body);
        let sigs: Vec<&str> = header(&headers, WEBHOOK_SIGNATURE).split(' ').collect();
        assert_eq!(sigs.len(), 2);
        assert_eq!(sigs[0], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(sigs[1], standard(old.key(), id, "1614265330", body));

        let sha256 = signature_headers(Signature::Sha256, "X-Sig", &[&new, &old], id, 0, body);
        assert_eq!(header(&sha256, "X-Sig").split(' ').count(), 2);
        // sha1 receivers compare the whole header: current secret only.
        let sha1 = signature_headers(Signature::Sha1, "X-Sig", &[&new, &old], id, 0, body);
        assert_eq!(header(&sha1, "X-Sig"), format!("sha1={}", hex(&hmac_sha1(new.key(), body))));
    }

    #[test]
    fn unsigned_without_secrets() {
        assert!(signature_headers(Signature::Sha256, "X", &[], "id", 1, b"x").is_empty());
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn hmac_sha1_rfc2202_case_2() {
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }
}
