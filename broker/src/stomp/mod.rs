//! The STOMP front end: connection (socket reads and timeouts), session
//! (the protocol state machine), outgoing (the items it puts into the shared
//! [`crate::outbox`]) and writer (the socket writer task: ordered, batched
//! output).

pub mod connection;
pub mod outgoing;
pub mod session;
pub mod writer;

pub use connection::{serve, ConnectionConfig};
pub use session::SessionConfig;
