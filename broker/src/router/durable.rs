//! Durable topic subscriptions: a subscription that keeps receiving a
//! topic's messages while its subscriber is away.
//!
//! Each one is a hidden queue named `/durable/<client-id>/<name>`; the router
//! copies every message published to a matching topic into it (filtered by
//! the subscription's selector), and the subscriber, when connected,
//! consumes that queue with ordinary queue semantics (unacked messages
//! return on disconnect). Persistent copies are stored like any queue
//! message, so a durable subscription's backlog survives a restart.

use super::address::{wildcard_matches, Address, DestinationKind};
use super::Destination;
use crate::selector::Selector;
use std::sync::Arc;

/// Prefix of the hidden queues.
pub const PREFIX: &str = "/durable/";

/// One durable subscription.
#[derive(Debug, Clone)]
pub struct Durable {
    /// `client-id` of the CONNECT that made it.
    pub client_id: Arc<str>,
    /// Its name (`activemq.subscriptionName` and friends).
    pub name: Arc<str>,
    /// The topic or topic pattern it follows.
    pub topic: Arc<str>,
    /// Its selector, if any.
    pub selector: Option<Arc<Selector>>,
    /// The hidden queue holding its messages.
    pub queue: Arc<Destination>,
}

impl Durable {
    /// Whether a message published to `topic` belongs here.
    pub fn follows(&self, topic: &str) -> bool {
        *self.topic == *topic || wildcard_matches(&self.topic, topic)
    }
}

/// The hidden queue's address. Its `owner_name` is the topic, so MESSAGE
/// frames show the topic the subscriber asked for.
pub fn queue_address(client_id: &str, name: &str, topic: &str) -> Address {
    Address {
        kind: DestinationKind::Queue,
        name: format!("{PREFIX}{}/{}", escape(client_id), escape(name)).into(),
        temp_owner: None,
        owner_name: Some(topic.into()),
    }
}

/// Store metadata key of the durable subscription whose queue is `queue`.
pub fn meta_key(queue: &str) -> Arc<str> {
    format!("durable{queue}").into()
}

/// A durable subscription's definition as stored: what it takes to rebuild
/// it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// `client-id`.
    pub client_id: String,
    /// Subscription name.
    pub name: String,
    /// Topic or pattern.
    pub topic: String,
    /// Selector text, if any.
    pub selector: Option<String>,
}

/// Format version of [`Definition::encode`].
const DEFINITION_VERSION: u8 = 1;

impl Definition {
    /// `version u8 | 4 × (u32 BE length + UTF-8)`, the selector empty when
    /// absent.
    pub fn encode(&self) -> bytes::Bytes {
        let mut out = vec![DEFINITION_VERSION];
        for field in [
            &self.client_id,
            &self.name,
            &self.topic,
            self.selector.as_ref().unwrap_or(&String::new()),
        ] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.into()
    }

    /// Decodes [`Definition::encode`]'s output; `None` if it is not that.
    pub fn decode(mut raw: &[u8]) -> Option<Definition> {
        let (&version, rest) = raw.split_first()?;
        if version != DEFINITION_VERSION {
            return None;
        }
        raw = rest;
        let mut fields = Vec::with_capacity(4);
        for _ in 0..4 {
            let len = u32::from_be_bytes(raw.get(..4)?.try_into().ok()?) as usize;
            let text = std::str::from_utf8(raw.get(4..4 + len)?).ok()?;
            fields.push(text.to_string());
            raw = &raw[4 + len..];
        }
        let selector = fields.pop().filter(|s| !s.is_empty());
        let topic = fields.pop()?;
        let name = fields.pop()?;
        let client_id = fields.pop()?;
        Some(Definition {
            client_id,
            name,
            topic,
            selector,
        })
    }
}

/// Keeps `/` out of the name parts so the queue name splits back unambiguously.
fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}

/// Whether `name` is a durable subscription's hidden queue.
pub fn is_durable_queue(name: &str) -> bool {
    name.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_round_trip_and_reject_garbage() {
        let d = Definition {
            client_id: "app".into(),
            name: "s\n1".into(),
            topic: "/topic/a.>".into(),
            selector: Some("x = 'y'".into()),
        };
        assert_eq!(Definition::decode(&d.encode()), Some(d.clone()));
        let plain = Definition {
            selector: None,
            ..d
        };
        assert_eq!(Definition::decode(&plain.encode()), Some(plain));
        assert_eq!(Definition::decode(b"\x01\x00\x00"), None);
        assert_eq!(Definition::decode(b"\x09"), None);
    }

    #[test]
    fn queue_names_are_unambiguous() {
        let a = queue_address("app/1", "s", "/topic/x");
        let b = queue_address("app", "1/s", "/topic/x");
        assert_ne!(a.name, b.name);
        assert!(is_durable_queue(&a.name));
        assert_eq!(a.owner_name.as_deref(), Some("/topic/x"));
    }
}
