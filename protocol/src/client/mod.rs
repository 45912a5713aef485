//! An async client for ferromq's native protocol (feature `client`), on tokio.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ferromq_protocol::client::ClientError> {
//! use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
//!
//! let conn = Connection::connect("ferromq://127.0.0.1:61620").await?;
//! let sender = conn.open_sender("/queue/orders", SettleMode::Unsettled).await?;
//! // Waits until the broker has taken (and, if persistent, stored) the message.
//! sender.send_and_wait(OutgoingMessage::text("hello").persistent(true)).await?;
//!
//! let mut receiver = conn
//!     .open_receiver("/queue/orders", ReceiverOptions::default())
//!     .await?;
//! if let Some(delivery) = receiver.recv().await {
//!     println!("{:?}", delivery.body());
//!     receiver.accept(&delivery).await?;
//! }
//! conn.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! - [`Connection`]: connect (`ferromq://host:port`, `ferromq+tls://host:port`),
//!   open links, declare transactions, close.
//! - [`Sender`] and [`Receiver`]: the two link ends; [`Delivery`] is a received message.
//! - [`Transaction`]: transfers and dispositions that take effect at commit.

mod connection;
mod error;
mod link;
mod reader;
mod transaction;
mod url;

pub use crate::native::SettleMode;
pub use connection::{ConnectOptions, Connection, MAX_WINDOW};
pub use error::ClientError;
pub use link::{
    Delivery, Outcome, OutgoingMessage, PendingOutcome, Receiver, ReceiverOptions, Sender,
};
pub use transaction::Transaction;
pub use url::{Endpoint, Scheme};
