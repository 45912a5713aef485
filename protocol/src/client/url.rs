//! Parsing `ferromq://host:port` and `ferromq+tls://host:port`.

use super::ClientError;

/// Plain TCP or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `ferromq://` (default port 61620).
    Plain,
    /// `ferromq+tls://` (default port 61621).
    Tls,
}

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// TCP or TLS.
    pub scheme: Scheme,
    /// Host name or address (also the TLS server name).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// Parses a broker URL; the port defaults to the scheme's.
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let bad = |reason: &str| ClientError::Url {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("ferromq://") {
            (Scheme::Plain, rest)
        } else if let Some(rest) = url.strip_prefix("ferromq+tls://") {
            (Scheme::Tls, rest)
        } else {
            return Err(bad("the scheme must be ferromq:// or ferromq+tls://"));
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad("expected host:port with no path"));
        }
        let default_port = match scheme {
            Scheme::Plain => 61620,
            Scheme::Tls => 61621,
        };
        // `[::1]:61620` or `host:61620` or `host`.
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.ends_with(']')) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
            ),
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Endpoint {
            scheme,
            host: host.to_string(),
            port,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn parses_both_schemes_and_defaults() {
        let e = Endpoint::parse("ferromq://127.0.0.1:1234").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Plain, "127.0.0.1", 1234)
        );
        let e = Endpoint::parse("ferromq+tls://localhost").unwrap();
        assert_eq!(
            (e.scheme, e.host.as_str(), e.port),
            (Scheme::Tls, "localhost", 61621)
        );
        let e = Endpoint::parse("ferromq://[::1]:9").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9));
        assert!(Endpoint::parse("stomp://x:1").is_err());
        assert!(Endpoint::parse("ferromq://x:notaport").is_err());
        assert!(Endpoint::parse("ferromq://x:1/path").is_err());
    }
}
