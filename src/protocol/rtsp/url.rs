//! What a request URL names: `rtsp://user:pass@host:8554/live/cam1?token=x` is stream
//! `live/cam1` with args `{token: x}` (the same stream RTMP and HTTP-FLV see), and a SETUP
//! URL ends with a track's control (`/trackID=N`, `/streamid=N`, or whatever control the
//! publisher's SDP named).
//!
//! Clients append the control differently when the URL has a query: ffmpeg concatenates
//! (`/live/cam1?token=x/trackID=0`), GStreamer inserts it before the query
//! (`/live/cam1/trackID=0?token=x`). Both name the same stream, args and track.

use crate::protocol::rtmp::server::{Args, caps, parse_query};

/// The parts of a request URL the driver and hooks see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The path without its leading `/` and without a track control: `live/cam1`.
    pub stream: String,
    pub args: Args,
    /// The index (among the controls the caller gave) of the track the URL ends with.
    pub track: Option<usize>,
    /// Credentials written into the URL (`rtsp://user:pass@host/...`), percent-decoded.
    pub user: Option<String>,
    pub pass: Option<String>,
    /// `host[:port]` as the client wrote it.
    pub authority: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not an rtsp:// URL")]
    Scheme,
    #[error("{field} is {len} bytes, over the {cap}-byte limit")]
    TooLong { field: &'static str, len: usize, cap: usize },
    #[error("{count} query arguments, over the limit of {cap}")]
    TooManyArgs { count: usize, cap: usize },
}

/// Splits `url` into its target. `controls` are the tracks' `a=control` values (relative, or
/// absolute URLs); the one the URL ends with is the track. Lengths are capped as RTMP's are
/// (`caps`), before anything reaches a hook.
pub fn parse(url: &str, controls: &[String]) -> Result<Target, UrlError> {
    if url.len() > caps::URL {
        return Err(UrlError::TooLong { field: "URL", len: url.len(), cap: caps::URL });
    }
    let rest = strip_scheme(url).ok_or(UrlError::Scheme)?;
    let (authority, path_and_query) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    let (user, pass) = match userinfo {
        Some(userinfo) => match userinfo.split_once(':') {
            Some((user, pass)) => (Some(percent_decode(user)), Some(percent_decode(pass))),
            None => (Some(percent_decode(userinfo)), None),
        },
        None => (None, None),
    };
    let (mut path, mut query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, query),
        None => (path_and_query, ""),
    };
    let mut track = None;
    for (index, control) in controls.iter().enumerate() {
        // An absolute control names the whole URL (the query aside).
        let relative = match strip_scheme(control) {
            Some(absolute) => absolute.find('/').map_or("", |at| &absolute[at + 1..]).split('?').next().unwrap_or(""),
            None => control.as_str(),
        };
        let relative = relative.trim_matches('/');
        if relative.is_empty() {
            continue;
        }
        if let Some(stripped) = strip_control(query, relative) {
            query = stripped;
        } else if let Some(stripped) = strip_control(path.trim_end_matches('/'), relative) {
            path = stripped;
        } else {
            continue;
        }
        track = Some(index);
        break;
    }
    let stream = path.trim_matches('/').to_owned();
    if stream.len() > caps::NAME {
        return Err(UrlError::TooLong { field: "stream name", len: stream.len(), cap: caps::NAME });
    }
    let args = parse_query(query);
    if args.len() > caps::ARGS {
        return Err(UrlError::TooManyArgs { count: args.len(), cap: caps::ARGS });
    }
    Ok(Target { stream, args, track, user, pass, authority: host.to_owned() })
}

/// `url` without the `user:pass@` a camera-style login writes into it: the form logs, events
/// and the callbacks' `url` and `tcurl` show (the credentials travel in fields of their own,
/// docs/rtsp.md). The authority ends at the first `/`, as [`parse`] reads it.
pub fn without_credentials(url: &str) -> String {
    let Some(rest) = strip_scheme(url) else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{}{host}{}", &url[..url.len() - rest.len()], &rest[authority_end..]),
        None => url.to_owned(),
    }
}

