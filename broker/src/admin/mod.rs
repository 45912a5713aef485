//! The admin HTTP endpoint (`[admin] listen`, default 127.0.0.1:8161):
//! `/healthz`, `/metrics` (Prometheus text) and `/api/destinations` (JSON).
//!
//! A small HTTP/1.1 server written on tokio rather than a framework: three
//! GET routes with no bodies, keep-alive or TLS do not justify hyper's
//! dependency tree, and every bound (head size, read time, concurrent
//! requests) is explicit here.
//!
//! Access: when users are configured, `/metrics` and `/api/*` need HTTP
//! Basic credentials of a user in group `admins`; `/healthz` stays open for
//! health checks (it says nothing but "ok"). Without users the endpoint is
//! open, and the config only lets it listen on loopback unless
//! `admin.allow_remote = true`.
//!
//! - [`http`]: request parsing and response writing.
//! - [`metrics`]: the Prometheus and JSON renderings.

pub mod http;
pub mod metrics;

use crate::auth::Credentials;
use http::{ReadError, Request, Response};
use metrics::Sources;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Requests served at once; more wait in the listen backlog. Each may cost
/// an Argon2 verification, so this stays small.
const MAX_CONCURRENT: usize = 16;

/// Time for a client to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn run(listener: TcpListener, sources: Arc<Sources>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
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
        match accepted {
            Ok((socket, peer)) => {
                let sources = sources.clone();
                tokio::spawn(async move {
                    serve(socket, peer, &sources).await;
                    drop(permit);
                });
            }
            Err(e) => {
                warn!(listener = "admin", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(mut socket: TcpStream, peer: SocketAddr, sources: &Sources) {
    let (response, with_body) = match http::read_request(&mut socket, READ_TIMEOUT).await {
        Ok(request) => {
            let head = request.method == "HEAD";
            (respond(&request, peer, sources).await, !head)
        }
        Err(ReadError::Closed) => return,
        Err(ReadError::Timeout) => (
            Response::text(408, "request head not received in time\n"),
            true,
        ),
        Err(ReadError::TooLarge) => (Response::text(431, "request head too large\n"), true),
        Err(ReadError::Malformed) => (Response::text(400, "not an HTTP/1.x request\n"), true),
    };
    debug!(listener = "admin", %peer, status = response.status, "admin request");
    response.write(&mut socket, with_body).await;
}

async fn respond(request: &Request, peer: SocketAddr, sources: &Sources) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        let mut r = Response::text(405, "only GET and HEAD are supported\n");
        r.headers.push("Allow: GET, HEAD".into());
        return r;
    }
    if request.path == "/healthz" {
        // Every node answers; in a cluster the body names its role, so a
        // load balancer can send clients to the one that says `ok leader`.
        return match sources.leadership.role() {
            "single" => Response::text(200, "ok\n"),
            role => Response::text(200, format!("ok {role}\n")),
        };
    }
    if !matches!(request.path.as_str(), "/metrics" | "/api/destinations") {
        return Response::text(
            404,
            "not found: try /healthz, /metrics, /api/destinations\n",
        );
    }
    let (login, passcode) = match &request.basic_auth {
        Some((user, password)) => (Some(user.as_str()), Some(password.as_str())),
        None => (None, None),
    };
    let credentials = Credentials {
        login,
        passcode,
        certificate: None,
    };
    if let Err(why) = sources.auth.authenticate_admin(credentials).await {
        warn!(
            listener = "admin",
            %peer,
            login = %login.unwrap_or("-"),
            reason = %why,
            "admin authentication failed"
        );
        let mut r = Response::text(401, "authentication required (a user in group admins)\n");
        r.headers
            .push("WWW-Authenticate: Basic realm=\"ferromq admin\", charset=\"UTF-8\"".into());
        return r;
    }
    match request.path.as_str() {
        "/metrics" => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics::prometheus(sources),
        ),
        _ => Response::new(
            200,
            "application/json",
            metrics::destinations_json(&sources.router),
        ),
    }
}
