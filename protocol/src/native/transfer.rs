//! Message-carrying performatives: [`Transfer`] (one message or one piece of a
//! split one, with its typed [`Properties`], application headers and body) and
//! [`Disposition`] (settlement and outcome of a range of deliveries).
//!
//! Bodies are [`Bytes`]: a decoded body is a slice of the read buffer, not a copy.

use super::condition::ErrorInfo;
use super::performative::Role;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;

/// Priority of a message whose [`Properties::priority`] is absent (as in JMS and STOMP).
pub const DEFAULT_PRIORITY: u32 = 4;

/// Highest valid message priority.
pub const MAX_PRIORITY: u32 = 9;

/// One message, or one piece of it when `more` is set.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Transfer {
    /// The link's handle.
    #[prost(uint32, tag = "1")]
    pub handle: u32,
    /// Per-session, increasing; continuation frames repeat the first frame's value.
    #[prost(uint64, tag = "2")]
    pub delivery_id: u64,
    /// An opaque tag chosen by the sender; only in the first frame of a split message.
    #[prost(bytes = "bytes", tag = "3")]
    pub delivery_tag: Bytes,
    /// Pre-settled (at-most-once) when true; otherwise the receiver answers with a
    /// [`Disposition`].
    #[prost(bool, tag = "4")]
    pub settled: bool,
    /// More frames of this message follow.
    #[prost(bool, tag = "5")]
    pub more: bool,
    /// The message (or, in a continuation frame, only a piece of its body).
    #[prost(message, optional, tag = "6")]
    pub message: Option<Message>,
    /// The transaction this transfer belongs to.
    #[prost(string, optional, tag = "7")]
    pub txn_id: Option<String>,
}

impl Transfer {
    /// Body bytes carried by this frame (0 without a message).
    pub fn body_len(&self) -> usize {
        self.message.as_ref().map_or(0, |m| m.body.len())
    }
}

/// A message: typed properties, user headers and an opaque body.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Message {
    /// The properties the broker understands; absent in continuation frames.
    #[prost(message, optional, tag = "1")]
    pub properties: Option<Properties>,
    /// User headers (STOMP headers the broker does not interpret). Ordered, so an
    /// encoding is deterministic.
    #[prost(btree_map = "string, string", tag = "2")]
    pub application_headers: BTreeMap<String, String>,
    /// The payload.
    #[prost(bytes = "bytes", tag = "3")]
    pub body: Bytes,
}

/// Message properties with meaning to the broker; each maps to a STOMP header
/// (see `protocol/NATIVE.md`).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Properties {
    /// Assigned by the broker; empty on a producer's transfer.
    #[prost(string, tag = "1")]
    pub message_id: String,
    /// Where the message was sent (`/queue/…`, `/topic/…`); empty = the link's address.
    #[prost(string, tag = "2")]
    pub destination: String,
    /// Stored durably before it is accepted.
    #[prost(bool, tag = "3")]
    pub persistent: bool,
    /// 0 (lowest) to [`MAX_PRIORITY`]; absent means [`DEFAULT_PRIORITY`], which the
    /// generated `priority()` accessor returns.
    #[prost(uint32, optional, tag = "4", default = "4")]
    pub priority: Option<u32>,
    /// Expiry in milliseconds since the Unix epoch; 0 = never.
    #[prost(uint64, tag = "5")]
    pub expires: u64,
    /// Send time in milliseconds since the Unix epoch; 0 = not set.
    #[prost(uint64, tag = "6")]
    pub timestamp: u64,
    /// Correlates a reply with its request.
    #[prost(string, optional, tag = "7")]
    pub correlation_id: Option<String>,
    /// Where replies should go.
    #[prost(string, optional, tag = "8")]
    pub reply_to: Option<String>,
    /// MIME type of the body.
    #[prost(string, optional, tag = "9")]
    pub content_type: Option<String>,
    /// Broker to consumer: this message was delivered before.
    #[prost(bool, tag = "10")]
    pub redelivered: bool,
    /// Broker to consumer: how many earlier delivery attempts there were.
    #[prost(uint32, tag = "11")]
    pub delivery_count: u32,
}

