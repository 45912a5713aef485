//! Broker addresses as given on the command line: `stomp://host:port`,
//! `stomp+ssl://host:port` (alias `stomp+tls://`), ferromq's native protocol
//! `ferromq://host:port` and `ferromq+tls://host:port`, and failover lists
//! `failover:(url,url,...)` (ActiveMQ's syntax; a trailing `?options` part is
//! accepted and ignored, as the reconnect policy is the benchmark's own). All
//! entries of a failover list speak the same protocol.

use std::fmt;
use thiserror::Error;

/// The wire protocol and security of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// STOMP over plain TCP.
    Stomp,
    /// STOMP over TLS.
    StompTls,
    /// ferromq's native protocol over plain TCP.
    Native,
    /// ferromq's native protocol over TLS.
    NativeTls,
}

impl Scheme {
    /// Whether the transport is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::StompTls | Scheme::NativeTls)
    }

    /// The wire protocol.
    pub fn protocol(self) -> Protocol {
        match self {
            Scheme::Stomp | Scheme::StompTls => Protocol::Stomp,
            Scheme::Native | Scheme::NativeTls => Protocol::Native,
        }
    }
}

/// Which driver a URL needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// STOMP 1.0-1.2.
    Stomp,
    /// ferromq's native binary protocol (`protocol/NATIVE.md`).
    Native,
}

/// One broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Protocol and transport security.
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// `host:port` for `TcpStream::connect`, bracketing IPv6 literals.
    pub fn socket_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Stomp => "stomp",
            Scheme::StompTls => "stomp+ssl",
            Scheme::Native => "ferromq",
            Scheme::NativeTls => "ferromq+tls",
        };
        write!(f, "{scheme}://{}", self.socket_addr())
    }
}

/// Every endpoint a client may use, tried in order and rotated on failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// At least one endpoint.
    pub endpoints: Vec<Endpoint>,
    /// The text the user gave, kept for reports.
    pub original: String,
}

impl BrokerUrl {
    /// The index of the endpoint whose `host:port` is `address` (as a
    /// cluster member names its leader in a redirect).
    pub fn position_of(&self, address: &str) -> Option<usize> {
        self.endpoints
            .iter()
            .position(|e| e.socket_addr() == address)
    }
}

/// Why a `--url` value was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    /// The scheme is not one we speak.
    #[error("unsupported scheme in '{0}': expected stomp://, stomp+ssl://, stomp+tls://, ferromq://, ferromq+tls:// or failover:(...)")]
    UnsupportedScheme(String),
    /// A failover list mixing STOMP and native endpoints.
    #[error(
        "failover list '{0}' mixes STOMP and ferromq:// endpoints: one run speaks one protocol"
    )]
    MixedProtocols(String),
    /// Host or port missing or malformed.
    #[error("malformed address '{0}': expected scheme://host:port")]
    MalformedAddress(String),
    /// A `failover:(` without its `)` or with no entries.
    #[error("malformed failover list '{0}': expected failover:(url,url,...)")]
    MalformedFailover(String),
}

impl BrokerUrl {
    /// Parses a single URL or a failover list.
    pub fn parse(text: &str) -> Result<BrokerUrl, UrlError> {
        let trimmed = text.trim();
        let endpoints = if let Some(rest) = trimmed.strip_prefix("failover:") {
            parse_failover(rest).map_err(|_| UrlError::MalformedFailover(text.to_string()))??
        } else {
            vec![parse_endpoint(trimmed)?]
        };
        let protocol = endpoints.first().map(|e| e.scheme.protocol());
        if endpoints
            .iter()
            .any(|e| Some(e.scheme.protocol()) != protocol)
        {
            return Err(UrlError::MixedProtocols(text.to_string()));
        }
        Ok(BrokerUrl {
            endpoints,
            original: trimmed.to_string(),
        })
    }

    /// Whether any endpoint needs TLS (decides whether a TLS config is built).
    pub fn uses_tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.scheme.is_tls())
    }

    /// The protocol every endpoint speaks.
    pub fn protocol(&self) -> Protocol {
        self.endpoints
            .first()
            .map_or(Protocol::Stomp, |e| e.scheme.protocol())
    }
}

/// `(a,b)?opts` or `a,b` → endpoints. The outer `Result` is a syntax error of
/// the list itself; the inner one an error in an entry.
fn parse_failover(rest: &str) -> Result<Result<Vec<Endpoint>, UrlError>, ()> {
    let list = match rest.strip_prefix('(') {
        Some(inner) => {
            let close = inner.find(')').ok_or(())?;
            &inner[..close]
        }
        None => rest.split('?').next().unwrap_or(""),
    };
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(());
    }
    Ok(entries.into_iter().map(parse_endpoint).collect())
}

