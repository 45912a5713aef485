//! Who may call the admin endpoint, and the audit trail of what they changed.
//!
//! - `/healthz` is open (it says nothing but "ok").
//! - With users configured, every other route needs HTTP Basic credentials
//!   of a user in group `admins`; read-only requests (GET, HEAD) are also
//!   allowed to group `monitoring`. Without users the endpoint is open (the
//!   config keeps it on loopback unless `admin.allow_remote`).
//! - State-changing requests (POST, DELETE, ...) are refused when a browser
//!   says they come from another site: `Sec-Fetch-Site` other than
//!   `same-origin`/`none`, or an `Origin` whose host is not the `Host` the
//!   request was sent to. A browser attaches both to cross-site requests and
//!   a page cannot forge them, so a malicious page cannot use an
//!   administrator's saved Basic credentials (CSRF). Command-line clients
//!   send neither and are not affected.
//! - Every state-changing request is logged (target `ferromq::audit`) with
//!   the user, the client address, the method, the path and the status.

use super::error::ApiError;
use super::metrics::Sources;
use crate::auth::{Credentials, ADMIN_GROUP, MONITORING_GROUP};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::{info, warn};

/// The client address of a request (set by the server for each connection).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Who made a request, once authenticated (a request extension).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user name (`anonymous` when no users are configured).
    pub user: Arc<str>,
}

/// Whether `method` may change state.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: authenticates, refuses cross-site writes, logs writes.
pub async fn guard(State(src): State<Arc<Sources>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let peer = req
        .extensions()
        .get::<Peer>()
        .map_or_else(|| "-".to_owned(), |p| p.0.to_string());
    let writes = changes_state(&method);
    let basic = basic_auth(req.headers());
    let (login, passcode) = match &basic {
        Some((u, p)) => (Some(u.as_str()), Some(p.as_str())),
        None => (None, None),
    };
    let credentials = Credentials {
        login,
        passcode,
        certificate: None,
    };
    let principal = match src
        .auth
        .authenticate_admin_in(credentials, &[ADMIN_GROUP, MONITORING_GROUP])
        .await
    {
        Ok(p) => p,
        Err(why) => {
            warn!(listener = "admin", %peer, login = %login.unwrap_or("-"), reason = %why, "admin authentication failed");
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication required: a user in group admins (or monitoring, read-only)",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ferromq admin\", charset=\"UTF-8\""),
            );
            return r;
        }
    };
    if writes && !principal.anonymous && !principal.in_group(ADMIN_GROUP) {
        warn!(listener = "admin", %peer, user = %principal.name, %method, %path, "admin write refused: monitoring users may only read");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "user {} may only read (group monitoring); changes need group admins",
                principal.name
            ),
        )
        .into_response();
    }
    if writes {
        if let Err(why) = same_site(req.headers()) {
            warn!(listener = "admin", %peer, user = %principal.name, %method, %path, reason = %why, "cross-site admin request refused");
            return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
        }
    }
    let user = principal.name.clone();
    req.extensions_mut().insert(Caller { user: user.clone() });
    let response = next.run(req).await;
    if writes {
        info!(target: "ferromq::audit", user = %user, %peer, %method, %path, status = response.status().as_u16(), "admin action");
    }
    response
}

/// `Authorization: Basic dXNlcjpwYXNz` → `("user", "pass")`.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// `Err(reason)` when a browser marked the request as cross-site.
fn same_site(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Err(format!(
                "cross-site request refused (Sec-Fetch-Site: {site}): changes must come from the console itself or a non-browser client"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("null");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if authority.is_empty() || !authority.eq_ignore_ascii_case(host) {
            return Err(format!(
                "cross-site request refused (Origin {origin} is not this endpoint, {host})"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_writes_are_told_apart_from_same_site_and_cli_ones() {
        assert!(
            same_site(&headers(&[])).is_ok(),
            "curl sends neither header"
        );
        assert!(same_site(&headers(&[
            ("host", "127.0.0.1:8161"),
            ("origin", "http://127.0.0.1:8161"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .is_ok());
        assert!(same_site(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_site(&headers(&[
            ("host", "127.0.0.1:8161"),
            ("origin", "http://evil.example")
        ]))
        .is_err());
        assert!(same_site(&headers(&[("host", "a"), ("origin", "null")])).is_err());
    }

    #[test]
    fn basic_credentials_are_decoded_with_colons_in_the_password() {
        let h = headers(&[("authorization", "Basic YWRtaW46cHc6eA==")]);
        assert_eq!(basic_auth(&h), Some(("admin".into(), "pw:x".into())));
        assert_eq!(basic_auth(&headers(&[("authorization", "Bearer x")])), None);
        assert_eq!(
            basic_auth(&headers(&[("authorization", "Basic !!!")])),
            None
        );
    }
}
