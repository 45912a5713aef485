//! `/api/destinations`: the listing (filtered by kind and name pattern,
//! sorted, paged), one destination with its subscriptions, purge and delete.

use super::access::Caller;
use super::error::{ApiError, ApiResult};
use super::metrics::{row, Row, Sources};
use super::params::Params;
use super::rates::Rate;
use crate::router::{manage::ManageError, Destination, DestinationKind};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use tracing::info;

/// Largest `page_size`.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The JSON of one destination.
pub(super) fn item(r: &Row, rate: Rate) -> Value {
    json!({
        "name": r.name,
        "kind": r.kind,
        "temporary": r.temporary,
        "messages": r.waiting,
        "unacked": r.unacked,
        "consumers": r.consumers,
        "bytes": r.bytes,
        "store_bytes": r.store_bytes,
        "blocked_producers": r.blocked_producers,
        "enqueued": r.enqueued,
        "dequeued": r.dequeued,
        "redelivered": r.redelivered,
        "expired": r.expired,
        "discarded": r.discarded,
        "rates": {
            "published_per_second": rate.published,
            "delivered_per_second": rate.delivered,
            "acked_per_second": rate.acked,
            "redelivered_per_second": rate.redelivered,
        },
    })
}

/// Whether `name` matches `pattern`: with `*` a glob over the whole name
/// (`/queue/orders.*`), else a substring.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return name.contains(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

fn kind_name(kind: DestinationKind) -> &'static str {
    match kind {
        DestinationKind::Queue => "queue",
        DestinationKind::Topic => "topic",
    }
}

/// `GET /api/destinations?kind=&name=&sort=&order=&page=&page_size=`:
/// a JSON array of one page; `X-Total-Count` says how many matched.
pub async fn list(
    State(src): State<Arc<Sources>>,
    RawQuery(query): RawQuery,
) -> ApiResult<(HeaderMap, Json<Value>)> {
    let p = Params::parse(query.as_deref())?;
    p.only(&["kind", "name", "sort", "order", "page", "page_size"])?;
    let kind = p.choice("kind", &["all", "queue", "topic"], "all")?;
    let pattern = p.text("name").unwrap_or("");
    let sort = p.choice(
        "sort",
        &[
            "name",
            "messages",
            "unacked",
            "consumers",
            "enqueued",
            "dequeued",
            "bytes",
            "store_bytes",
        ],
        "name",
    )?;
    let descending = p.choice("order", &["asc", "desc"], "asc")? == "desc";
    let page = p.number("page", 1, 1, usize::MAX)?;
    let page_size = p.number("page_size", 100, 1, MAX_PAGE_SIZE)?;
    let matching: Vec<Arc<Destination>> = src
        .router
        .destinations()
        .into_iter()
        .filter(|d| kind == "all" || kind_name(d.kind()) == kind)
        .filter(|d| name_matches(pattern, d.name()))
        .collect();
    let total = matching.len();
    let start = (page - 1).saturating_mul(page_size).min(total);
    let end = start.saturating_add(page_size).min(total);
    // Destinations come sorted by name: in name order only the page shown
    // is measured (each measurement takes a destination's lock); any other
    // order measures all of them first.
    let shown: Vec<Row> = if sort == "name" {
        if descending {
            matching[total - end..total - start]
                .iter()
                .rev()
                .map(|d| row(d, src.store.as_ref()))
                .collect()
        } else {
            matching[start..end]
                .iter()
                .map(|d| row(d, src.store.as_ref()))
                .collect()
        }
    } else {
        let key = |r: &Row| -> u64 {
            match sort {
                "messages" => r.waiting as u64,
                "unacked" => r.unacked as u64,
                "consumers" => r.consumers as u64,
                "enqueued" => r.enqueued,
                "dequeued" => r.dequeued,
                "store_bytes" => r.store_bytes,
                _ => r.bytes as u64,
            }
        };
        let mut rows: Vec<Row> = matching
            .iter()
            .map(|d| row(d, src.store.as_ref()))
            .collect();
        // A stable sort keeps name order among equal keys.
        rows.sort_by_key(|r| key(r));
        if descending {
            rows.reverse();
        }
        rows.drain(start..end).collect()
    };
    let rates = src.rates.of_many(shown.iter().map(|r| r.name.as_str()));
    let items: Vec<Value> = shown
        .iter()
        .zip(rates)
        .map(|(r, rate)| item(r, rate))
        .collect();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("x-total-count", total),
        ("x-page", page),
        ("x-page-size", page_size),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, v);
        }
    }
    Ok((headers, Json(Value::Array(items))))
}

