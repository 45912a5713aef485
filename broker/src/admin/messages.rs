//! `/api/destinations/{kind}/{name}/messages`: browsing a queue without
//! consuming it, and sending a message as a producer would.
//!
//! Browsing reads paged-out bodies back from the store (on a blocking
//! thread: it is disk I/O) and shows at most `preview` bytes of each, as
//! text when the bytes are UTF-8, else base64. Sending goes through
//! [`crate::router::Router::send`], the call STOMP and native producers use,
//! so scheduling headers, expiry, priority and persistence behave the same,
//! after the same producer flow control.

use super::access::Caller;
use super::destinations::{canonical, resolve};
use super::error::{ApiError, ApiResult};
use super::metrics::Sources;
use super::params::Params;
use crate::message::BROKER_HEADERS;
use crate::router::{now_ms, Address, DestinationKind, Message, DEFAULT_PRIORITY};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine;
use ferromq_protocol::Headers;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Most messages one browse returns.
pub const MAX_BROWSE: usize = 1000;

/// Largest body preview per message.
pub const MAX_PREVIEW: usize = 64 * 1024;

/// How long a send waits for producer flow control before giving up.
const SEND_WAIT: Duration = Duration::from_secs(5);

/// The JSON of one browsed message, with `body` already read.
fn message_json(
    m: &Message,
    message_id: String,
    body: Result<Bytes, String>,
    preview: usize,
) -> Value {
    let headers: Map<String, Value> = m
        .headers
        .iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
        .collect();
    let mut v = json!({
        "message_id": message_id,
        "persistent": m.persistent,
        "priority": m.priority,
        "timestamp": m.timestamp,
        "expires": m.expires,
        "size": m.body.len(),
        "paged_out": !m.body.is_resident(),
        "headers": headers,
    });
    match body {
        Ok(bytes) => {
            let shown = &bytes[..bytes.len().min(preview)];
            v["body_truncated"] = Value::Bool(shown.len() < bytes.len());
            match std::str::from_utf8(shown) {
                Ok(text) => {
                    v["body"] = Value::String(text.to_owned());
                    v["body_encoding"] = Value::String("utf-8".into());
                }
                Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
                    // Cut inside a multi-byte character: show the text
                    // before it.
                    let text = String::from_utf8_lossy(&shown[..e.valid_up_to()]);
                    v["body"] = Value::String(text.into_owned());
                    v["body_encoding"] = Value::String("utf-8".into());
                    v["body_truncated"] = Value::Bool(true);
                }
                Err(_) => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(shown);
                    v["body"] = Value::String(b64);
                    v["body_encoding"] = Value::String("base64".into());
                }
            }
        }
        Err(e) => v["body_error"] = Value::String(e),
    }
    v
}

/// `GET …/messages?limit=N&preview=BYTES`: up to `limit` waiting messages
/// (default 20) in delivery order, not consumed.
pub async fn browse(
    State(src): State<Arc<Sources>>,
    Path((kind, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = Params::parse(query.as_deref())?;
    p.only(&["limit", "preview"])?;
    let limit = p.number("limit", 20, 1, MAX_BROWSE)?;
    let preview = p.number("preview", 1024, 0, MAX_PREVIEW)?;
    let d = resolve(&src, &kind, &name)?;
    if d.kind() != DestinationKind::Queue {
        return Err(ApiError::bad_parameter(
            "kind",
            "only queues can be browsed (a topic keeps no messages of its own)",
        ));
    }
    let router = src.router.clone();
    // Past the queue's window this reads the store: off the async workers.
    let messages = {
        let (router, d) = (router.clone(), d.clone());
        tokio::task::spawn_blocking(move || router.browse_deep(&d, limit, None))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("browse failed: {e}"),
                )
            })?
    };
    let items = tokio::task::spawn_blocking(move || {
        messages
            .iter()
            .map(|m| {
                let body = m.body.get().map_err(|e| e.to_string());
                message_json(m, router.message_id(m.seq), body, preview)
            })
            .collect::<Vec<Value>>()
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("browse failed: {e}"),
        )
    })?;
    Ok(Json(json!({ "destination": d.name(), "messages": items })))
}

/// The body of `POST …/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendRequest {
    /// Text body.
    #[serde(default)]
    body: Option<String>,
    /// Binary body, base64 (instead of `body`).
    #[serde(default)]
    body_base64: Option<String>,
    /// Headers (string, number or boolean values), as on a STOMP SEND:
    /// `priority`, `expires`, `AMQ_SCHEDULED_DELAY`, user properties.
    #[serde(default)]
    headers: Map<String, Value>,
    /// Survives a restart (overrides a `persistent` header).
    #[serde(default)]
    persistent: Option<bool>,
}

