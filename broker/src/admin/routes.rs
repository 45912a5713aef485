//! The route table: every path and method the endpoint answers, JSON 404
//! and 405 answers for the rest, the body size limit and the per-request
//! time limit.

use super::error::ApiError;
use super::metrics::Sources;
use super::{access, cluster, connections, console, destinations, messages, metrics, overview};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body (a message sent through the API, JSON-encoded).
pub const MAX_BODY: usize = 1 << 20;

/// Longest a request may take (a browse reading paged-out bodies, a send
/// waiting for flow control).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The application: routes, limits and access control.
pub fn app(src: Arc<Sources>) -> Router {
    Router::new()
        .route("/", get(console::index))
        .route("/console.js", get(console::script))
        .route("/console.css", get(console::style))
        .route("/healthz", get(healthz))
        .route("/metrics", get(prometheus))
        .route("/api/overview", get(overview::get))
        .route("/api/cluster", get(cluster::get))
        .route("/api/cluster/members", post(cluster::add))
        .route("/api/cluster/members/{id}", delete(cluster::remove))
        .route("/api/cluster/members/{id}/promote", post(cluster::promote))
        .route("/api/destinations", get(destinations::list))
        .route(
            "/api/destinations/{kind}/{name}",
            get(destinations::get).delete(destinations::delete),
        )
        .route(
            "/api/destinations/{kind}/{name}/purge",
            post(destinations::purge),
        )
        .route(
            "/api/destinations/{kind}/{name}/messages",
            get(messages::browse).post(messages::send),
        )
        .route("/api/connections", get(connections::list))
        .route(
            "/api/connections/{id}",
            get(connections::get).delete(connections::close),
        )
        .route("/api/subscriptions/durable", get(connections::durables))
        .route(
            "/api/subscriptions/durable/{queue}",
            delete(connections::delete_durable),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(src.clone(), access::guard))
        .layer(middleware::from_fn(limits))
        .with_state(src)
}

/// Every node answers; in a cluster the body names its role, so a load
/// balancer can send clients to the one that says `ok leader`.
async fn healthz(State(src): State<Arc<Sources>>) -> String {
    match src.leadership.role() {
        "single" => "ok\n".to_owned(),
        role => format!("ok {role}\n"),
    }
}

async fn prometheus(State(src): State<Arc<Sources>>) -> Response {
    let mut text = metrics::prometheus(&src);
    if let Some(node) = src.leadership.node() {
        metrics::raft(&mut text, &node.report().await);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route {}: see /api/overview, /api/cluster, /api/destinations, /api/connections, /api/subscriptions/durable, /metrics, /healthz",
        req.uri().path()
    ))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// The per-request time limit, and headers every answer carries: nothing
/// is cached, and no other site may frame the console.
async fn limits(req: Request, next: Next) -> Response {
    let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {} s",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