/// The destination a `{kind}/{name}` path names: `name` is the part after
/// `/queue/` or `/topic/`, or a whole canonical name (percent-encoded,
/// e.g. `%2Fdurable%2Fclient%2Fsub`).
pub(super) fn canonical(kind: &str, name: &str) -> ApiResult<(DestinationKind, String)> {
    let k = match kind {
        "queue" => DestinationKind::Queue,
        "topic" => DestinationKind::Topic,
        other => {
            return Err(ApiError::bad_parameter(
                "kind",
                format!("{other:?} is not queue or topic"),
            ))
        }
    };
    if name.is_empty() {
        return Err(ApiError::bad_parameter("name", "empty"));
    }
    let full = if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{kind}/{name}")
    };
    Ok((k, full))
}

/// Looks up an existing destination for a `{kind}/{name}` path.
pub(super) fn resolve(src: &Sources, kind: &str, name: &str) -> ApiResult<Arc<Destination>> {
    let (k, full) = canonical(kind, name)?;
    match src.router.lookup(&full) {
        Some(d) if d.kind() == k => Ok(d),
        _ => Err(ApiError::not_found(format!("no {kind} named {full}"))),
    }
}

/// `GET /api/destinations/{kind}/{name}`.
pub async fn get(
    State(src): State<Arc<Sources>>,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let d = resolve(&src, &kind, &name)?;
    let mut v = item(&row(&d, src.store.as_ref()), src.rates.of(d.name()));
    let subscriptions: Vec<Value> = d
        .subscriptions()
        .iter()
        .map(super::connections::subscription_json)
        .collect();
    v["subscriptions"] = Value::Array(subscriptions);
    if let Some(durable) = src
        .router
        .durables()
        .into_iter()
        .find(|x| x.queue == d.name())
    {
        v["durable"] = super::connections::durable_json(&durable);
    }
    Ok(Json(v))
}

fn in_use(e: ManageError) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, e.to_string())
}

/// `DELETE /api/destinations/{kind}/{name}`: refused (409) while it has
/// consumers.
pub async fn delete(
    State(src): State<Arc<Sources>>,
    Extension(caller): Extension<Caller>,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let d = resolve(&src, &kind, &name)?;
    let dropped = src.router.delete(&d).map_err(in_use)?;
    info!(target: "ferromq::audit", user = %caller.user, destination = %d.name(), messages_dropped = dropped, "destination deleted");
    Ok(Json(
        json!({ "deleted": d.name(), "messages_dropped": dropped }),
    ))
}

/// `POST /api/destinations/queue/{name}/purge`.
pub async fn purge(
    State(src): State<Arc<Sources>>,
    Extension(caller): Extension<Caller>,
    Path((kind, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let d = resolve(&src, &kind, &name)?;
    if d.kind() != DestinationKind::Queue {
        return Err(ApiError::bad_parameter("kind", "only queues can be purged"));
    }
    let purged = src.router.purge(&d);
    info!(target: "ferromq::audit", user = %caller.user, destination = %d.name(), purged, "queue purged");
    Ok(Json(json!({ "destination": d.name(), "purged": purged })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_patterns_are_substrings_or_globs() {
        assert!(name_matches("", "/queue/a"));
        assert!(name_matches("ord", "/queue/orders"));
        assert!(!name_matches("x", "/queue/orders"));
        assert!(name_matches("/queue/ord*", "/queue/orders"));
        assert!(name_matches("*ers", "/queue/orders"));
        assert!(name_matches("/queue/*.eu.*", "/queue/o.eu.1"));
        assert!(!name_matches("/queue/*.eu.*", "/queue/o.us.1"));
        assert!(!name_matches("/topic/*", "/queue/a"));
        assert!(!name_matches("a*a", "a"));
    }

    #[test]
    fn canonical_names_take_short_or_full_forms() {
        assert_eq!(
            canonical("queue", "a.b").ok(),
            Some((DestinationKind::Queue, "/queue/a.b".into()))
        );
        assert_eq!(
            canonical("queue", "/durable/c/s").ok(),
            Some((DestinationKind::Queue, "/durable/c/s".into()))
        );
        let e = canonical("table", "x").err().map(|e| e.message);
        assert!(e.is_some_and(|m| m.contains("`kind`")));
    }
}
