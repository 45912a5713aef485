//! Schema of the tables that say where and how ferromq listens: `[broker]`,
//! `[stomp]`, `[websocket]`, `[native]`, `[tls]` and `[admin]`, with their
//! compiled-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::units::{empty_as_none, ByteSize, Millis};

/// Parses an optional listen address. Validation has already rejected
/// addresses that do not parse, so `None` here means "disabled".
fn parse_listen(value: Option<&String>) -> Option<SocketAddr> {
    value.and_then(|text| text.parse().ok())
}

/// `[broker]`: identity and process-wide settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Broker name, reported in STOMP `CONNECTED` (`server` header) and logs.
    pub name: String,
    /// Directory of the durable store. A relative path is relative to the
    /// working directory (systemd runs us in `/`, so the unit passes
    /// `--data-dir`).
    pub data_dir: PathBuf,
    /// How long a graceful shutdown waits for connections to drain and the
    /// store to flush before giving up.
    pub shutdown_timeout: Millis,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            name: "ferromq".to_owned(),
            data_dir: PathBuf::from("data"),
            shutdown_timeout: Millis::secs(5),
        }
    }
}

/// `[stomp]`: the STOMP 1.0-1.2 listener and its frame limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StompConfig {
    /// Plain TCP listen address; `""` disables it.
    #[serde(with = "empty_as_none")]
    pub listen: Option<String>,
    /// TLS listen address; only started when `tls.cert` and `tls.key` are set.
    #[serde(with = "empty_as_none")]
    pub tls_listen: Option<String>,
    /// Largest accepted frame (headers plus body).
    pub max_frame_size: ByteSize,
    /// Largest number of headers in one frame.
    pub max_headers: u32,
    /// Longest single header line.
    pub max_header_line: ByteSize,
    /// Fastest heart-beat interval the server agrees to send.
    pub heartbeat_send_min: Millis,
    /// Fastest heart-beat interval the server wants to receive.
    pub heartbeat_receive_min: Millis,
    /// A client silent for `heartbeat_grace` times its negotiated interval is
    /// dropped. At least 1.0.
    pub heartbeat_grace: f64,
    /// `CONNECT`/`STOMP` must arrive within this time after accept.
    pub connect_timeout: Millis,
    /// A frame whose first byte has arrived must complete within this time.
    pub frame_timeout: Millis,
}

impl Default for StompConfig {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:61613".to_owned()),
            tls_listen: Some("127.0.0.1:61614".to_owned()),
            max_frame_size: ByteSize::mib(16),
            max_headers: 1000,
            max_header_line: ByteSize::kib(64),
            heartbeat_send_min: Millis::secs(1),
            heartbeat_receive_min: Millis::secs(1),
            heartbeat_grace: 2.0,
            connect_timeout: Millis::secs(10),
            frame_timeout: Millis::secs(30),
        }
    }
}

impl StompConfig {
    /// The plain listen address, or `None` when disabled.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.listen.as_ref())
    }

    /// The TLS listen address, or `None` when disabled.
    pub fn tls_listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.tls_listen.as_ref())
    }
}

/// `[websocket]`: STOMP over WebSocket (stomp.js in browsers and Node). The
/// sessions are STOMP sessions, so every `[stomp]` limit and timeout applies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketConfig {
    /// Plain (`ws://`) listen address; `""` disables it.
    #[serde(with = "empty_as_none")]
    pub listen: Option<String>,
    /// TLS (`wss://`) listen address; only started when `tls.cert` and
    /// `tls.key` are set.
    #[serde(with = "empty_as_none")]
    pub tls_listen: Option<String>,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        // RabbitMQ web-stomp's ports, so its users' `ws://host:15674/ws`
        // URLs work unchanged.
        Self {
            listen: Some("127.0.0.1:15674".to_owned()),
            tls_listen: Some("127.0.0.1:15673".to_owned()),
        }
    }
}

impl WebSocketConfig {
    /// The plain listen address, or `None` when disabled.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.listen.as_ref())
    }

    /// The TLS listen address, or `None` when disabled.
    pub fn tls_listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.tls_listen.as_ref())
    }
}

/// `[native]`: the native binary protocol listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NativeConfig {
    /// Plain TCP listen address; `""` disables it.
    #[serde(with = "empty_as_none")]
    pub listen: Option<String>,
    /// TLS listen address; only started when `tls.cert` and `tls.key` are set.
    #[serde(with = "empty_as_none")]
    pub tls_listen: Option<String>,
    /// Largest accepted native frame.
    pub max_frame_size: ByteSize,
    /// A connection that sends nothing (not even a ping) for this long is closed.
    pub idle_timeout: Millis,
}

impl Default for NativeConfig {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:61620".to_owned()),
            tls_listen: Some("127.0.0.1:61621".to_owned()),
            max_frame_size: ByteSize::mib(1),
            idle_timeout: Millis::secs(60),
        }
    }
}

impl NativeConfig {
    /// The plain listen address, or `None` when disabled.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.listen.as_ref())
    }

    /// The TLS listen address, or `None` when disabled.
    pub fn tls_listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.tls_listen.as_ref())
    }
}

/// Whether TLS listeners ask clients for a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    /// No client certificate is requested.
    #[default]
    None,
    /// A certificate is requested and, if sent, verified against `client_ca`.
    Optional,
    /// A certificate signed by `client_ca` is required.
    Required,
}

/// `[tls]`: certificates shared by the STOMP, WebSocket and native TLS
/// listeners.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; `""` = no TLS listeners.
    #[serde(with = "empty_as_none")]
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    #[serde(with = "empty_as_none")]
    pub key: Option<PathBuf>,
    /// PEM CA bundle used to verify client certificates.
    #[serde(with = "empty_as_none")]
    pub client_ca: Option<PathBuf>,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
}

impl TlsConfig {
    /// `(cert, key)` when TLS is configured; validation guarantees that either
    /// both or neither are set.
    pub fn cert_and_key(&self) -> Option<(&Path, &Path)> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        }
    }

    /// Whether the TLS listeners should be started.
    pub fn enabled(&self) -> bool {
        self.cert_and_key().is_some()
    }
}

/// `[admin]`: the HTTP admin/metrics endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address; `""` disables the endpoint.
    #[serde(with = "empty_as_none")]
    pub listen: Option<String>,
    /// Must be `true` to listen on anything but a loopback address. With
    /// users configured the endpoint asks for HTTP Basic credentials of a
    /// user in group `admins` (`/healthz` stays open); without users it is
    /// open to anyone who can reach it, so exposing it is a deliberate choice.
    pub allow_remote: bool,
    /// HTTPS listen address (its own listener, with the `[tls]` certificate);
    /// only started when `tls.cert` and `tls.key` are set. `""` disables it.
    #[serde(with = "empty_as_none")]
    pub tls_listen: Option<String>,
    /// Most destinations given their own series on `/metrics`; beyond it the
    /// ones holding the most messages are kept (the JSON API lists all).
    pub metrics_destination_limit: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: Some("127.0.0.1:8161".to_owned()),
            allow_remote: false,
            tls_listen: None,
            metrics_destination_limit: 1000,
        }
    }
}

impl AdminConfig {
    /// The listen address, or `None` when disabled.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.listen.as_ref())
    }

    /// The HTTPS listen address, or `None` when disabled.
    pub fn tls_listen_addr(&self) -> Option<SocketAddr> {
        parse_listen(self.tls_listen.as_ref())
    }
}