fn strip_scheme(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    ["rtsp", "rtsps", "rtspu"].iter().any(|known| scheme.eq_ignore_ascii_case(known)).then_some(rest)
}

/// `text` without a trailing `/control`, if it has one.
fn strip_control<'a>(text: &'a str, control: &str) -> Option<&'a str> {
    let without = text.strip_suffix(control)?;
    without.strip_suffix('/').or((without.is_empty() && text.len() == control.len()).then_some(""))
}

/// `%XX` escapes decoded; a malformed escape is kept as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 1..at + 3).and_then(|hex| std::str::from_utf8(hex).ok());
        match (bytes[at], hex.and_then(|hex| u8::from_str_radix(hex, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls() -> Vec<String> {
        vec!["trackID=0".into(), "trackID=1".into()]
    }

    #[test]
    fn credentials_are_cut_from_the_url_alone() {
        assert_eq!(
            without_credentials("rtsp://cam%40home:p%3A@ss@host:8554/live/cam1?token=x"),
            "rtsp://host:8554/live/cam1?token=x"
        );
        assert_eq!(without_credentials("RTSP://user@host/live"), "RTSP://host/live");
        for unchanged in ["rtsp://host:8554/live/cam1?u=a@b", "rtsp://host", "http://u:p@host/x", "live/cam"] {
            assert_eq!(without_credentials(unchanged), unchanged);
        }
    }

    #[test]
    fn stream_args_and_credentials() {
        let target = parse("rtsp://cam%40home:p%3Ass@host:8554/live/cam1?token=x&b=2", &[]).unwrap();
        assert_eq!(target.stream, "live/cam1");
        assert_eq!(target.args, [("token".to_owned(), "x".to_owned()), ("b".to_owned(), "2".to_owned())]);
        assert_eq!((target.user.as_deref(), target.pass.as_deref()), (Some("cam@home"), Some("p:ss")));
        assert_eq!((target.authority.as_str(), target.track), ("host:8554", None));
        assert_eq!(parse("RTSP://host", &[]).unwrap().stream, "");
        assert_eq!(parse("http://host/live/x", &[]), Err(UrlError::Scheme));
    }

    #[test]
    fn track_controls_in_either_place() {
        for url in [
            "rtsp://h/live/cam1/trackID=1?token=x",
            "rtsp://h/live/cam1?token=x/trackID=1",
            "rtsp://h/live/cam1/trackID=1/?token=x",
        ] {
            let target = parse(url, &controls()).unwrap();
            assert_eq!((target.stream.as_str(), target.track), ("live/cam1", Some(1)), "{url}");
            assert_eq!(target.args, [("token".to_owned(), "x".to_owned())], "{url}");
        }
        // An absolute control, and a publisher's own control names.
        let absolute = vec!["rtsp://h/live/cam1/streamid=0".to_owned()];
        assert_eq!(parse("rtsp://h/live/cam1/streamid=0", &absolute).unwrap().track, Some(0));
        let gst = vec!["stream=0".to_owned(), "stream=1".to_owned()];
        assert_eq!(parse("rtsp://h/live/a/stream=1", &gst).unwrap().track, Some(1));
        // `xtrackID=1` is not `trackID=1`.
        assert_eq!(parse("rtsp://h/live/xtrackID=1", &controls()).unwrap().track, None);
    }

    #[test]
    fn caps_are_enforced() {
        let long = format!("rtsp://h/{}", "a".repeat(caps::URL));
        assert!(matches!(parse(&long, &[]), Err(UrlError::TooLong { field: "URL", .. })));
        let name = format!("rtsp://h/{}", "a".repeat(caps::NAME + 1));
        assert!(matches!(parse(&name, &[]), Err(UrlError::TooLong { field: "stream name", .. })));
        let args: Vec<String> = (0..=caps::ARGS).map(|i| format!("a{i}=1")).collect();
        let many = format!("rtsp://h/live/x?{}", args.join("&"));
        assert!(matches!(parse(&many, &[]), Err(UrlError::TooManyArgs { .. })));
    }
}
