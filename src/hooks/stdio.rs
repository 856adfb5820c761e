//! The `[stdio]` sink (go-rtmp style stdio hook): one line per event on stderr, for log pipelines.
//!
//! - `json`: the envelope (the webhook `envelope` body) on one line; `jq '.type'` reads it.
//! - `env`: the script environment ([`format::env_vars`]) as `KEY=value` pairs separated by one
//!   space, in the same order. Names are always `[A-Z0-9_]+`. A value is written bare when it is
//!   non-empty and made only of `A-Z a-z 0-9 _ . , : / @ % + -`; any other value (empty, with
//!   spaces, quotes, `=`, control or non-ASCII characters) is written as a JSON string: double
//!   quotes, with `"` and `\` backslash-escaped and control characters as `\n`, `\t`, `\u0001`.
//!   So a line splits unambiguously: a pair ends at the first space outside quotes, and a quoted
//!   value decodes with any JSON parser (logfmt readers accept it too).

use std::io::{self, Write};

use super::event::Event;
use super::format;
use crate::config::StdioFormat;

/// The line for `event`, without the trailing newline. It never contains a newline.
pub fn line(event: &Event, format: StdioFormat) -> String {
    match format {
        StdioFormat::Json => format::envelope_json(event),
        StdioFormat::Env => {
            let mut line = String::new();
            for (name, value) in format::env_vars(event) {
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&name);
                line.push('=');
                push_value(&mut line, &value);
            }
            line
        }
    }
}

/// Writes the line of `event` and a newline to stderr in one write, so lines from concurrent
/// workers never interleave.
pub fn emit(event: &Event, format: StdioFormat) -> io::Result<()> {
    let mut text = line(event, format);
    text.push('\n');
    io::stderr().lock().write_all(text.as_bytes())
}

fn push_value(line: &mut String, value: &str) {
    let bare = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.,:/@%+-".contains(&b));
    if bare {
        line.push_str(value);
    } else {
        // JSON string escaping is exactly the quoting documented above; serializing a str
        // cannot fail, and the fallback would still be a valid quoted empty value.
        line.push_str(&serde_json::to_string(value).unwrap_or_else(|_| "\"\"".to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::event::{EventType, Protocol};
    use serde_json::json;

    fn event() -> Event {
        let data = json!({
            "error": "bad \"token\" = x\ny",
            "empty": "",
            "remote_addr": "10.0.0.5:50000",
        });
        Event {
            id: "evt_x".into(),
            event_type: EventType::AuthFailed,
            timestamp_ms: 1_700_000_000_999,
            conn_id: 9,
            protocol: Protocol::HttpFlv,
            addr: "[::1]:4000".into(),
            stream_key: "".into(),
            seq: 0,
            data: data.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn json_line_is_the_envelope() {
        let line = line(&event(), StdioFormat::Json);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "auth_failed");
        assert_eq!(v["protocol"], "http-flv");
        assert_eq!(v["data"]["error"], "bad \"token\" = x\ny");
    }

    #[test]
    fn env_line_quotes_what_needs_it() {
        let line = line(&event(), StdioFormat::Env);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("RTMP_EVENT_TYPE=auth_failed RTMP_TIMESTAMP=1700000000 "));
        assert!(line.contains(r#" RTMP_STREAM_KEY="" "#), "{line}");
        assert!(line.contains(r#" RTMP_ERROR="bad \"token\" = x\ny""#), "{line}");
        assert!(line.contains(" RTMP_REMOTE_ADDR=10.0.0.5:50000"), "{line}");
        assert!(line.contains(r#" RTMP_ADDR="[::1]:4000""#), "{line}");
    }
}
