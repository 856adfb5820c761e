//! Callback dialects: the same callbacks spoken the way another server's auth endpoints
//! expect (docs/hooks.md, "Dialects"), so an operator moving from SRS, MediaMTX or ZLMediaKit
//! keeps the service that decides.
//!
//! A dialect says two things: which body a callback sends (nginx-rtmp's form, or the peer's
//! JSON, field for field as its documentation gives it) and what the answer means. Which
//! ringcast call maps to which of theirs is the table in docs/hooks.md; a call the peer has
//! no counterpart for is not sent in its dialect (its decision allows, as with no URL).

use serde_json::{Value, json};

use super::callback::{Answer, Call, CallbackRequest, Callbacks, ClientInfo, Decision, interpret};
use super::event::Protocol;
use super::reply_terms;
use crate::config::Dialect;

/// SRS's and ZLMediaKit's name for the default virtual host, sent when the client names none.
const DEFAULT_VHOST: &str = "__defaultVhost__";

/// The request for `call` in the callback set's dialect, or `None` when it has no endpoint
/// or the dialect no such callback.
pub fn request(
    callbacks: &Callbacks,
    call: Call,
    client: &ClientInfo,
    extra: &[(&str, String)],
) -> Option<CallbackRequest> {
    let mut request = callbacks.request(call, client, extra)?;
    let dialect = callbacks.notify.dialect;
    if dialect != Dialect::Nginx {
        request.json = Some(json_body(dialect, call, client, extra, &callbacks.server_id)?);
    }
    Some(request)
}

/// Whether `dialect` sends `call` at all: a call its peer has no counterpart for is not sent
/// (docs/hooks.md's table), and a session need not wait for what it would decide.
pub fn sends(dialect: Dialect, call: Call) -> bool {
    dialect == Dialect::Nginx || json_body(dialect, call, &ClientInfo::default(), &[], "").is_some()
}

/// What an answer means in `dialect`: an allowing one may carry session terms in a JSON body
/// ([`super::reply_terms`]), whatever the dialect.
pub fn decide(dialect: Dialect, answer: &Answer) -> Decision {
    let decision = decide_status(dialect, answer);
    if decision != Decision::Allow {
        return decision;
    }
    match reply_terms::read(answer.content_type.as_deref(), &answer.body) {
        Ok(None) => Decision::Allow,
        Ok(Some(terms)) => Decision::Limited(Box::new(terms)),
        Err(reason) => Decision::Deny { reason },
    }
}

fn decide_status(dialect: Dialect, answer: &Answer) -> Decision {
    let status = answer.status;
    match dialect {
        Dialect::Nginx => interpret(status, answer.location.as_deref()),
        Dialect::Mediamtx => match status {
            200..=299 => Decision::Allow,
            _ => Decision::Deny { reason: format!("callback answered {status}") },
        },
        Dialect::Srs | Dialect::Zlmediakit => {
            if !(200..=299).contains(&status) {
                return Decision::Deny { reason: format!("callback answered {status}") };
            }
            let code = serde_json::from_slice::<Value>(&answer.body).ok().and_then(|body| match body {
                // SRS takes a bare `0` as well as `{"code":0}`; ZLMediaKit only the object.
                Value::Number(code) if dialect == Dialect::Srs => code.as_i64(),
                Value::Object(fields) => fields.get("code").and_then(Value::as_i64),
                _ => None,
            });
            match code {
                Some(0) => Decision::Allow,
                Some(code) => Decision::Deny { reason: format!("callback answered {status} with code {code}") },
                None => Decision::Deny { reason: format!("callback answered {status} without a code") },
            }
        }
    }
}

/// The JSON body of `call` in `dialect` (not `nginx`), or `None` if the dialect has no such
/// callback.
fn json_body(
    dialect: Dialect,
    call: Call,
    client: &ClientInfo,
    extra: &[(&str, String)],
    server_id: &str,
) -> Option<Value> {
    match dialect {
        Dialect::Nginx => None,
        Dialect::Srs => srs(call, client, extra, server_id),
        Dialect::Mediamtx => mediamtx(call, client, extra),
        Dialect::Zlmediakit => zlmediakit(call, client, extra, server_id),
    }
}

