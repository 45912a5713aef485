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
    fn queue_names_are_unambiguous() {
        let a = queue_address("app/1", "s", "/topic/x");
        let b = queue_address("app", "1/s", "/topic/x");
        assert_ne!(a.name, b.name);
        assert!(is_durable_queue(&a.name));
        assert_eq!(a.owner_name.as_deref(), Some("/topic/x"));
    }
}
