//! The STOMP front end: connection (socket reads and timeouts), session
//! (the protocol state machine), outbox and writer (ordered, batched output).

pub mod connection;
pub mod outbox;
pub mod session;
pub mod writer;

pub use connection::{serve, ConnectionConfig};
pub use session::SessionConfig;
