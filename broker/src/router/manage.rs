//! What the management API asks of the router: find a destination by name,
//! purge it, delete it, list subscriptions by connection and durable
//! subscriptions, and reach the connection registry. Sending and browsing
//! use the ordinary entry points ([`Router::send`], [`Destination::browse`]),
//! so an administrator's message is scheduled, prioritised and expired like
//! any producer's.
//!
//! Lock order, as everywhere in the router: the destination map lock is
//! never held while a destination's own lock is taken.

use super::subscription::SubscriptionState;
use super::{
    ack_entries, durable, AckMode, ConnectionId, Destination, DestinationKind, Message, Router,
};
use crate::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use thiserror::Error;

/// Why a management operation was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ManageError {
    /// Subscribers still consume it: close them (or their connections) first.
    #[error(
        "{name} has {consumers} consumer(s): close their connections or unsubscribe them first"
    )]
    InUse {
        /// The destination.
        name: String,
        /// Its subscriptions at the time.
        consumers: usize,
    },
}

/// One subscription as the management API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    /// Broker-wide subscription id.
    pub id: u64,
    /// The connection that owns it.
    pub connection: ConnectionId,
    /// The client's name for it (STOMP `id`, native link name).
    pub tag: String,
    /// The destination it consumes.
    pub destination: String,
    /// `auto`, `client` or `client-individual`.
    pub ack: &'static str,
    /// Most unacknowledged messages at once.
    pub prefetch: usize,
    /// Delivered, not yet acknowledged.
    pub unacked: usize,
    /// Topic subscriptions: messages waiting for this subscriber.
    pub backlog: usize,
    /// Its selector, if any.
    pub selector: Option<String>,
}

impl SubscriptionView {
    /// The view of `s`, a subscription on `destination`.
    pub(super) fn of(s: &SubscriptionState, destination: &str) -> SubscriptionView {
        SubscriptionView {
            id: s.consumer.subscription_id(),
            connection: s.consumer.connection,
            tag: s.consumer.tag.to_string(),
            destination: destination.to_owned(),
            ack: match s.consumer.ack {
                AckMode::Auto => "auto",
                AckMode::Client => "client",
                AckMode::ClientIndividual => "client-individual",
            },
            prefetch: s.prefetch,
            unacked: s.unacked.len(),
            backlog: s.backlog.len(),
            selector: s.selector.as_ref().map(|x| x.text().to_owned()),
        }
    }
}

/// One durable topic subscription as the management API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableView {
    /// `client-id` of the connection that made it.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// The topic (or pattern) it follows.
    pub topic: String,
    /// Its selector, if any.
    pub selector: Option<String>,
    /// The hidden queue holding its messages (the id to delete it by).
    pub queue: String,
    /// Messages waiting for the subscriber.
    pub waiting: usize,
    /// Whether a subscriber is connected now.
    pub active: bool,
}

impl Router {
    /// Open client connections.
    pub fn connections(&self) -> &Arc<Registry> {
        &self.connections
    }

    /// The destination with canonical name `name`, if it exists.
    pub fn lookup(&self, name: &str) -> Option<Arc<Destination>> {
        self.read().get(name).cloned()
    }

    /// Drops every message waiting in `destination` (messages delivered and
    /// not yet acknowledged stay with their consumers). Returns how many
    /// were dropped. Atomic with respect to publishing: each message is
    /// either dropped, or was delivered, or arrives after the purge.
    pub fn purge(&self, destination: &Arc<Destination>) -> usize {
        let dropped: Vec<_> = destination
            .drain_waiting()
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        let entries = ack_entries(destination, &dropped);
        if !entries.is_empty() {
            // Not waited for: a crash before the acks reach the disk brings
            // the purged messages back, which is the safe direction.
            drop(self.store.append(entries));
        }
        // Messages left in the store: counted now, read back and
        // acknowledged in the background a page at a time (see `refill`).
        dropped.len() + self.drop_backlog(destination, false)
    }

