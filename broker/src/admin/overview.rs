//! `GET /api/overview`: what the broker is and how busy it is, in one call.

use super::metrics::{row, Sources};
use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The broker's role: `standalone` without a `[cluster]` table, else its
/// cluster role (`leader`, `follower`, `candidate`, ...).
pub fn role(src: &Sources) -> &'static str {
    match src.leadership.role() {
        "single" => "standalone",
        role => role,
    }
}

/// `GET /api/overview`.
pub async fn get(State(src): State<Arc<Sources>>) -> Json<Value> {
    let mut t = [0u64; 9];
    let destinations = src.router.destinations();
    for d in &destinations {
        let r = row(d, src.store.as_ref());
        let is_queue = r.kind == "queue";
        t[0] += u64::from(is_queue);
        t[1] += u64::from(!is_queue);
        t[2] += r.waiting as u64;
        t[3] += r.unacked as u64;
        t[4] += r.consumers as u64;
        t[5] += r.enqueued;
        t[6] += r.dequeued;
        t[7] += r.redelivered;
        t[8] += r.bytes as u64;
    }
    let rate = src.rates.total();
    let mut by_protocol = Map::new();
    for protocol in ["native", "stomp"] {
        by_protocol.insert(protocol.into(), json!(0));
    }
    for (p, n) in src.router.connections().count_by_protocol() {
        by_protocol.insert(p.into(), json!(n));
    }
    let store = src.store.metrics().map(|m| {
        json!({
            "live_bytes": m.live_bytes,
            "disk_bytes": m.disk_bytes,
            "resident_bytes": m.resident_bytes,
            "paged_messages": m.paged_messages,
            "messages_written": m.messages_written,
        })
    });
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node": src.router.config().node,
        "role": role(&src),
        "uptime_seconds": src.started.elapsed().as_secs(),
        "totals": {
            "destinations": destinations.len(),
            "queues": t[0],
            "topics": t[1],
            "messages": t[2],
            "unacked": t[3],
            "consumers": t[4],
            "published": t[5],
            "acked": t[6],
            "redelivered": t[7],
            "memory_bytes": t[8],
            "scheduled": src.router.scheduled(),
        },
        "rates": {
            "published_per_second": rate.published,
            "delivered_per_second": rate.delivered,
            "acked_per_second": rate.acked,
            "redelivered_per_second": rate.redelivered,
        },
        "connections": {
            "total": src.admission.open(),
            "by_protocol": by_protocol,
        },
        "store": store,
    }))
}