/// SRS `http_hooks`: `on_connect`, `on_publish`/`on_unpublish`, `on_play`/`on_stop`,
/// `on_close` (sent when a publish or play ends, as ringcast's `done`).
fn srs(call: Call, client: &ClientInfo, extra: &[(&str, String)], server_id: &str) -> Option<Value> {
    let action = match call {
        Call::Connect => "on_connect",
        Call::Publish => "on_publish",
        Call::PublishDone => "on_unpublish",
        Call::Play => "on_play",
        Call::PlayDone => "on_stop",
        Call::Done => "on_close",
        Call::UpdatePublish | Call::UpdatePlay | Call::Media => return None,
    };
    let mut body = json!({
        "server_id": server_id,
        "action": action,
        "client_id": client.conn_id.to_string(),
        "ip": ip(client),
        "vhost": vhost(client),
        "app": client.app,
    });
    let fields = body.as_object_mut()?;
    match call {
        Call::Connect => {
            fields.insert("tcUrl".into(), client.tc_url.clone().into());
            fields.insert("pageUrl".into(), client.page_url.clone().into());
        }
        Call::Done => {
            fields.insert("send_bytes".into(), number(extra, "bytes_out").into());
            fields.insert("recv_bytes".into(), number(extra, "bytes_in").into());
        }
        _ => {
            let query = stream_query(client);
            fields.insert("tcUrl".into(), client.tc_url.clone().into());
            fields.insert("stream".into(), client.name.clone().into());
            fields.insert("param".into(), if query.is_empty() { String::new() } else { format!("?{query}") }.into());
            fields.insert("stream_url".into(), format!("/{}/{}", client.app, client.name).into());
            fields.insert("stream_id".into(), format!("{}/{}", client.app, client.name).into());
            if matches!(call, Call::Play | Call::PlayDone) {
                fields.insert("pageUrl".into(), client.page_url.clone().into());
            }
        }
    }
    Some(body)
}

/// MediaMTX external authentication (`authMethod: http`): asked before a publish
/// (`action` `publish`) or a play (`read`); it has no connect, done or update callbacks.
fn mediamtx(call: Call, client: &ClientInfo, extra: &[(&str, String)]) -> Option<Value> {
    let action = match call {
        Call::Publish => "publish",
        Call::Play => "read",
        _ => return None,
    };
    // RTSP credentials ride in the form's `user`/`pass`; RTMP and HTTP-FLV clients send
    // them as query arguments, as MediaMTX's own RTMP server reads them.
    let credential = |field: &str| text(extra, field).or_else(|| argument(client, field)).unwrap_or_default();
    let token = argument(client, "jwt").or_else(|| argument(client, "token")).unwrap_or_default();
    Some(json!({
        "user": credential("user"),
        "password": credential("pass"),
        "token": token,
        "ip": ip(client),
        "action": action,
        "path": format!("{}/{}", client.app, client.name),
        "protocol": protocol(client),
        "id": client.conn_id.to_string(),
        "query": stream_query(client),
    }))
}

/// ZLMediaKit `on_publish`, `on_play`, and `on_flow_report` when a publish or play ends.
fn zlmediakit(call: Call, client: &ClientInfo, extra: &[(&str, String)], server_id: &str) -> Option<Value> {
    let player = match call {
        Call::Publish | Call::PublishDone => false,
        Call::Play | Call::PlayDone => true,
        _ => return None,
    };
    let mut body = json!({
        "mediaServerId": server_id,
        "app": client.app,
        "id": client.conn_id.to_string(),
        "ip": ip(client),
        "params": stream_query(client),
        "port": client.addr.map_or(0, |addr| addr.port()),
        "schema": protocol(client),
        "stream": client.name,
        "vhost": vhost(client),
    });
    let fields = body.as_object_mut()?;
    match call {
        Call::Publish => {
            // ZLMediaKit's MediaOriginType: 1 rtmp_push, 2 rtsp_push.
            let (origin, name) = match client.protocol {
                Some(Protocol::Rtsp) => (2, "rtsp_push"),
                _ => (1, "rtmp_push"),
            };
            fields.insert("originType".into(), origin.into());
            fields.insert("originTypeStr".into(), name.into());
            fields.insert("originUrl".into(), client.url.clone().into());
        }
        Call::PublishDone | Call::PlayDone => {
            let bytes = if player { "bytes_out" } else { "bytes_in" };
            fields.insert("totalBytes".into(), number(extra, bytes).into());
            fields.insert("duration".into(), number(extra, "duration").into());
            fields.insert("player".into(), player.into());
        }
        _ => {}
    }
    Some(body)
}

fn ip(client: &ClientInfo) -> String {
    client.addr.map(|addr| addr.ip().to_string()).unwrap_or_default()
}

fn protocol(client: &ClientInfo) -> &'static str {
    client.protocol.map_or("rtmp", Protocol::as_str)
}

/// The `vhost` the client named (`?vhost=`, as SRS reads it), or the default one.
fn vhost(client: &ClientInfo) -> String {
    argument(client, "vhost").unwrap_or_else(|| DEFAULT_VHOST.to_owned())
}

