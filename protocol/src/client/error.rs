//! [`ClientError`]: everything the native client can fail with.

use crate::native::{ErrorInfo, NativeError};
use thiserror::Error;

/// Why a client operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The URL is not `ferromq://host:port` or `ferromq+tls://host:port`.
    #[error("invalid URL '{url}': {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The socket failed (connect, read or write).
    #[error("I/O error talking to {peer}: {reason}")]
    Io {
        /// The broker's address.
        peer: String,
        /// The OS error.
        reason: String,
    },
    /// The TLS handshake or configuration failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// The broker does not speak our protocol version (its preamble says which).
    #[error("the server answered with preamble {0:02x?}, not ferromq native 1.x")]
    Preamble(Vec<u8>),
    /// The broker sent bytes that are not valid frames.
    #[error("protocol error: {0}")]
    Protocol(#[from] NativeError),
    /// The broker closed the connection, with its reason if it gave one.
    #[error("connection closed by the broker{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Closed(Option<ErrorInfo>),
    /// The broker refused a link, a transaction or a message.
    #[error("refused by the broker: {0}")]
    Refused(ErrorInfo),
    /// The broker did something the protocol does not allow.
    #[error("unexpected from the broker: {0}")]
    Unexpected(String),
}