fn header_text(name: &str, v: &Value) -> ApiResult<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ApiError::bad_parameter(
            &format!("headers.{name}"),
            "must be a string, number or boolean",
        )),
    }
}

/// Turns a send request into a message for `destination`.
fn build(src: &Sources, destination: Arc<str>, req: SendRequest) -> ApiResult<Message> {
    let body = match (req.body, req.body_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_parameter(
                "body_base64",
                "give body or body_base64, not both",
            ))
        }
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| ApiError::bad_parameter("body_base64", e))?,
        ),
        (None, None) => Bytes::new(),
    };
    let mut headers = Headers::new();
    let mut persistent = false;
    let mut priority = DEFAULT_PRIORITY;
    let mut expires = 0;
    for (name, value) in &req.headers {
        let text = header_text(name, value)?;
        if name.is_empty() || name.contains([':', '\n', '\r']) || text.contains(['\n', '\r']) {
            return Err(ApiError::bad_parameter(
                &format!("headers.{name}"),
                "names and values must not contain ':' (names), newlines or be empty",
            ));
        }
        match name.as_str() {
            "persistent" => persistent = text == "true",
            "priority" => {
                priority = text
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 9)
                    .ok_or_else(|| {
                        ApiError::bad_parameter("headers.priority", "an integer from 0 to 9")
                    })?
            }
            "expires" => {
                expires = text.trim().parse::<u64>().map_err(|_| {
                    ApiError::bad_parameter(
                        "headers.expires",
                        "a time in ms since the epoch (0 = never)",
                    )
                })?
            }
            n if BROKER_HEADERS.contains(&n) => {}
            _ => headers.push(name, &text),
        }
    }
    if let Some(p) = req.persistent {
        persistent = p;
    }
    Ok(Message {
        seq: src.router.next_seq(),
        destination,
        persistent,
        priority,
        expires,
        timestamp: now_ms(),
        headers,
        body: body.into(),
    })
}

/// `POST …/messages` with `{"body": "...", "headers": {...},
/// "persistent": true}`: sends one message; 201 with its id.
pub async fn send(
    State(src): State<Arc<Sources>>,
    Extension(caller): Extension<Caller>,
    Path((kind, name)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let req: SendRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad request body (JSON expected): {e}"),
        )
    })?;
    let (_, full) = canonical(&kind, &name)?;
    if full.starts_with("/temp-") {
        return Err(ApiError::bad_parameter(
            "name",
            "temporary destinations are private to their connection (use the /remote-temp-queue/ form to reply)",
        ));
    }
    let address = Address::parse(&full, 0).map_err(|e| ApiError::bad_parameter("name", e))?;
    let destination = src
        .router
        .destination(&address, 0)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let message = build(&src, destination.address.name.clone(), req)?;
    let seq = message.seq;
    let persistent = message.persistent;
    if tokio::time::timeout(SEND_WAIT, src.router.wait_for_space(&destination))
        .await
        .is_err()
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} is full (producer flow control): nothing sent",
                destination.name()
            ),
        ));
    }
    let commit = src
        .router
        .send(&destination, message)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    commit.wait().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store refused the message: {e}"),
        )
    })?;
    let message_id = src.router.message_id(seq);
    info!(target: "ferromq::audit", user = %caller.user, destination = %destination.name(), %message_id, persistent, "message sent");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "destination": destination.name(), "message_id": message_id })),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn m(body: &'static [u8]) -> Message {
        Message {
            seq: 1,
            destination: "/queue/a".into(),
            persistent: true,
            priority: 4,
            expires: 0,
            timestamp: 0,
            headers: Headers::new(),
            body: body.into(),
        }
    }

    #[test]
    fn previews_are_text_when_utf8_and_base64_otherwise() {
        let text = m(b"hello world");
        let v = message_json(
            &text,
            "id".into(),
            text.body.get().map_err(|e| e.to_string()),
            5,
        );
        assert_eq!(v["body"], "hello");
        assert_eq!(v["body_encoding"], "utf-8");
        assert_eq!(v["body_truncated"], true);
        assert_eq!(v["size"], 11);
        let bin = m(&[0xff, 0x00, 0x01]);
        let v = message_json(
            &bin,
            "id".into(),
            bin.body.get().map_err(|e| e.to_string()),
            100,
        );
        assert_eq!(v["body_encoding"], "base64");
        assert_eq!(v["body"], "/wAB");
        assert_eq!(v["body_truncated"], false);
        let v = message_json(&bin, "id".into(), Err("disk gone".into()), 100);
        assert_eq!(v["body_error"], "disk gone");
    }
}
