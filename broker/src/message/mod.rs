//! The message model the router and the store share: [`Message`] (an id, a
//! destination, some typed JMS-like properties, user headers and a [`Body`]
//! every subscriber shares), and the clock helper [`now_ms`].
//!
//! A leaf module: it imports neither the router nor the store, so both can
//! depend on it without depending on each other. Nothing here knows a
//! protocol.

pub mod body;

pub use body::{Body, BodySource, PageError};

use crate::selector::{PropertySource, Value};
use ferromq_protocol::Headers;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Default JMS priority, as in ActiveMQ.
pub const DEFAULT_PRIORITY: u8 = 4;

/// Headers the broker writes itself on a delivered message, or that only
/// steer a send (STOMP SEND, the management API's send): never kept as a
/// message's own headers.
pub const BROKER_HEADERS: &[&str] = &[
    "destination",
    "receipt",
    "transaction",
    "content-length",
    "message-id",
    "subscription",
    "ack",
    "redelivered",
    "timestamp",
    "expires",
    "priority",
    "persistent",
];

/// One published message. Shared (`Arc`) by every queue slot, subscriber and
/// store entry that refers to it; never mutated after publication.
#[derive(Debug)]
pub struct Message {
    /// Broker-wide unique, increasing sequence number (the message id's suffix).
    pub seq: u64,
    /// The destination it was published to, in canonical `/queue/x` form.
    pub destination: Arc<str>,
    /// Survives a restart (`persistent:true`).
    pub persistent: bool,
    /// 0 (lowest) to 9 (highest).
    pub priority: u8,
    /// Expiry time in ms since the epoch; 0 = never.
    pub expires: u64,
    /// Publication time in ms since the epoch.
    pub timestamp: u64,
    /// Producer-set headers (user properties, content-type, correlation-id,
    /// reply-to, ...), without the ones the broker writes itself.
    pub headers: Headers,
    /// The payload, in memory or paged out to the store.
    pub body: Body,
}

impl Message {
    /// Bytes this message accounts for against its destination's memory
    /// limit: a fixed allowance for headers and bookkeeping, plus the body
    /// unless the store keeps it (stored bodies count against the store's
    /// own budget and are paged out beyond it, see [`Body`]). Constant for
    /// the message's lifetime, so adding and subtracting it always balance.
    pub fn footprint(&self) -> usize {
        if self.body.is_stored() {
            256
        } else {
            self.body.len() + 256
        }
    }

    /// Whether the message has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires != 0 && self.expires <= now_ms
    }
}

/// JMS message groups (`JMSXGroupID` / `JMSXGroupSeq`).
impl Message {
    /// The message group, if the producer set one.
    pub fn group(&self) -> Option<&str> {
        self.headers.get("JMSXGroupID").filter(|g| !g.is_empty())
    }

    /// Whether this message closes its group (`JMSXGroupSeq` of -1).
    pub fn closes_group(&self) -> bool {
        self.headers
            .get("JMSXGroupSeq")
            .is_some_and(|s| s.trim() == "-1")
    }
}

/// Selectors see JMS header fields by their JMS names and every other
/// header as a string property, as ActiveMQ does for STOMP messages.
impl PropertySource for Message {
    fn property(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "JMSPriority" => Some(Value::Long(i64::from(self.priority))),
            "JMSTimestamp" => Some(Value::Long(self.timestamp as i64)),
            "JMSExpiration" => Some(Value::Long(self.expires as i64)),
            "JMSDeliveryMode" => Some(Value::Str(if self.persistent {
                "PERSISTENT"
            } else {
                "NON_PERSISTENT"
            })),
            "JMSCorrelationID" => self.headers.get("correlation-id").map(Value::Str),
            "JMSType" => self.headers.get("type").map(Value::Str),
            "JMSReplyTo" => self.headers.get("reply-to").map(Value::Str),
            "JMSDestination" => Some(Value::Str(&self.destination)),
            _ => self.headers.get(name).map(Value::Str),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
