//! `/api/connections` (list, show, close) and `/api/subscriptions/durable`
//! (list, delete).
//!
//! Closing a connection asks its protocol loop to end it with a reason (a
//! STOMP ERROR frame or a native Close); its unacknowledged messages then
//! return to their queues for the next consumer, as on any disconnect.

use super::access::Caller;
use super::error::{ApiError, ApiResult};
use super::metrics::Sources;
use super::params::Params;
use crate::registry::ConnectionInfo;
use crate::router::manage::{DurableView, SubscriptionView};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tracing::info;

/// The JSON of one subscription.
pub(super) fn subscription_json(s: &SubscriptionView) -> Value {
    json!({
        "id": s.id,
        "connection": s.connection,
        "tag": s.tag,
        "destination": s.destination,
        "ack": s.ack,
        "prefetch": s.prefetch,
        "unacked": s.unacked,
        "backlog": s.backlog,
        "selector": s.selector,
    })
}

/// The JSON of one durable subscription.
pub(super) fn durable_json(d: &DurableView) -> Value {
    json!({
        "client_id": d.client_id,
        "name": d.name,
        "topic": d.topic,
        "selector": d.selector,
        "queue": d.queue,
        "messages": d.waiting,
        "active": d.active,
    })
}

fn connection_json(c: &ConnectionInfo, subs: &[SubscriptionView]) -> Value {
    json!({
        "id": c.id,
        "protocol": c.protocol,
        "peer": c.peer,
        "user": c.user(),
        "connected_at": c.connected_at_ms,
        "bytes_in": c.bytes_in.load(Ordering::Relaxed),
        "bytes_out": c.bytes_out.load(Ordering::Relaxed),
        "messages_in": c.messages_in(),
        "messages_out": c.messages_out(),
        "subscriptions": subs.len(),
        "unacked": subs.iter().map(|s| s.unacked).sum::<usize>(),
    })
}

/// `GET /api/connections`.
pub async fn list(State(src): State<Arc<Sources>>) -> Json<Value> {
    let subs = src.router.subscriptions_by_connection();
    let list: Vec<Value> = src
        .router
        .connections()
        .list()
        .iter()
        .map(|c| connection_json(c, subs.get(&c.id).map_or(&[], Vec::as_slice)))
        .collect();
    Json(Value::Array(list))
}

fn connection_id(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::bad_parameter("id", format!("{text:?} is not a connection id")))
}

/// `GET /api/connections/{id}`: with its subscriptions.
pub async fn get(
    State(src): State<Arc<Sources>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = connection_id(&id)?;
    let c = src
        .router
        .connections()
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no open connection {id}")))?;
    let subs = src
        .router
        .subscriptions_by_connection()
        .remove(&id)
        .unwrap_or_default();
    let mut v = connection_json(&c, &subs);
    v["subscriptions"] = Value::Array(subs.iter().map(subscription_json).collect());
    Ok(Json(v))
}

/// `DELETE /api/connections/{id}?reason=TEXT`: closes it (202: the
/// connection ends at its next read wait, within milliseconds).
pub async fn close(
    State(src): State<Arc<Sources>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = Params::parse(query.as_deref())?;
    p.only(&["reason"])?;
    let id = connection_id(&id)?;
    let reason = p.text("reason").unwrap_or("closed from the admin API");
    if reason.len() > 200 || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_parameter(
            "reason",
            "at most 200 characters, no control characters",
        ));
    }
    let c = src
        .router
        .connections()
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no open connection {id}")))?;
    c.request_close(reason);
    info!(target: "ferromq::audit", user = %caller.user, connection = id, peer = %c.peer, %reason, "connection close requested");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "closing": id, "reason": reason })),
    ))
}

/// `GET /api/subscriptions/durable`.
pub async fn durables(State(src): State<Arc<Sources>>) -> Json<Value> {
    Json(Value::Array(
        src.router.durables().iter().map(durable_json).collect(),
    ))
}

/// `DELETE /api/subscriptions/durable/{queue}` (`queue` percent-encoded,
/// e.g. `%2Fdurable%2Fclient%2Fsub`): refused (409) while its subscriber
/// is connected.
pub async fn delete_durable(
    State(src): State<Arc<Sources>>,
    Extension(caller): Extension<Caller>,
    Path(queue): Path<String>,
) -> ApiResult<Json<Value>> {
    match src.router.delete_durable(&queue) {
        Ok(Some(dropped)) => {
            info!(target: "ferromq::audit", user = %caller.user, durable = %queue, messages_dropped = dropped, "durable subscription deleted");
            Ok(Json(
                json!({ "deleted": queue, "messages_dropped": dropped }),
            ))
        }
        Ok(None) => Err(ApiError::not_found(format!(
            "no durable subscription {queue}"
        ))),
        Err(e) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
    }
}
