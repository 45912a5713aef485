//! The boundary between the benchmark logic (pacing, counting, acknowledging
//! on schedule) and a wire protocol. A [`Driver`] opens producer and consumer
//! links; the STOMP driver is in [`stomp`], ferromq's native protocol driver
//! in [`native`]. The scenario runner is the same for both.
//!
//! Links buffer frames (`push_*`) and write them in one go on `flush`, so a
//! producer can batch many messages per system call.

pub mod native;
pub mod stomp;
pub mod transport;

use crate::order::Origin;
use crate::scenario::AckMode;
use std::future::Future;
use std::sync::Arc;
use thiserror::Error;

/// Why a link failed. Every variant names the endpoint.
#[derive(Debug, Error)]
pub enum DriverError {
    /// Connecting, reading or writing failed.
    #[error("{endpoint}: {what}: {source}")]
    Io {
        /// Which broker address.
        endpoint: String,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration or handshake failed.
    #[error("{endpoint}: TLS: {message}")]
    Tls {
        /// Which broker address (or CA file).
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The broker sent bytes that are not valid STOMP.
    #[error("{endpoint}: invalid frame from broker: {source}")]
    Protocol {
        /// Which broker address.
        endpoint: String,
        /// The decoder's complaint.
        #[source]
        source: ferromq_protocol::stomp::FrameError,
    },
    /// The broker sent bytes that are not valid native-protocol frames.
    #[error("{endpoint}: invalid native frame from broker: {source}")]
    NativeProtocol {
        /// Which broker address.
        endpoint: String,
        /// The codec's complaint.
        #[source]
        source: ferromq_protocol::native::NativeError,
    },
    /// The broker sent an ERROR frame (a native Close, End or Detach with an
    /// error, a rejected transfer) or an unexpected reply.
    #[error("{endpoint}: broker error: {message}")]
    Broker {
        /// Which broker address.
        endpoint: String,
        /// The ERROR frame's `message` header and body.
        message: String,
    },
    /// A cluster member that is not the leader refused the connection
    /// (STOMP ERROR `not the leader`, native Close `not-leader`): worth
    /// retrying on the leader, which it names once one is elected.
    #[error("{endpoint}: not the leader (leader: {})", leader.as_deref().unwrap_or("none elected yet"))]
    NotLeader {
        /// Which broker address.
        endpoint: String,
        /// The leader's client address (`host:port`), if known.
        leader: Option<String>,
    },
    /// The broker closed the connection.
    #[error("{endpoint}: connection closed by broker")]
    Closed {
        /// Which broker address.
        endpoint: String,
    },
    /// The broker did not answer in time.
    #[error("{endpoint}: timed out waiting for {what}")]
    Timeout {
        /// Which broker address.
        endpoint: String,
        /// What we were waiting for.
        what: &'static str,
    },
}

/// What a producer link sends.
#[derive(Debug, Clone)]
pub struct ProducerSpec {
    /// Full destination name, e.g. `/queue/loadq-0`.
    pub destination: String,
    /// Mark messages persistent.
    pub persistent: bool,
    /// The message body, shared by all producers of a scenario.
    pub body: Arc<[u8]>,
}

/// What a consumer link subscribes to.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Full destination name.
    pub destination: String,
    /// Acknowledgement mode.
    pub ack: AckMode,
    /// Durable subscription name (topics only); also used as the client id.
    pub durable_name: Option<String>,
    /// How many unacknowledged messages the broker may push to this consumer.
    pub prefetch: u32,
}

/// What the bench reads of a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// The send stamp (ns on the run's clock), 0 when the message has none.
    pub stamp: u64,
    /// Its producer and sequence number, when stamped with them.
    pub origin: Option<Origin>,
    /// The broker flagged it as given out before (STOMP `redelivered`).
    pub redelivered: bool,
}

