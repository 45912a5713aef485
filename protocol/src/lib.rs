//! Wire formats spoken by ferromq, kept free of sockets and runtimes so that the
//! broker, the bench client, tests and fuzzers all share one implementation.
//!
//! - [`stomp`]: STOMP 1.0, 1.1 and 1.2 frames, an incremental decoder that treats a
//!   partial frame as "need more bytes", and an encoder that applies the version's
//!   header escaping.
//! - [`native`]: ferromq's own length-prefixed binary protocol (AMQP 1.0 model).
//! - `client` (feature `client`): an async tokio client for the native protocol.
#![deny(missing_docs)]

pub use headers::Headers;

#[cfg(feature = "client")]
pub mod client;
pub mod headers;
pub mod native;
pub mod stomp;
