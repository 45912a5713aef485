//! The native protocol front end (`protocol/NATIVE.md`): the same router and
//! store as STOMP, driven by credit-based links instead of STOMP frames.
//!
//! - [`connection`]: the socket: preamble, batched reads, timeouts, shutdown.
//! - [`session`]: the connection state machine (Open, sessions, transactions,
//!   Close), [`link`]: producer and consumer links over the router, and
//!   [`produce`]: the transfers of producer links.
//! - [`outgoing`] (what goes into the shared [`crate::outbox`]) and
//!   [`writer`] (the socket writer task): ordered, batched output; transfers
//!   split to the peer's frame size; settlement of pre-settled deliveries
//!   once written.
//! - [`book`]: unsettled deliveries by (channel, delivery id), for Dispositions.
//! - [`convert`]: router messages to native messages and back.

pub mod book;
pub mod connection;
pub mod convert;
pub mod link;
pub mod outgoing;
pub mod produce;
pub mod session;
pub mod writer;

pub use connection::serve;

use crate::auth::Authenticator;
use ferromq_protocol::native::{ErrorCondition, NativeError};
use std::sync::Arc;
use std::time::Duration;

/// A map keyed by a peer's channel or handle number, looked up for every
/// frame: Fx hashing, not SipHash. A peer choosing colliding numbers slows
/// only its own connection, whose sessions and links are bounded.
pub type ChannelMap<V> = rustc_hash::FxHashMap<u32, V>;

/// Settings of native connections, from `[native]`, `[stomp]` and `[limits]`.
#[derive(Clone)]
pub struct NativeSettings {
    /// Largest frame the broker accepts (announced in its Open).
    pub max_frame_size: u32,
    /// The broker closes a connection silent for this long (announced in its Open).
    pub idle_timeout: Duration,
    /// The preamble and Open must arrive within this.
    pub connect_timeout: Duration,
    /// A frame, once started, must complete within this.
    pub frame_timeout: Duration,
    /// Largest message body accepted, reassembled or not (the same limit as
    /// STOMP's frame size, so a message fits either protocol).
    pub max_message_size: usize,
    /// Most links per connection.
    pub max_links: usize,
    /// Most sessions (channels) per connection.
    pub max_sessions: usize,
    /// Most unsettled deliveries per connection: the prefetch windows of its
    /// unsettled consumer links add up to at most this
    /// (`limits.max_unacked_per_connection`, as for STOMP).
    pub max_unacked: usize,
    /// Most open transactions per connection.
    pub max_transactions: usize,
    /// Most bytes one transaction may buffer.
    pub max_transaction_bytes: usize,
    /// Credit the broker grants a producer link at a time.
    pub producer_credit: u32,
    /// Replies queued before the connection stops reading.
    pub reply_limit: usize,
    /// The broker's container id in its Open.
    pub container_id: String,
    /// Users and ACLs, shared with STOMP.
    pub auth: Arc<Authenticator>,
    /// Whether this node serves clients (always, unless it is a cluster
    /// follower).
    pub leadership: Arc<crate::leadership::Leadership>,
}

/// A protocol error: the connection answers with Close carrying it, then closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of error.
    pub condition: ErrorCondition,
    /// For a person: names the frame, field, handle or destination involved.
    pub description: String,
}

impl Failure {
    /// A failure of `condition`.
    pub fn new(condition: ErrorCondition, description: impl Into<String>) -> Failure {
        Failure {
            condition,
            description: description.into(),
        }
    }

    /// `illegal-state`.
    pub fn illegal_state(description: impl Into<String>) -> Failure {
        Failure::new(ErrorCondition::IllegalState, description)
    }

    /// `not-found`.
    pub fn not_found(description: impl Into<String>) -> Failure {
        Failure::new(ErrorCondition::NotFound, description)
    }
}

impl From<NativeError> for Failure {
    fn from(e: NativeError) -> Failure {
        Failure::new(e.condition(), e.to_string())
    }
}