fn parse_endpoint(text: &str) -> Result<Endpoint, UrlError> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| UrlError::MalformedAddress(text.to_string()))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "stomp" | "tcp" => Scheme::Stomp,
        "stomp+ssl" | "stomp+tls" | "stomp+nio+ssl" | "ssl" | "tls" | "stomps" => Scheme::StompTls,
        "ferromq" => Scheme::Native,
        "ferromq+tls" | "ferromq+ssl" => Scheme::NativeTls,
        _ => return Err(UrlError::UnsupportedScheme(text.to_string())),
    };
    // Drop any path or query: `stomp://host:61613/?x=y`.
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let malformed = || UrlError::MalformedAddress(text.to_string());
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(malformed)?;
        (host, after.strip_prefix(':').ok_or_else(malformed)?)
    } else {
        authority.rsplit_once(':').ok_or_else(malformed)?
    };
    if host.is_empty() {
        return Err(malformed());
    }
    let port: u16 = port.parse().map_err(|_| malformed())?;
    if port == 0 {
        return Err(malformed());
    }
    Ok(Endpoint {
        scheme,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls_urls() {
        let u = BrokerUrl::parse("stomp://127.0.0.1:61613").unwrap();
        assert_eq!(u.endpoints.len(), 1);
        assert_eq!(u.endpoints[0].scheme, Scheme::Stomp);
        assert_eq!(u.endpoints[0].socket_addr(), "127.0.0.1:61613");
        assert!(!u.uses_tls());

        let u = BrokerUrl::parse("stomp+ssl://b-1234.mq.eu-west-1.amazonaws.com:61614").unwrap();
        assert_eq!(u.endpoints[0].scheme, Scheme::StompTls);
        assert_eq!(u.endpoints[0].host, "b-1234.mq.eu-west-1.amazonaws.com");
        assert_eq!(u.endpoints[0].port, 61614);
        assert!(u.uses_tls());

        let u = BrokerUrl::parse("stomp+tls://[::1]:61614/").unwrap();
        assert_eq!(u.endpoints[0].host, "::1");
        assert_eq!(u.endpoints[0].socket_addr(), "[::1]:61614");
    }

    #[test]
    fn failover_lists() {
        let u = BrokerUrl::parse(
            "failover:(stomp+ssl://a.example:61614, stomp+ssl://b.example:61614)?randomize=false",
        )
        .unwrap();
        assert_eq!(u.endpoints.len(), 2);
        assert_eq!(u.endpoints[0].host, "a.example");
        assert_eq!(u.endpoints[1].host, "b.example");
        assert!(u.uses_tls());

        let u = BrokerUrl::parse("failover:stomp://a:1,stomp://b:2").unwrap();
        assert_eq!(u.endpoints.len(), 2);
        assert_eq!(u.endpoints[1].port, 2);
    }

    #[test]
    fn native_urls() {
        let u = BrokerUrl::parse("ferromq://127.0.0.1:61620").unwrap();
        assert_eq!(u.endpoints[0].scheme, Scheme::Native);
        assert_eq!(u.protocol(), Protocol::Native);
        assert!(!u.uses_tls());
        assert_eq!(u.endpoints[0].to_string(), "ferromq://127.0.0.1:61620");
        let u = BrokerUrl::parse("failover:(ferromq+tls://a:61621,ferromq://b:61620)").unwrap();
        assert_eq!(u.endpoints[0].scheme, Scheme::NativeTls);
        assert_eq!(u.protocol(), Protocol::Native);
        assert!(u.uses_tls());
        assert_eq!(
            BrokerUrl::parse("stomp://a:1").unwrap().protocol(),
            Protocol::Stomp
        );
        assert!(matches!(
            BrokerUrl::parse("failover:(stomp://a:1,ferromq://b:2)"),
            Err(UrlError::MixedProtocols(_))
        ));
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            BrokerUrl::parse("amqp://x:5672"),
            Err(UrlError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("stomp://hostonly"),
            Err(UrlError::MalformedAddress(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("stomp://:61613"),
            Err(UrlError::MalformedAddress(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("stomp://h:99999"),
            Err(UrlError::MalformedAddress(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("failover:(stomp://a:1"),
            Err(UrlError::MalformedFailover(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("failover:()"),
            Err(UrlError::MalformedFailover(_))
        ));
        assert!(matches!(
            BrokerUrl::parse("failover:(stomp://a:1,amqp://b:2)"),
            Err(UrlError::UnsupportedScheme(_))
        ));
    }
}
