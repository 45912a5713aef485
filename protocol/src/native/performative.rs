//! The connection, session, link, flow and transaction performatives: every frame
//! body except the message-carrying ones (Transfer and Disposition live in
//! [`super::transfer`]). Field meanings are specified in `protocol/NATIVE.md`;
//! `protocol/native.proto` is the same schema as protobuf text.

use super::condition::{ErrorCondition, ErrorInfo};

/// Default of [`Open::max_frame_size`] when a peer sends 0: 1 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1024 * 1024;

/// Smallest [`Open::max_frame_size`] a peer may announce: every performative
/// but a Transfer's body must fit in one frame, so this keeps headers usable.
pub const MIN_MAX_FRAME_SIZE: u32 = 512;

/// The sender's role on a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Role {
    /// Sends transfers on the link (a producer, or the broker towards a consumer).
    Sender = 0,
    /// Receives transfers and grants credit (a consumer, or the broker from a producer).
    Receiver = 1,
}

/// How the sending end of a link settles its transfers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SettleMode {
    /// Every transfer is unsettled and answered by a Disposition: at-least-once,
    /// the native equivalent of STOMP's `client-individual` acknowledgement.
    Unsettled = 0,
    /// Every transfer is pre-settled: at-most-once, the fast path.
    Settled = 1,
    /// Each transfer's own `settled` flag decides.
    Mixed = 2,
}

/// The first frame each side sends after the preamble exchange.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Open {
    /// Free-form name of the sending container (a client id, the broker's node name).
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Largest frame, length prefix included, the sender accepts; 0 means
    /// [`DEFAULT_MAX_FRAME_SIZE`]. See [`Open::effective_max_frame_size`].
    #[prost(uint32, tag = "2")]
    pub max_frame_size: u32,
    /// The sender closes a connection silent for this long; 0 = never.
    #[prost(uint32, tag = "3")]
    pub idle_timeout_ms: u32,
    /// Credentials (client to broker only).
    #[prost(message, optional, tag = "4")]
    pub credentials: Option<PlainCredentials>,
    /// Extensions the sender supports.
    #[prost(string, repeated, tag = "5")]
    pub offered_capabilities: Vec<String>,
    /// Extensions the sender would use if the peer offers them.
    #[prost(string, repeated, tag = "6")]
    pub desired_capabilities: Vec<String>,
    /// Virtual host the client asks for; empty = the default.
    #[prost(string, tag = "7")]
    pub hostname: String,
}

impl Open {
    /// The frame size limit this Open announces, with 0 read as the default.
    pub fn effective_max_frame_size(&self) -> u32 {
        if self.max_frame_size == 0 {
            DEFAULT_MAX_FRAME_SIZE
        } else {
            self.max_frame_size
        }
    }
}

/// SASL PLAIN-like credentials. Sent in clear: use TLS off loopback.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PlainCredentials {
    /// The user to authenticate as.
    #[prost(string, tag = "1")]
    pub username: String,
    /// The user's password.
    #[prost(string, tag = "2")]
    pub password: String,
}

/// Opens a session on the frame's channel.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Begin {
    /// In an answering Begin: the channel of the Begin it answers.
    #[prost(uint32, optional, tag = "1")]
    pub remote_channel: Option<u32>,
    /// Highest link handle the sender accepts on this session; 0 = no preference.
    #[prost(uint32, tag = "2")]
    pub handle_max: u32,
}

/// Ends the session on the frame's channel, detaching all its links.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct End {
    /// Why, if the session ends because of an error.
    #[prost(message, optional, tag = "1")]
    pub error: Option<ErrorInfo>,
}