/// Settles, or reports the outcome of, deliveries `first..=last`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Disposition {
    /// The wire value of the sender's [`Role`]; read it with `role()`.
    #[prost(enumeration = "Role", tag = "1")]
    pub role: i32,
    /// First delivery id of the range.
    #[prost(uint64, tag = "2")]
    pub first: u64,
    /// Last delivery id of the range; absent = `first`. Use [`Disposition::delivery_ids`].
    #[prost(uint64, optional, tag = "3")]
    pub last: Option<u64>,
    /// The deliveries are settled: the sender forgets them.
    #[prost(bool, tag = "4")]
    pub settled: bool,
    /// The transaction this acknowledgement belongs to.
    #[prost(string, optional, tag = "5")]
    pub txn_id: Option<String>,
    /// The outcome; absent = settlement without an outcome.
    #[prost(oneof = "DeliveryState", tags = "6, 7, 8, 9")]
    pub state: Option<DeliveryState>,
}

impl Disposition {
    /// The delivery ids this disposition covers. Empty when `last < first`,
    /// which [`mod@super::validate`] rejects on decode.
    pub fn delivery_ids(&self) -> RangeInclusive<u64> {
        self.first..=self.last.unwrap_or(self.first)
    }

    /// How many deliveries the range covers (0 for an inverted range).
    pub fn range_len(&self) -> u64 {
        let last = self.last.unwrap_or(self.first);
        if last < self.first {
            0
        } else {
            (last - self.first).saturating_add(1)
        }
    }
}

/// The outcome of a delivery.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum DeliveryState {
    /// Taken: a producer's transfer is stored, a consumer's ack is final.
    #[prost(message, tag = "6")]
    Accepted(Accepted),
    /// Invalid: dead-lettered or dropped, never redelivered.
    #[prost(message, tag = "7")]
    Rejected(Rejected),
    /// Not processed: redeliver without counting a failed attempt.
    #[prost(message, tag = "8")]
    Released(Released),
    /// Not processed: redeliver, as the flags say.
    #[prost(message, tag = "9")]
    Modified(Modified),
}

/// The accepted outcome; carries nothing.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Accepted {}

/// The rejected outcome.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Rejected {
    /// Why the message was rejected.
    #[prost(message, optional, tag = "1")]
    pub error: Option<ErrorInfo>,
}

/// The released outcome (a STOMP NACK without a failed attempt); carries nothing.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Released {}

/// The modified outcome (a STOMP NACK).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Modified {
    /// Count this as a failed delivery attempt (towards the dead-letter rules).
    #[prost(bool, tag = "1")]
    pub delivery_failed: bool,
    /// Do not redeliver the message on this link.
    #[prost(bool, tag = "2")]
    pub undeliverable_here: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn disposition_range_defaults_to_one_delivery() {
        let mut d = Disposition {
            first: 7,
            ..Disposition::default()
        };
        assert_eq!(d.delivery_ids(), 7..=7);
        assert_eq!(d.range_len(), 1);
        d.last = Some(9);
        assert_eq!(d.delivery_ids().count(), 3);
        assert_eq!(d.range_len(), 3);
        d.last = Some(3);
        assert_eq!(d.delivery_ids().count(), 0);
        assert_eq!(d.range_len(), 0);
        d.first = 0;
        d.last = Some(u64::MAX);
        assert_eq!(d.range_len(), u64::MAX);
    }

    #[test]
    fn absent_priority_reads_as_default() {
        let mut p = Properties::default();
        assert_eq!(p.priority(), DEFAULT_PRIORITY);
        p.priority = Some(0);
        assert_eq!(p.priority(), 0);
    }
}
