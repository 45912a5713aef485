//! Durable topic subscriptions: a subscription that keeps receiving a
//! topic's messages while its subscriber is away.
//!
//! Each one is a hidden queue named `/durable/<client-id>/<name>`; the router
//! copies every message published to a matching topic into it (filtered by
//! the subscription's selector), and the subscriber, when connected,
//! consumes that queue with ordinary queue semantics (unacked messages
//! return on disconnect). Persistent copies are stored like any queue
//! message, so a durable subscription's backlog survives a restart, and
//! its queue pages like any persistent queue: it holds a window
//! (`destinations.queue_window`) and leaves further persistent copies to
//! the store, read back in order as its subscriber drains it (see
//! `destination::backlog`). `durable_limit` counts both.

use super::address::{wildcard_matches, Address, DestinationKind};
use super::Destination;
use super::{delivery_marks, Message, Router, RouterError};
use crate::selector::Selector;
use crate::store::{Commit, LogEntry};
use std::sync::atomic::Ordering;
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

impl Router {
    /// Copies a topic message into every durable subscription following the
    /// topic. Persistent copies are appended to the store in one batch, so
    /// one commit covers them all (the producer's receipt waits on it).
    pub(super) fn publish_to_durables(&self, topic: &str, message: &Arc<Message>) -> Commit {
        let targets: Vec<Arc<Destination>> = self
            .durables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|d| {
                d.follows(topic) && d.selector.as_ref().is_none_or(|s| s.matches(&**message))
            })
            .map(|d| d.queue.clone())
            .collect();
        if targets.is_empty() {
            return Commit::Done;
        }
        let mut copies: Vec<(Arc<Destination>, Arc<Message>)> = Vec::with_capacity(targets.len());
        for queue in targets {
            let body = match message.body.copy() {
                Ok(body) => body,
                Err(e) => return Commit::Failed(crate::store::StoreError::Io(e.to_string())),
            };
            let copy = Arc::new(Message {
                seq: self.next_seq(),
                destination: queue.address.name.clone(),
                persistent: message.persistent,
                priority: message.priority,
                expires: message.expires,
                timestamp: message.timestamp,
                headers: message.headers.clone(),
                body,
            });
            copies.push((queue, copy));
        }
        // A persistent copy for a subscription whose window is full is left
        // to the store, as a persistent queue's message is (counted before
        // the append, see `destination::backlog`), and read back in order
        // when its subscriber drains the queue: an offline subscriber's
        // backlog costs the store, not memory.
        let left: Vec<bool> = copies
            .iter()
            .map(|(queue, m)| {
                m.persistent
                    && delivery_marks::stores_messages_of(queue)
                    && queue.leave_to_store(m.priority)
            })
            .collect();
        let stored: Vec<LogEntry> = copies
            .iter()
            .zip(&left)
            .filter(|((_, m), _)| m.persistent)
            .map(|((_, m), &backlog)| LogEntry::Enqueue {
                message: m.clone(),
                backlog,
            })
            .collect();
        let commit = if stored.is_empty() {
            Commit::Done
        } else {
            self.store.append(stored)
        };
        if commit.is_failed() {
            for ((queue, m), left) in copies.iter().zip(&left) {
                if *left {
                    queue.cancel_leave(m.priority);
                }
            }
            return commit;
        }
        for ((queue, copy), left) in copies.into_iter().zip(left) {
            self.enforce_durable_limit(&queue);
            if !left {
                queue.publish(copy);
            }
        }
        commit
    }

    /// `drop-oldest`: makes room in a full durable subscription by dropping
    /// its oldest waiting message. (`block` instead slows producers, through
    /// [`Router::wait_for_space`].)
    /// The limit counts what the store holds for the subscription too
    /// ([`Destination::depth`]); the oldest message is in the window (its
    /// head), so while a page is being read back into an empty window
    /// nothing is dropped and the subscription may pass the limit by what
    /// arrives meanwhile.
    fn enforce_durable_limit(&self, queue: &Destination) {
        if self.config.durable_drop_oldest && queue.depth() >= self.config.durable_limit {
            if let Some(old) = queue.drop_oldest() {
                drop(self.log_acks(queue, &[old]));
            }
        }
    }

    /// Creates (or finds) the durable subscription `client_id`/`name` on
    /// `topic` and returns the queue its subscriber consumes. A subscription
    /// that changes topic or selector starts afresh, as in ActiveMQ.
    pub fn durable_subscribe(
        &self,
        client_id: &str,
        name: &str,
        topic: &Address,
        selector: Option<Arc<crate::selector::Selector>>,
    ) -> Result<Arc<Destination>, RouterError> {
        let address = queue_address(client_id, name, &topic.name);
        {
            let durables = self.durables.read().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = durables.get(&address.name) {
                let same_selector =
                    d.selector.as_ref().map(|s| s.text()) == selector.as_ref().map(|s| s.text());
                if *d.topic == *topic.name && same_selector {
                    return Ok(d.queue.clone());
                }
            }
        }
        // Changed (or new): drop any old one, then create.
        self.durable_unsubscribe(client_id, name);
        // Messages restored from the store before anyone resubscribed sit
        // in a queue without the topic's display name: carry them over.
        let restored = self
            .destinations
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address.name);
        let queue = self.destination(&address, 0)?;
        if let Some(old) = restored {
            // Its store backlog too: the lanes' counts and positions move
            // with it (one destination lock at a time).
            queue.adopt_backlog(old.give_up_backlog());
            for (message, redeliveries) in old.drain_waiting() {
                queue.restore(message, redeliveries);
            }
        }
        let durable = Durable {
            client_id: client_id.into(),
            name: name.into(),
            topic: topic.name.clone(),
            selector,
            queue: queue.clone(),
        };
        // The definition is logged before any message is copied into the
        // queue, so a restart never finds messages of an unknown subscription.
        let definition = Definition {
            client_id: client_id.to_string(),
            name: name.to_string(),
            topic: topic.name.to_string(),
            selector: durable.selector.as_ref().map(|s| s.text().to_string()),
        };
        drop(self.store.append(vec![LogEntry::Put {
            key: meta_key(&address.name),
            value: definition.encode(),
        }]));
        self.install_durable(durable);
        Ok(queue)
    }

    fn install_durable(&self, durable: Durable) {
        self.durables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(durable.queue.address.name.clone(), durable);
        self.has_durables.store(true, Ordering::Release);
    }

    /// Rebuilds a durable subscription from its stored definition.
    pub(super) fn restore_durable(&self, definition: Definition) -> Result<(), RouterError> {
        let topic = Address::parse(&definition.topic, 0)?;
        let selector = match &definition.selector {
            Some(text) => Some(Arc::new(
                crate::selector::Selector::parse(text)
                    .map_err(|e| RouterError::Scheduling(e.to_string()))?,
            )),
            None => None,
        };
        let address = queue_address(&definition.client_id, &definition.name, &topic.name);
        let queue = self.destination(&address, 0)?;
        self.install_durable(Durable {
            client_id: definition.client_id.into(),
            name: definition.name.into(),
            topic: topic.name.clone(),
            selector,
            queue,
        });
        Ok(())
    }

    /// Deletes a durable subscription and its messages. Returns whether it
    /// existed.
    pub fn durable_unsubscribe(&self, client_id: &str, name: &str) -> bool {
        self.durable_unsubscribe_queue(&queue_address(client_id, name, "").name)
    }

    /// [`Router::durable_unsubscribe`] by the subscription's queue name.
    pub fn durable_unsubscribe_queue(&self, queue: &str) -> bool {
        let address = Address {
            kind: DestinationKind::Queue,
            name: queue.into(),
            temp_owner: None,
            owner_name: None,
        };
        let removed = self
            .durables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address.name);
        let Some(d) = removed else { return false };
        drop(self.store.append(vec![LogEntry::Delete {
            key: meta_key(&address.name),
        }]));
        self.destinations
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address.name);
        let dropped: Vec<Arc<Message>> = d
            .queue
            .drain_waiting()
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        drop(self.log_acks(&d.queue, &dropped));
        // What it left in the store goes too, or it would come back at the
        // next start as an orphaned queue.
        self.drop_backlog(&d.queue, true);
        true
    }
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