/// Attaches a link (a producer or a consumer) to the session.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Attach {
    /// Link name, unique per connection and direction.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Handle the sender uses for this link in Flow, Transfer and Detach.
    #[prost(uint32, tag = "2")]
    pub handle: u32,
    /// The wire value of the sender's [`Role`]; read it with `role()`.
    #[prost(enumeration = "Role", tag = "3")]
    pub role: i32,
    /// `/queue/…`, `/topic/…`, `/temp-queue/…` or `/temp-topic/…`, as in STOMP.
    #[prost(string, tag = "4")]
    pub address: String,
    /// For a receiver on a topic: the durable subscription name.
    #[prost(string, optional, tag = "5")]
    pub durable_subscription: Option<String>,
    /// For a receiver: a JMS-style selector over properties and headers.
    #[prost(string, optional, tag = "6")]
    pub selector: Option<String>,
    /// The wire value of the link's [`SettleMode`]; read it with `settle_mode()`.
    #[prost(enumeration = "SettleMode", tag = "7")]
    pub settle_mode: i32,
    /// The sender's delivery count when attaching (sender role).
    #[prost(uint32, tag = "8")]
    pub initial_delivery_count: u32,
    /// Largest message body the sender accepts on this link; 0 = no limit.
    #[prost(uint64, tag = "9")]
    pub max_message_size: u64,
}

/// Detaches a link; `closed` also ends it for good.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Detach {
    /// The link's handle.
    #[prost(uint32, tag = "1")]
    pub handle: u32,
    /// true: the link is closed, not merely detached (a durable subscription is deleted).
    #[prost(bool, tag = "2")]
    pub closed: bool,
    /// Why, if the link is detached because of an error.
    #[prost(message, optional, tag = "3")]
    pub error: Option<ErrorInfo>,
}

/// Link flow control: the receiver grants credit, the sender reports its state.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Flow {
    /// The link's handle.
    #[prost(uint32, tag = "1")]
    pub handle: u32,
    /// Transfers the receiver is ready for beyond `delivery_count`.
    #[prost(uint32, tag = "2")]
    pub link_credit: u32,
    /// The sender's count of transfers sent on the link (wraps at 2^32).
    #[prost(uint32, tag = "3")]
    pub delivery_count: u32,
    /// Use up the credit now, or advance the delivery count to consume it.
    #[prost(bool, tag = "4")]
    pub drain: bool,
    /// The peer must answer with its own Flow for this link.
    #[prost(bool, tag = "5")]
    pub echo: bool,
    /// Sender only: messages it could send right now.
    #[prost(uint32, tag = "6")]
    pub available: u32,
}

/// Closes the connection; its sender closes the socket after writing it.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Close {
    /// Why, if the connection closes because of an error.
    #[prost(message, optional, tag = "1")]
    pub error: Option<ErrorInfo>,
}

impl Close {
    /// A Close reporting `condition` with a description for the user.
    pub fn with_error(condition: ErrorCondition, description: impl Into<String>) -> Close {
        Close {
            error: Some(ErrorInfo::new(condition, description)),
        }
    }
}

/// Starts a transaction; the broker echoes it, with `error` set if it failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Declare {
    /// The client-chosen transaction id, unique on the connection.
    #[prost(string, tag = "1")]
    pub txn_id: String,
    /// In the broker's echo: why the transaction could not be started.
    #[prost(message, optional, tag = "2")]
    pub error: Option<ErrorInfo>,
}

/// Ends a transaction: commit, or roll back when `fail`. The broker echoes it
/// once done (a commit once it is durable), with `error` set if it failed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Discharge {
    /// The transaction's id, as in its Declare.
    #[prost(string, tag = "1")]
    pub txn_id: String,
    /// true: roll back (STOMP ABORT); false: commit (STOMP COMMIT).
    #[prost(bool, tag = "2")]
    pub fail: bool,
    /// In the broker's echo: why the discharge failed.
    #[prost(message, optional, tag = "3")]
    pub error: Option<ErrorInfo>,
}

/// Keeps an idle connection alive; carries nothing.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Heartbeat {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn zero_max_frame_size_means_default() {
        let mut open = Open::default();
        assert_eq!(open.effective_max_frame_size(), DEFAULT_MAX_FRAME_SIZE);
        open.max_frame_size = 4096;
        assert_eq!(open.effective_max_frame_size(), 4096);
    }

    #[test]
    fn enum_accessors_default_on_unknown_values() {
        let attach = Attach {
            role: Role::Receiver.into(),
            settle_mode: 42,
            ..Attach::default()
        };
        assert_eq!(attach.role(), Role::Receiver);
        assert_eq!(attach.settle_mode(), SettleMode::Unsettled);
    }
}
