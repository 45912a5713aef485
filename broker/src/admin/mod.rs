//! The admin HTTP endpoint (`[admin] listen`, default 127.0.0.1:8161, and
//! `admin.tls_listen` for HTTPS): the web console at `/`, the management
//! API under `/api/`, `/metrics` (Prometheus) and `/healthz`.
//!
//! HTTP is axum's routing and extractors on hyper's HTTP/1.1 server: the
//! accept loop here bounds the connections served at once, and each
//! connection gets keep-alive, a header read timeout (which also ends idle
//! keep-alive connections), a header size limit and, through axum, a body
//! size limit and a per-request time limit. HTTPS uses the same reloadable
//! acceptor (`[tls]`) as the other TLS listeners.
//!
//! - [`access`]: who may call what, cross-site refusal, the audit log.
//! - [`routes`]: the route table, 404/405 and time limits.
//! - [`overview`], [`destinations`], [`messages`], [`connections`]: the API.
//! - [`cluster`]: `/api/cluster`, the cluster's state and membership changes.
//! - [`metrics`]: `/metrics`, and [`metrics::Sources`], what routes read.
//! - [`rates`]: per-second rates from a once-a-second sample.
//! - [`console`]: the embedded web console.

pub mod access;
pub mod cluster;
pub mod connections;
pub mod console;
pub mod destinations;
pub mod error;
pub mod messages;
pub mod metrics;
pub mod overview;
pub mod params;
pub mod rates;
pub mod routes;

use crate::tls::ReloadableAcceptor;
use access::Peer;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics::Sources;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// Connections served at once (per listener); more wait in the listen
/// backlog. Requests may cost an Argon2 verification each, and a browser
/// keeps up to six connections open, so this stays small.
pub const MAX_CONNECTIONS: usize = 32;

/// Time for a client to send a request head, and the longest a keep-alive
/// connection may sit idle between requests.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request head (request line and headers): beyond it, 431.
pub const MAX_HEAD: usize = 16 * 1024;

/// Serves the endpoint on `listener` (HTTPS when `tls` is given) until
/// `shutdown`.
pub async fn run(
    listener: TcpListener,
    tls: Option<Arc<ReloadableAcceptor>>,
    sources: Arc<Sources>,
    shutdown: CancellationToken,
) {
    let app = routes::app(sources);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Wait for a free slot before accepting, so excess clients queue in
        // the kernel instead of as tasks.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p,
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return,
        };
        let (socket, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(listener = "admin", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        let acceptor = tls.as_ref().map(|t| t.current());
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve(socket, peer, app, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => serve(stream, peer, app, shutdown).await,
                        Ok(Err(e)) => {
                            debug!(listener = "admin+tls", %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => debug!(listener = "admin+tls", %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 requests on one connection until the client closes it,
/// falls idle, or the broker shuts down.
async fn serve<S>(io: S, peer: SocketAddr, app: axum::Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(Peer(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            match r {
                Ok(()) => debug!(listener = "admin", %peer, "admin connection closed"),
                Err(e) => debug!(listener = "admin", %peer, error = %e, "admin connection ended"),
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// Samples message rates once a second until `shutdown`.
pub async fn sample_rates(sources: Arc<Sources>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => sources.rates.tick(&sources.router),
            _ = shutdown.cancelled() => return,
        }
    }
}