/// A protocol that can open producer and consumer links to one endpoint.
pub trait Driver: Send + Sync + 'static {
    /// A connected producer.
    type Producer: ProducerLink;
    /// A connected, subscribed consumer.
    type Consumer: ConsumerLink;

    /// Connects to `endpoint` (index into the URL's endpoint list) and
    /// prepares to send to `spec.destination`.
    fn connect_producer(
        &self,
        endpoint: usize,
        spec: &ProducerSpec,
    ) -> impl Future<Output = Result<Self::Producer, DriverError>> + Send;

    /// Connects to `endpoint` and subscribes.
    fn connect_consumer(
        &self,
        endpoint: usize,
        spec: &ConsumerSpec,
    ) -> impl Future<Output = Result<Self::Consumer, DriverError>> + Send;

    /// Number of endpoints (failover list length).
    fn endpoint_count(&self) -> usize;

    /// The index of the endpoint at `address` (`host:port`), as a refusing
    /// cluster member names its leader; `None` if it is not in the list.
    fn endpoint_at(&self, address: &str) -> Option<usize>;
}

impl DriverError {
    /// For a `not the leader` refusal that names the leader: its address.
    pub fn leader(&self) -> Option<&str> {
        match self {
            DriverError::NotLeader { leader, .. } => leader.as_deref(),
            _ => None,
        }
    }
}

/// A producer connection.
pub trait ProducerLink: Send {
    /// Buffers one message stamped with `stamp_ns` (see [`crate::clock`])
    /// and, if given, its producer and sequence number ([`crate::order`]),
    /// inside transaction `tx` if given, asking for RECEIPT `receipt` if given.
    fn push_send(
        &mut self,
        stamp_ns: u64,
        origin: Option<Origin>,
        tx: Option<u64>,
        receipt: Option<u64>,
    );
    /// Buffers a BEGIN.
    fn push_begin(&mut self, tx: u64);
    /// Buffers a COMMIT, asking for RECEIPT `receipt` if given.
    fn push_commit(&mut self, tx: u64, receipt: Option<u64>);
    /// Bytes buffered and not yet written.
    fn buffered(&self) -> usize;
    /// Writes everything buffered.
    fn flush(&mut self) -> impl Future<Output = Result<(), DriverError>> + Send;
    /// Reads until the RECEIPT `id` arrives (earlier receipts are passed over).
    fn wait_receipt(&mut self, id: u64) -> impl Future<Output = Result<(), DriverError>> + Send;
    /// Reads whatever has already arrived without waiting, so that an ERROR
    /// frame from the broker is noticed by a producer that never waits.
    fn check_incoming(&mut self) -> impl Future<Output = Result<(), DriverError>> + Send;
    /// Disconnects politely (best effort).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A consumer connection.
pub trait ConsumerLink: Send {
    /// Waits for at least one message and appends what the bench reads of
    /// every message now available to `out`. Returns how many were
    /// appended. The messages can then be acknowledged by index (0-based
    /// within this call) until the next call. Cancel-safe.
    fn receive(
        &mut self,
        out: &mut Vec<Delivery>,
    ) -> impl Future<Output = Result<usize, DriverError>> + Send;
    /// Buffers an acknowledgement of message `index` of the last `receive`
    /// (cumulatively for `ack:client`), inside transaction `tx` if given.
    /// Does nothing for `ack:auto`.
    fn push_ack(&mut self, index: usize, tx: Option<u64>);
    /// Buffers a BEGIN.
    fn push_begin(&mut self, tx: u64);
    /// Buffers a COMMIT.
    fn push_commit(&mut self, tx: u64);
    /// Writes everything buffered.
    fn flush(&mut self) -> impl Future<Output = Result<(), DriverError>> + Send;
    /// Removes a durable subscription (used when draining), then disconnects.
    fn unsubscribe_and_close(self) -> impl Future<Output = ()> + Send;
    /// Disconnects politely (best effort).
    fn close(self) -> impl Future<Output = ()> + Send;
}