/// The stream's query as the client sent it, without `?` (empty for connect).
fn stream_query(client: &ClientInfo) -> String {
    if client.name.is_empty() {
        return String::new();
    }
    client.url.split_once('?').map(|(_, query)| query.to_owned()).unwrap_or_default()
}

fn argument(client: &ClientInfo, name: &str) -> Option<String> {
    client.args.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
}

fn text(extra: &[(&str, String)], name: &str) -> Option<String> {
    extra.iter().find(|(key, _)| *key == name).map(|(_, value)| value.clone())
}

fn number(extra: &[(&str, String)], name: &str) -> u64 {
    text(extra, name).and_then(|value| value.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, body: body.as_bytes().to_vec(), ..Answer::default() }
    }

    #[test]
    fn each_dialect_reads_its_own_answer() {
        assert_eq!(decide(Dialect::Srs, &answer(200, "0")), Decision::Allow);
        assert_eq!(decide(Dialect::Srs, &answer(200, " {\"code\": 0, \"msg\": \"ok\"}\n")), Decision::Allow);
        assert!(matches!(decide(Dialect::Srs, &answer(200, "1")), Decision::Deny { .. }));
        assert!(matches!(decide(Dialect::Srs, &answer(200, "")), Decision::Deny { .. }));
        assert!(matches!(decide(Dialect::Srs, &answer(403, "0")), Decision::Deny { .. }));
        assert_eq!(decide(Dialect::Zlmediakit, &answer(200, "{\"code\":0}")), Decision::Allow);
        assert!(matches!(decide(Dialect::Zlmediakit, &answer(200, "0")), Decision::Deny { .. }));
        assert_eq!(
            decide(Dialect::Zlmediakit, &answer(200, "{\"code\":-1,\"msg\":\"no\"}")),
            Decision::Deny { reason: "callback answered 200 with code -1".into() }
        );
        assert_eq!(decide(Dialect::Mediamtx, &answer(204, "")), Decision::Allow);
        assert!(matches!(decide(Dialect::Mediamtx, &answer(401, "")), Decision::Deny { .. }));
        // Only nginx-rtmp renames.
        let redirect = Answer { status: 302, location: Some("cam2".into()), ..Answer::default() };
        assert_eq!(decide(Dialect::Nginx, &redirect), Decision::Rename("cam2".into()));
        assert!(matches!(decide(Dialect::Mediamtx, &redirect), Decision::Deny { .. }));
    }

    fn client() -> ClientInfo {
        ClientInfo {
            protocol: Some(Protocol::Rtmp),
            addr: Some("10.0.0.7:50000".parse().unwrap()),
            conn_id: 9,
            app: "live".into(),
            name: "cam1".into(),
            url: "rtmp://h/live/cam1?token=t&user=u".into(),
            tc_url: "rtmp://h/live".into(),
            args: vec![("token".into(), "t".into()), ("user".into(), "u".into())],
            ..ClientInfo::default()
        }
    }

    #[test]
    fn srs_bodies_carry_srs_fields() {
        let body = srs(Call::Publish, &client(), &[], "s1").unwrap();
        assert_eq!(body["action"], "on_publish");
        assert_eq!(body["param"], "?token=t&user=u");
        assert_eq!(body["stream_url"], "/live/cam1");
        assert_eq!(body["vhost"], DEFAULT_VHOST);
        let close = srs(Call::Done, &client(), &[("bytes_in", "5".into()), ("bytes_out", "7".into())], "s1").unwrap();
        assert_eq!((close["recv_bytes"].as_u64(), close["send_bytes"].as_u64()), (Some(5), Some(7)));
        assert!(srs(Call::UpdatePlay, &client(), &[], "s1").is_none());
    }

    #[test]
    fn mediamtx_takes_rtsp_credentials_before_query_ones() {
        let body = mediamtx(Call::Play, &client(), &[("user", "rtsp-user".into()), ("pass", "pw".into())]).unwrap();
        assert_eq!((body["user"].as_str(), body["password"].as_str()), (Some("rtsp-user"), Some("pw")));
        assert_eq!(body["action"], "read");
        let body = mediamtx(Call::Publish, &client(), &[]).unwrap();
        assert_eq!((body["user"].as_str(), body["token"].as_str()), (Some("u"), Some("t")));
        assert!(mediamtx(Call::Connect, &client(), &[]).is_none());
    }

    #[test]
    fn on_media_is_sent_in_the_nginx_form_only() {
        assert!(sends(Dialect::Nginx, Call::Media));
        for dialect in [Dialect::Srs, Dialect::Mediamtx, Dialect::Zlmediakit] {
            assert!(!sends(dialect, Call::Media), "{dialect}");
            assert!(sends(dialect, Call::Publish), "{dialect}");
        }
        assert!(!sends(Dialect::Srs, Call::UpdatePlay));
    }
}