    /// Deletes `destination` and drops its waiting messages, refusing while
    /// it has consumers. A durable subscription's queue deletes the durable
    /// subscription. Returns the messages dropped.
    pub fn delete(&self, destination: &Arc<Destination>) -> Result<usize, ManageError> {
        let name = destination.name().to_owned();
        let in_use = |d: &Destination| {
            let consumers = d.snapshot().consumers;
            (consumers > 0).then(|| ManageError::InUse {
                name: name.clone(),
                consumers,
            })
        };
        if let Some(e) = in_use(destination) {
            return Err(e);
        }
        if name.starts_with(durable::PREFIX) {
            let waiting = destination.depth();
            self.durable_unsubscribe_queue(&name);
            return Ok(waiting);
        }
        let removed = {
            let mut map = self.destinations.write().unwrap_or_else(|e| e.into_inner());
            match map.get(name.as_str()) {
                Some(d) if Arc::ptr_eq(d, destination) => map.remove(name.as_str()),
                _ => None,
            }
        };
        let Some(removed) = removed else {
            return Ok(0); // deleted meanwhile
        };
        match removed.retire() {
            Ok(dropped) => {
                let entries = ack_entries(&removed, &dropped);
                if !entries.is_empty() {
                    // Not waited for, as in `purge`.
                    drop(self.store.append(entries));
                }
                Ok(dropped.len() + self.drop_backlog(&removed, true))
            }
            Err(consumers) => {
                // A subscriber that looked it up before the removal: put it
                // back (unless a new one of the same name exists by now).
                self.destinations
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name.as_str().into())
                    .or_insert(removed);
                Err(ManageError::InUse { name, consumers })
            }
        }
    }

    /// Hands a producer's message to `destination` or, when an
    /// administrator deleted it after the producer looked it up, to the
    /// destination of the same name, re-created (ActiveMQ's semantics: a
    /// delete drops the destination and its messages, a later send
    /// re-creates it). The message's store entry names the destination by
    /// name, so after a restart it is in the re-created destination, where
    /// it was before. Gives up (dropping the message and its store entry)
    /// when the destination cannot be re-created (destination limit), is a
    /// temporary one (never re-created), or is deleted again at every
    /// attempt.
    pub(super) fn publish_live(&self, destination: &Destination, message: Arc<Message>) {
        /// Bounded: each attempt follows a delete that raced with this send.
        const ATTEMPTS: usize = 4;
        let mut message = message;
        let mut successor: Option<Arc<Destination>> = None;
        for _ in 0..ATTEMPTS {
            let target = successor.as_deref().unwrap_or(destination);
            match target.try_publish(message) {
                Ok(()) => return,
                Err(m) => message = m,
            }
            let found = if destination.address.temp_owner.is_some() {
                // A deleted temporary destination is not re-created: its
                // owner may be gone, and nothing would ever remove it.
                self.lookup(destination.name())
            } else {
                self.destination(&destination.address, 0)
                    .map_err(|e| {
                        tracing::warn!(
                            destination = destination.name(),
                            error = %e,
                            "message for a deleted destination dropped: it could not be re-created"
                        );
                    })
                    .ok()
            };
            match found {
                Some(d) => successor = Some(d),
                None => break,
            }
        }
        // Its enqueue may be in the store already: cancel it, or the
        // message would come back at the next start.
        if self.stores(destination, &message) {
            drop(
                self.store
                    .append(ack_entries(destination, std::slice::from_ref(&message))),
            );
        }
    }

    /// Every subscription, grouped by connection.
    pub fn subscriptions_by_connection(&self) -> HashMap<ConnectionId, Vec<SubscriptionView>> {
        let mut out: HashMap<ConnectionId, Vec<SubscriptionView>> = HashMap::new();
        for d in self.destinations() {
            for s in d.subscriptions() {
                out.entry(s.connection).or_default().push(s);
            }
        }
        out
    }

    /// Every durable topic subscription, by queue name.
    pub fn durables(&self) -> Vec<DurableView> {
        let list: Vec<durable::Durable> = self
            .durables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out: Vec<DurableView> = list
            .into_iter()
            .map(|d| {
                let snap = d.queue.snapshot();
                DurableView {
                    client_id: d.client_id.to_string(),
                    name: d.name.to_string(),
                    topic: d.topic.to_string(),
                    selector: d.selector.as_ref().map(|s| s.text().to_owned()),
                    queue: d.queue.name().to_owned(),
                    waiting: snap.waiting,
                    active: snap.consumers > 0,
                }
            })
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        out
    }

    /// Deletes the durable subscription whose queue is `queue`, refusing
    /// while its subscriber is connected. `Ok(None)`: no such subscription;
    /// else the messages dropped.
    pub fn delete_durable(&self, queue: &str) -> Result<Option<usize>, ManageError> {
        let found = self
            .durables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(queue)
            .map(|d| d.queue.clone());
        let Some(q) = found else { return Ok(None) };
        let consumers = q.snapshot().consumers;
        if consumers > 0 {
            return Err(ManageError::InUse {
                name: queue.to_owned(),
                consumers,
            });
        }
        let waiting = q.depth();
        Ok(self.durable_unsubscribe_queue(queue).then_some(waiting))
    }

    /// Whether `kind` is the kind of `destination`.
    pub fn is_kind(destination: &Destination, kind: DestinationKind) -> bool {
        destination.kind() == kind
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::router::{Address, Delivery, DeliverySink, RouterConfig, SubscribeOptions};
    use crate::store::memory::MemoryStore;

    struct Discard;
    impl DeliverySink for Discard {
        fn deliver(&self, _: Delivery) {}
    }

    /// Counts what it is given.
    #[derive(Default)]
    struct Count(std::sync::atomic::AtomicUsize);
    impl DeliverySink for Count {
        fn deliver(&self, _: Delivery) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    fn router() -> Router {
        Router::new(RouterConfig::default(), Arc::new(MemoryStore))
    }

    #[test]
    fn purge_drops_waiting_messages_and_delete_refuses_while_consumed() {
        let r = router();
        let q = r
            .destination(&Address::parse("/queue/a", 1).unwrap(), 1)
            .unwrap();
        for _ in 0..5 {
            r.publish_empty(&q);
        }
        assert_eq!(r.purge(&q), 5);
        assert_eq!(q.waiting_len(), 0);
        r.publish_empty(&q);
        let c = r.subscribe(
            q.clone(),
            1,
            "s".into(),
            AckMode::ClientIndividual,
            SubscribeOptions::default(),
            Arc::new(Discard),
        );
        assert_eq!(
            r.delete(&q),
            Err(ManageError::InUse {
                name: "/queue/a".into(),
                consumers: 1
            })
        );
        let subs = r.subscriptions_by_connection();
        assert_eq!(subs[&1].len(), 1);
        assert_eq!(subs[&1][0].unacked, 1);
        r.unsubscribe(&c);
        assert_eq!(r.delete(&q), Ok(1));
        assert!(r.lookup("/queue/a").is_none());
    }

    #[test]
    fn a_send_through_a_deleted_destination_re_creates_it() {
        let r = router();
        let stale = r
            .destination(&Address::parse("/queue/gone", 1).unwrap(), 1)
            .unwrap();
        r.publish_empty(&stale);
        assert_eq!(r.delete(&stale), Ok(1));
        assert!(stale.is_deleted());
        assert!(r.lookup("/queue/gone").is_none());
        // A producer that looked it up before the delete sends now: the
        // message goes to a new destination of the same name, not into the
        // deleted one.
        r.publish_empty(&stale);
        let fresh = r.lookup("/queue/gone").unwrap();
        assert!(!Arc::ptr_eq(&fresh, &stale));
        assert_eq!(fresh.waiting_len(), 1);
        assert_eq!(stale.waiting_len(), 0);
        assert!(!fresh.is_deleted());
    }

    #[test]
    fn a_deleted_temporary_destination_is_not_re_created() {
        let r = router();
        let stale = r
            .destination(&Address::parse("/temp-queue/t", 1).unwrap(), 1)
            .unwrap();
        let name = stale.name().to_owned();
        assert_eq!(r.delete(&stale), Ok(0));
        r.publish_empty(&stale);
        assert!(r.lookup(&name).is_none());
        assert_eq!(stale.waiting_len(), 0);
    }

    #[test]
    fn a_subscriber_that_looked_a_destination_up_before_its_delete_gets_later_sends() {
        let r = router();
        let address = Address::parse("/queue/raced", 1).unwrap();
        let stale = r.destination(&address, 1).unwrap();
        // The delete lands between the subscriber's lookup and its subscribe.
        assert_eq!(r.delete(&stale), Ok(0));
        let got = Arc::new(Count::default());
        let c = r.subscribe(
            stale.clone(),
            1,
            "s".into(),
            AckMode::Auto,
            SubscribeOptions::default(),
            got.clone(),
        );
        let live = r.lookup("/queue/raced").unwrap();
        assert!(
            Arc::ptr_eq(&c.destination, &live),
            "attached to the deleted one"
        );
        assert_eq!(stale.snapshot().consumers, 0);
        // A producer's later send (it looks the name up) reaches it.
        let sent = r.destination(&address, 2).unwrap();
        r.publish_empty(&sent);
        assert_eq!(got.get(), 1);
        assert!(matches!(r.delete(&live), Err(ManageError::InUse { .. })));
    }

    /// The same race, run for real: a subscribe and a delete started
    /// together, each round; whichever wins, the subscriber gets the send
    /// that follows.
    #[test]
    fn subscribes_racing_deletes_always_end_on_the_live_destination() {
        let r = router();
        let mut deleted = 0;
        for round in 0..300 {
            // A queue per round: an unsubscribed consumer's unsettled
            // message goes back to its queue.
            let address = Address::parse(&format!("/queue/raced.{round}"), 1).unwrap();
            let stale = r.destination(&address, 1).unwrap();
            let got = Arc::new(Count::default());
            let start = std::sync::Barrier::new(2);
            let (consumer, delete) = std::thread::scope(|s| {
                let subscriber = s.spawn(|| {
                    start.wait();
                    // Every other round the subscriber starts a little
                    // late, so that the delete wins some rounds even when
                    // a loaded machine's scheduler always wakes this thread
                    // first (one run in several had no delete win).
                    if round % 2 == 1 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    r.subscribe(
                        stale.clone(),
                        1,
                        "s".into(),
                        AckMode::Auto,
                        SubscribeOptions::default(),
                        got.clone(),
                    )
                });
                start.wait();
                let delete = r.delete(&stale);
                (subscriber.join().unwrap(), delete)
            });
            deleted += usize::from(delete.is_ok());
            let sent = r.destination(&address, 2).unwrap();
            r.publish_empty(&sent);
            assert_eq!(
                got.get(),
                1,
                "round {round}: the send did not reach the subscriber"
            );
            r.unsubscribe(&consumer);
        }
        // Both orders happen; the test is about those where the delete won.
        assert!(deleted > 0, "no delete won the race in 300 rounds");
    }
}
