//! The router owns destination state: which destinations exist, what each one
//! holds, who subscribes and how much credit they have. Sessions of any
//! protocol call it with typed requests; it never touches a socket and knows
//! no wire format. Persistent state changes are appended to the [`Store`].
//!
//! - [`address`]: destination names.
//! - [`destination`]: one queue or topic and its dispatch logic.
//! - [`subscription`]: consumers, ack modes, credit.
//! - [`pending`]: the priority-ordered waiting list.
//! - [`delivery_marks`]: which messages are stored, and recording their
//!   deliveries before consumers see them.
//! - [`delivery`]: deliveries and the sinks they go to (the message model
//!   itself is [`crate::message`], shared with the store).
//! - [`manage`]: what the management API does (purge, delete, browse).
//! - [`queue_wildcard`]: wildcard subscriptions on queues (`/queue/a.>`),
//!   and [`shared_window`], their one prefetch window over all queues.

pub mod address;
pub mod dead_letter;
pub mod delivery;
pub mod delivery_marks;
pub mod destination;
pub mod durable;
pub mod manage;
pub mod pending;
pub mod queue_wildcard;
pub mod scheduler;
pub mod shared_window;
pub mod subscription;
#[cfg(test)]
mod tests;

pub use crate::message::{now_ms, Body, BodySource, Message, PageError, DEFAULT_PRIORITY};
pub use address::{Address, DestinationKind, ALLOWED_PREFIXES};
pub use dead_letter::{DeadLetterPolicy, NackPolicy};
pub use delivery::{Delivery, DeliverySink};
pub use destination::{AckError, Destination, DestinationSnapshot};
pub use subscription::{
    AckMode, ConnectionId, Consumer, LinkFlow, SubscribeOptions, SubscriptionId,
};

use crate::store::{Commit, LogEntry, LogHold, Store};
use dead_letter::{DeadLetter, Outcast};
use scheduler::{Schedule, Scheduled};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use subscription::SubscriptionState;
use thiserror::Error;
use tokio::sync::mpsc;

/// Router settings, taken from the `[destinations]` and `[limits]` config.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Node name, part of every message id.
    pub node: String,
    /// Per-destination producer flow control threshold, bytes.
    pub memory_limit: usize,
    /// Messages waiting on a queue with consumers before producers pause.
    pub flow_control_window: usize,
    /// Default prefetch for queue subscriptions.
    pub queue_prefetch: usize,
    /// Default prefetch for topic subscriptions (also each topic
    /// subscriber's backlog limit).
    pub topic_prefetch: usize,
    /// Most destinations that may exist at once.
    pub max_destinations: usize,
    /// Most messages a durable subscription holds while its subscriber is away.
    pub durable_limit: usize,
    /// At that limit, drop the oldest message (else producers wait).
    pub durable_drop_oldest: bool,
    /// Redelivery limits and dead-letter queues.
    pub dead_letter: DeadLetterPolicy,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            node: "ferromq".into(),
            memory_limit: 64 << 20,
            flow_control_window: 1000,
            queue_prefetch: 1000,
            topic_prefetch: 32766,
            max_destinations: 10_000,
            durable_limit: 100_000,
            durable_drop_oldest: false,
            dead_letter: DeadLetterPolicy::default(),
        }
    }
}

/// Errors a session reports to its client.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RouterError {
    /// Not a destination name we accept.
    #[error("Illegal destination name: [{0}] -- ferromq destinations must begin with one of: {ALLOWED_PREFIXES}")]
    IllegalDestination(String),
    /// Another connection's temporary destination, or one that is gone.
    #[error("temporary destination {0} does not exist or belongs to another connection")]
    TemporaryDestination(String),
    /// `max_destinations` reached.
    #[error("destination limit of {0} reached")]
    TooManyDestinations(usize),
    /// Bad or refused scheduling headers.
    #[error("{0}")]
    Scheduling(String),
    /// ACK/NACK of something not delivered or already acknowledged.
    #[error("unexpected ACK/NACK for message-id [{0}]: it is not awaiting acknowledgement on this subscription")]
    NotDelivered(String),
}

/// The router. One per broker, shared by every session.
pub struct Router {
    config: RouterConfig,
    store: Arc<dyn Store>,
    /// Read-mostly: lookups take the read lock; creating or deleting a
    /// destination takes the write lock briefly. Never held while locking a
    /// destination's own state.
    destinations: RwLock<HashMap<Arc<str>, Arc<Destination>>>,
    next_seq: AtomicU64,
    next_subscription: AtomicU64,
    next_connection: AtomicU64,
    dead_letter_policy: Arc<DeadLetterPolicy>,
    /// Topic subscriptions with `*`/`>` patterns: each publish to a topic
    /// also goes to the patterns it matches. `has_wildcards` lets publishing
    /// skip the lock when there are none.
    wildcards: RwLock<Vec<Arc<Destination>>>,
    has_wildcards: AtomicBool,
    /// Queue subscriptions with `*`/`>` patterns: each queue created joins
    /// the ones it matches. Lock order: after the destination map.
    queue_wildcards: RwLock<Vec<Arc<queue_wildcard::WildcardSubscription>>>,
    /// Messages waiting for their scheduled time.
    scheduler: Arc<scheduler::Scheduler>,
    /// Durable topic subscriptions by hidden queue name. `has_durables`
    /// lets topic publishing skip the lock when there are none.
    durables: RwLock<HashMap<Arc<str>, durable::Durable>>,
    has_durables: AtomicBool,
    dead_letters: mpsc::UnboundedSender<Outcast>,
    /// Taken by [`Router::run_dead_letters`].
    dead_letter_rx: Mutex<Option<mpsc::UnboundedReceiver<Outcast>>>,
    /// Open client connections, for the management API (see [`manage`]).
    connections: Arc<crate::registry::Registry>,
}

impl Router {
    /// A router with no destinations.
    pub fn new(config: RouterConfig, store: Arc<dyn Store>) -> Router {
        let (dead_letters, rx) = mpsc::unbounded_channel();
        Router {
            dead_letter_policy: Arc::new(config.dead_letter.clone()),
            wildcards: RwLock::new(Vec::new()),
            has_wildcards: AtomicBool::new(false),
            queue_wildcards: RwLock::new(Vec::new()),
            scheduler: Arc::default(),
            durables: RwLock::new(HashMap::new()),
            has_durables: AtomicBool::new(false),
            dead_letters,
            dead_letter_rx: Mutex::new(Some(rx)),
            connections: Arc::default(),
            config,
            store,
            destinations: RwLock::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
            next_subscription: AtomicU64::new(1),
            next_connection: AtomicU64::new(1),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// A fresh connection id.
    pub fn connection_id(&self) -> ConnectionId {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh message sequence number.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Looks a destination up, creating it on first use. A temporary
    /// destination is created only by its owner.
    pub fn destination(
        &self,
        address: &Address,
        conn: ConnectionId,
    ) -> Result<Arc<Destination>, RouterError> {
        if let Some(d) = self.read().get(&address.name) {
            return Ok(d.clone());
        }
        if address.temp_owner.is_some_and(|owner| owner != conn) {
            return Err(RouterError::TemporaryDestination(address.name.to_string()));
        }
        let mut map = self.destinations.write().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = map.get(&address.name) {
            return Ok(d.clone());
        }
        if map.len() >= self.config.max_destinations {
            return Err(RouterError::TooManyDestinations(
                self.config.max_destinations,
            ));
        }
        let backlog = self.config.topic_prefetch.max(1);
        let d = Arc::new(Destination::new(
            address.clone(),
            self.config.memory_limit,
            self.config.flow_control_window,
            backlog,
            self.dead_letter_policy.clone(),
            self.dead_letters.clone(),
        ));
        map.insert(address.name.clone(), d.clone());
        if address.is_wildcard() && address.kind == DestinationKind::Topic {
            // Lock order: the destination map, then the wildcard list.
            self.wildcards
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(d.clone());
            self.has_wildcards.store(true, Ordering::Release);
        }
        drop(map);
        // A queue created after a wildcard subscription matching it: the
        // subscription consumes it too (with no lock held: joining
        // dispatches the queue's messages to it).
        self.join_wildcards(&d);
        Ok(d)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Destination>>> {
        self.destinations.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts recovered messages back (at start, before any listener opens)
    /// and continues sequence numbers after the highest recovered one.
    pub fn restore(&self, recovered: crate::store::Recovered) -> Result<(), RouterError> {
        self.next_seq
            .fetch_max(recovered.next_seq, Ordering::Relaxed);
        // Durable subscriptions first, so their queues exist (with the
        // topic they show) before their messages come back.
        for (key, value) in &recovered.meta {
            if key.starts_with("durable/") {
                match durable::Definition::decode(value) {
                    Some(definition) => self.restore_durable(definition)?,
                    None => {
                        tracing::warn!(%key, "unreadable durable subscription definition skipped")
                    }
                }
            }
        }
        // Expiry is the router's decision, written as entries: the store
        // applies its log without a clock, so it brings expired messages
        // back like the rest and the router drops them here (as before
        // the log kept entries, they are not dead-lettered at restart).
        let now = now_ms();
        let mut expired = Vec::new();
        for (message, redeliveries) in recovered.messages {
            if message.is_expired(now) {
                expired.push(LogEntry::Ack {
                    destination: message.destination.clone(),
                    seq: message.seq,
                });
                continue;
            }
            // A durable subscription's queue is found by name; its binding
            // to the topic returns when its subscriber does.
            let address = if durable::is_durable_queue(&message.destination) {
                Address {
                    kind: DestinationKind::Queue,
                    name: message.destination.clone(),
                    temp_owner: None,
                    owner_name: None,
                }
            } else {
                Address::parse(&message.destination, 0)?
            };
            let destination = self.destination(&address, address.temp_owner.unwrap_or(0))?;
            // A stored scheduled message resumes its schedule; its delivery
            // count is the number of times it already fired.
            if let Ok(Some(schedule)) = Schedule::of(&message) {
                self.scheduler
                    .insert(Scheduled {
                        template: message,
                        destination,
                        schedule,
                        fired: redeliveries,
                        returning: None,
                    })
                    .map_err(RouterError::Scheduling)?;
                continue;
            }
            destination.restore(message, redeliveries);
        }
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "expired stored messages dropped");
            drop(self.store.append(expired));
        }
        Ok(())
    }

    /// Every destination, for metrics and the admin API.
    pub fn destinations(&self) -> Vec<Arc<Destination>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    }

    /// Whether destination `name` (canonical) exists: ACL checks ask
    /// before a SEND or SUBSCRIBE would create it.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Number of destinations, for metrics.
    pub fn destination_count(&self) -> usize {
        self.read().len()
    }

    /// Publishes a message now, whatever its headers say about scheduling.
    /// Producers go through [`Router::send`] (which calls this for an
    /// unscheduled message); the router uses it for messages it makes
    /// itself (scheduled firings, dead letters).
    ///
    /// Persistent messages are appended to the store *before* they become
    /// visible to consumers, so the log always holds an enqueue before its
    /// ack; the returned [`Commit`] says when the enqueue is durable (the
    /// session waits on it before sending a receipt).
    pub(crate) fn publish(&self, destination: &Destination, message: Message) -> Commit {
        let message = Arc::new(message);
        // Kept until the message is dispatched (see `Store::append_for_dispatch`).
        let (commit, _dispatching) = self.store_enqueue(destination, &message);
        if commit.is_failed() {
            // Refused (store full or closed): the message never existed.
            return commit;
        }
        if destination.kind() == DestinationKind::Topic
            && self.has_wildcards.load(Ordering::Acquire)
        {
            for w in self
                .wildcards
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                if address::wildcard_matches(w.name(), destination.name()) {
                    w.publish(message.clone());
                }
            }
        }
        let commit = if destination.kind() == DestinationKind::Topic
            && self.has_durables.load(Ordering::Acquire)
        {
            self.publish_to_durables(destination.name(), &message)
        } else {
            commit
        };
        destination.publish(message);
        commit
    }

    /// Copies a topic message into every durable subscription following the
    /// topic. Persistent copies are appended to the store in one batch, so
    /// one commit covers them all (the producer's receipt waits on it).
    fn publish_to_durables(&self, topic: &str, message: &Arc<Message>) -> Commit {
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
        let stored: Vec<LogEntry> = copies
            .iter()
            .filter(|(_, m)| m.persistent)
            .map(|(_, m)| LogEntry::Enqueue { message: m.clone() })
            .collect();
        let commit = if stored.is_empty() {
            Commit::Done
        } else {
            self.store.append(stored)
        };
        if commit.is_failed() {
            return commit;
        }
        for (queue, copy) in copies {
            self.enforce_durable_limit(&queue);
            queue.publish(copy);
        }
        commit
    }

    /// `drop-oldest`: makes room in a full durable subscription by dropping
    /// its oldest waiting message. (`block` instead slows producers, through
    /// [`Router::wait_for_space`].)
    fn enforce_durable_limit(&self, queue: &Destination) {
        if self.config.durable_drop_oldest && queue.waiting_len() >= self.config.durable_limit {
            if let Some(old) = queue.drop_oldest() {
                drop(self.log_acks(queue, &[old]));
            }
        }
    }

    /// Producer flow control for a send to `destination`: waits while it,
    /// or a durable subscription following it (policy `block`), is full.
    pub async fn wait_for_space(&self, destination: &Destination) {
        if destination.is_over_limit() {
            destination.wait_for_space().await;
        }
        if destination.kind() != DestinationKind::Topic
            || !self.has_durables.load(Ordering::Acquire)
            || self.config.durable_drop_oldest
        {
            return;
        }
        let full: Vec<Arc<Destination>> = self
            .durables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|d| d.follows(destination.name()))
            .filter(|d| {
                d.queue.waiting_len() >= self.config.durable_limit || d.queue.is_over_limit()
            })
            .map(|d| d.queue.clone())
            .collect();
        for queue in full {
            queue.wait_for_room(self.config.durable_limit).await;
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
        let address = durable::queue_address(client_id, name, &topic.name);
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
            for (message, redeliveries) in old.drain_waiting() {
                queue.restore(message, redeliveries);
            }
        }
        let durable = durable::Durable {
            client_id: client_id.into(),
            name: name.into(),
            topic: topic.name.clone(),
            selector,
            queue: queue.clone(),
        };
        // The definition is logged before any message is copied into the
        // queue, so a restart never finds messages of an unknown subscription.
        let definition = durable::Definition {
            client_id: client_id.to_string(),
            name: name.to_string(),
            topic: topic.name.to_string(),
            selector: durable.selector.as_ref().map(|s| s.text().to_string()),
        };
        drop(self.store.append(vec![LogEntry::Put {
            key: durable::meta_key(&address.name),
            value: definition.encode(),
        }]));
        self.install_durable(durable);
        Ok(queue)
    }

    fn install_durable(&self, durable: durable::Durable) {
        self.durables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(durable.queue.address.name.clone(), durable);
        self.has_durables.store(true, Ordering::Release);
    }

    /// Rebuilds a durable subscription from its stored definition.
    fn restore_durable(&self, definition: durable::Definition) -> Result<(), RouterError> {
        let topic = Address::parse(&definition.topic, 0)?;
        let selector = match &definition.selector {
            Some(text) => Some(Arc::new(
                crate::selector::Selector::parse(text)
                    .map_err(|e| RouterError::Scheduling(e.to_string()))?,
            )),
            None => None,
        };
        let address = durable::queue_address(&definition.client_id, &definition.name, &topic.name);
        let queue = self.destination(&address, 0)?;
        self.install_durable(durable::Durable {
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
        self.durable_unsubscribe_queue(&durable::queue_address(client_id, name, "").name)
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
            key: durable::meta_key(&address.name),
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
        true
    }

    /// Sends a producer's message: the one entry point every protocol uses
    /// (STOMP SEND, native transfer, a committed transaction's sends), so
    /// every header means the same whichever protocol carried it. Scheduled
    /// when it carries scheduling headers (`AMQ_SCHEDULED_DELAY`, ...),
    /// else published at once. See `Router::publish` for the durability
    /// rule.
    pub fn send(
        &self,
        destination: &Arc<Destination>,
        message: Message,
    ) -> Result<Commit, RouterError> {
        let Some(schedule) = Schedule::of(&message).map_err(RouterError::Scheduling)? else {
            return Ok(self.publish(destination, message));
        };
        let template = Arc::new(message);
        let (commit, _) = self.store_enqueue(destination, &template);
        if commit.is_failed() {
            return Ok(commit);
        }
        self.scheduler
            .insert(Scheduled {
                template,
                destination: destination.clone(),
                schedule,
                fired: 0,
                returning: None,
            })
            .map_err(RouterError::Scheduling)?;
        Ok(commit)
    }

    /// Fires scheduled messages when they are due, until the router is
    /// dropped. Spawn once at start.
    pub async fn run_scheduler(self: Arc<Self>) {
        let weak = Arc::downgrade(&self);
        let scheduler = self.scheduler.clone();
        drop(self);
        loop {
            let next = {
                let Some(router) = weak.upgrade() else { return };
                let (due, next) = router.scheduler.take_due(now_ms());
                for entry in due {
                    router.fire(entry);
                }
                next
            };
            let wait = next.map(|t| t.saturating_sub(now_ms())).unwrap_or(60_000);
            let changed = scheduler.changed();
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(wait.max(1)), changed).await;
        }
    }

    /// Holds a message for its redelivery delay; it returns to its queue.
    fn delay_redelivery(&self, message: Arc<Message>, redeliveries: u32, wait: u64) {
        let Some(destination) = self.read().get(&message.destination).cloned() else {
            return; // the queue is gone (a temporary one whose owner left)
        };
        let entry = Scheduled {
            template: message.clone(),
            destination: destination.clone(),
            schedule: Schedule {
                delay: 0,
                period: 0,
                repeat: 0,
            },
            fired: 0,
            returning: Some((redeliveries, now_ms().saturating_add(wait))),
        };
        if self.scheduler.insert(entry).is_err() {
            // Scheduler full: redeliver now rather than lose it.
            destination.return_delayed(message, redeliveries);
        }
    }

    fn fire(&self, mut entry: Scheduled) {
        if let Some((redeliveries, _)) = entry.returning {
            entry
                .destination
                .return_delayed(entry.template, redeliveries);
            return;
        }
        match scheduler::fire(&entry.template, self.next_seq()) {
            Ok(copy) => drop(self.publish(&entry.destination, copy)),
            // The store cannot read the body back: this firing is lost,
            // the schedule goes on (the log line says which message).
            Err(e) => tracing::error!(
                seq = entry.template.seq,
                error = %e,
                "scheduled message not fired"
            ),
        }
        entry.fired += 1;
        let stored = self.stores(&entry.destination, &entry.template);
        if entry.fired <= entry.schedule.repeat {
            if stored {
                drop(self.store.append(vec![LogEntry::Delivered {
                    seq: entry.template.seq,
                    count: entry.fired,
                }]));
            }
            if let Err(e) = self.scheduler.insert(entry) {
                tracing::warn!(error = %e, "scheduled message dropped");
            }
        } else if stored {
            drop(self.store.append(vec![LogEntry::Ack {
                destination: entry.destination.address.name.clone(),
                seq: entry.template.seq,
            }]));
        }
    }

    /// Messages waiting in the scheduler.
    pub fn scheduled(&self) -> usize {
        self.scheduler.len()
    }

    /// Appends `message`'s enqueue when it is to be stored. Only queues that
    /// outlive their connection are stored: a topic message (durable
    /// subscriptions store their own copies) or a temporary queue's has
    /// nobody to come back to after a restart.
    fn store_enqueue(
        &self,
        destination: &Destination,
        message: &Arc<Message>,
    ) -> (Commit, LogHold) {
        if self.stores(destination, message) {
            self.store.append_for_dispatch(vec![LogEntry::Enqueue {
                message: message.clone(),
            }])
        } else {
            (Commit::Done, LogHold::none())
        }
    }

    /// Whether `message` sent to `destination` goes to the store (see
    /// [`delivery_marks::stores_messages_of`]).
    fn stores(&self, destination: &Destination, message: &Message) -> bool {
        message.persistent && delivery_marks::stores_messages_of(destination)
    }

    /// Adds a subscription. Messages may be delivered to `sink` before this
    /// returns, so a protocol that must answer first (STOMP's RECEIPT) holds
    /// the sink's deliveries until its answer is queued.
    pub fn subscribe(
        &self,
        destination: Arc<Destination>,
        connection: ConnectionId,
        tag: Arc<str>,
        ack: AckMode,
        options: SubscribeOptions,
        sink: Arc<dyn DeliverySink>,
    ) -> Arc<Consumer> {
        self.subscribe_with(destination, connection, tag, ack, options, sink, None)
    }

    /// Adds a credit-based subscription (a native protocol link): nothing is
    /// delivered until [`Router::flow`] grants credit, and each delivery
    /// uses one, on top of the prefetch window that bounds unacknowledged
    /// messages.
    pub fn subscribe_link(
        &self,
        destination: Arc<Destination>,
        connection: ConnectionId,
        tag: Arc<str>,
        ack: AckMode,
        options: SubscribeOptions,
        sink: Arc<dyn DeliverySink>,
    ) -> Arc<Consumer> {
        self.subscribe_with(destination, connection, tag, ack, options, sink, Some(0))
    }

    /// Grants a [`Router::subscribe_link`] subscription credit for
    /// `receiver_count + credit` deliveries in total (AMQP link credit);
    /// `drain` uses up what cannot be delivered now. Deliveries it allows
    /// reach the sink before this returns. `None` if the subscription is gone.
    pub fn flow(
        &self,
        consumer: &Consumer,
        receiver_count: u32,
        credit: u32,
        drain: bool,
    ) -> Option<LinkFlow> {
        if let Some(w) = &consumer.wildcard {
            return self.flow_wildcard(w, receiver_count, credit, drain);
        }
        consumer
            .destination
            .flow(consumer.id, receiver_count, credit, drain)
    }

    #[allow(clippy::too_many_arguments)] // the public entry points name them all
    fn subscribe_with(
        &self,
        destination: Arc<Destination>,
        connection: ConnectionId,
        tag: Arc<str>,
        ack: AckMode,
        options: SubscribeOptions,
        sink: Arc<dyn DeliverySink>,
        link_credit: Option<u32>,
    ) -> Arc<Consumer> {
        let prefetch = options.prefetch.unwrap_or(match destination.kind() {
            DestinationKind::Queue => self.config.queue_prefetch,
            DestinationKind::Topic => self.config.topic_prefetch,
        });
        if destination.kind() == DestinationKind::Queue && destination.address.is_wildcard() {
            return self.subscribe_wildcard(
                destination,
                connection,
                tag,
                ack,
                options,
                sink,
                prefetch,
                link_credit,
            );
        }
        let consumer = Arc::new(Consumer {
            id: self.next_subscription.fetch_add(1, Ordering::Relaxed),
            connection,
            destination: destination.clone(),
            tag,
            ack,
            wildcard: None,
        });
        // Deliveries of stored messages are recorded, so they come back
        // marked redelivered after a restart.
        let sink = delivery_marks::DeliveryMarks::wrap(sink, &destination, &self.store);
        let mut state = SubscriptionState::new(consumer.clone(), sink, prefetch);
        state.selector = options.selector;
        state.exclusive = options.exclusive;
        state.link_credit = link_credit;
        destination.subscribe(state);
        consumer
    }

    /// Ends a subscription; unacknowledged queue messages are redelivered.
    pub fn unsubscribe(&self, consumer: &Consumer) {
        if let Some(w) = &consumer.wildcard {
            return self.unsubscribe_wildcard(w);
        }
        consumer.destination.unsubscribe(consumer.id);
    }

    /// Whether `consumer` (any member, for a wildcard subscription) holds
    /// message `seq` unacknowledged.
    pub fn has_unacked(&self, consumer: &Consumer, seq: u64) -> bool {
        match &consumer.wildcard {
            Some(w) => self.wildcard_has_unacked(w, seq),
            None => consumer.destination.has_unacked(consumer.id, seq),
        }
    }

    /// Acknowledges (cumulatively for `client` mode).
    /// The [`Commit`] says when the ack is durable (an ACK's RECEIPT waits
    /// for it, so an acknowledged message never comes back).
    pub fn ack(&self, consumer: &Arc<Consumer>, seq: u64) -> Result<Commit, RouterError> {
        if let Some(w) = &consumer.wildcard {
            return self.ack_wildcard(w, consumer, seq);
        }
        let cumulative = consumer.ack == AckMode::Client;
        let acked = consumer
            .destination
            .ack(consumer.id, seq, cumulative)
            .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))?;
        Ok(self.log_acks(&consumer.destination, &acked))
    }

    /// Acknowledges exactly `seqs` (a committed transaction's acks, a native
    /// Disposition range). The [`Commit`] says when they are durable.
    pub fn ack_exact(&self, consumer: &Consumer, seqs: &[u64]) -> Commit {
        if let Some(w) = &consumer.wildcard {
            return self.ack_exact_wildcard(w, seqs);
        }
        self.ack_delivered(consumer, seqs)
    }

    /// Rejects (cumulatively for `client` mode): redelivered later.
    pub fn nack(&self, consumer: &Arc<Consumer>, seq: u64) -> Result<(), RouterError> {
        if let Some(w) = &consumer.wildcard {
            return self.nack_wildcard(w, consumer, seq);
        }
        let cumulative = consumer.ack == AckMode::Client;
        consumer
            .destination
            .nack(consumer.id, seq, cumulative)
            .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))
    }

    /// Rejects exactly `seqs` (a committed transaction's nacks).
    pub fn nack_exact(&self, consumer: &Consumer, seqs: &[u64]) {
        if let Some(w) = &consumer.wildcard {
            return self.nack_exact_wildcard(w, seqs);
        }
        for &seq in seqs {
            let _ = consumer.destination.nack(consumer.id, seq, false);
        }
    }

    /// A transactional ACK/NACK: frees credit now, applies at commit.
    pub fn hold(&self, consumer: &Arc<Consumer>, seq: u64) -> Result<Vec<u64>, RouterError> {
        if let Some(w) = &consumer.wildcard {
            return self.hold_wildcard(w, consumer, seq);
        }
        let cumulative = consumer.ack == AckMode::Client;
        consumer
            .destination
            .hold(consumer.id, seq, cumulative)
            .map_err(|_| RouterError::NotDelivered(self.message_id(seq)))
    }

    /// Undoes [`Router::hold`] for an aborted transaction.
    pub fn unhold(&self, consumer: &Consumer, seqs: &[u64]) {
        if let Some(w) = &consumer.wildcard {
            return self.unhold_wildcard(w, seqs);
        }
        consumer.destination.unhold(consumer.id, seqs);
    }

    /// Auto-ack deliveries that reached the socket: a writer's batch of
    /// `(consumer, seq)` pairs in write order ([`Router::ack_runs`]); empties
    /// the batch. Losing such an ack in a crash means a redelivery, which
    /// at-least-once allows, so nothing waits for its commit.
    pub fn settle_all_written(&self, written: &mut Vec<(Arc<Consumer>, u64)>) {
        drop(self.ack_runs(written));
        written.clear();
    }

    /// Acknowledges exactly the deliveries `delivered`, `(the delivery's
    /// consumer, seq)` pairs, with one router call per run of the same
    /// consumer (a writer's batch, a native Disposition range). One
    /// [`Commit`] per run.
    pub fn ack_runs(&self, delivered: &[(Arc<Consumer>, u64)]) -> Vec<Commit> {
        let mut commits = Vec::new();
        let mut seqs = Vec::new();
        let mut i = 0;
        while i < delivered.len() {
            let consumer = &delivered[i].0;
            seqs.clear();
            // By identity: a wildcard subscription's members share its tag.
            while i < delivered.len() && Arc::ptr_eq(&delivered[i].0, consumer) {
                seqs.push(delivered[i].1);
                i += 1;
            }
            commits.push(self.ack_delivered(consumer, &seqs));
        }
        commits
    }

    /// Acknowledges exactly `seqs`, all delivered on `consumer` (a delivery's
    /// own subscription: for a wildcard one, the member on the message's
    /// queue), under one destination lock.
    fn ack_delivered(&self, consumer: &Consumer, seqs: &[u64]) -> Commit {
        let acked = consumer.destination.ack_exact(consumer.id, seqs);
        self.log_acks(&consumer.destination, &acked)
    }

    /// Holds the store's log writer (see [`crate::store::Store::hold`]):
    /// what is appended until the guard drops is applied atomically.
    pub fn hold_log(&self) -> crate::store::LogHold {
        self.store.hold()
    }

    fn log_acks(&self, destination: &Destination, acked: &[Arc<Message>]) -> Commit {
        let entries = ack_entries(destination, acked);
        if entries.is_empty() {
            return Commit::Done;
        }
        // Auto-ack callers drop the commit: losing such an ack in a crash
        // means a redelivery, which at-least-once allows. An ACK frame with
        // a receipt waits for it.
        self.store.append(entries)
    }

    /// Moves dead letters to their DLQ and out of the store, until the
    /// router is dropped. Spawn once at start.
    pub async fn run_dead_letters(self: Arc<Self>) {
        let rx = self
            .dead_letter_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(mut rx) = rx else { return };
        // Hold only a weak reference while waiting, so the router can go.
        let weak = Arc::downgrade(&self);
        drop(self);
        while let Some(outcast) = rx.recv().await {
            let Some(router) = weak.upgrade() else { break };
            match outcast {
                Outcast::Dead(dead) => router.bury(dead),
                Outcast::Delayed {
                    message,
                    redeliveries,
                    wait,
                } => router.delay_redelivery(message, redeliveries, wait),
                Outcast::Wake(wildcard) => {
                    if let Some(w) = wildcard.upgrade() {
                        router.wake_wildcard(&w);
                    }
                }
            }
        }
    }

    fn bury(&self, dead: DeadLetter) {
        let mut entries = Vec::new();
        let mut moved = None;
        if dead.to_dlq {
            let dlq_name = self.dead_letter_policy.dlq_for(&dead.from);
            let address = Address::parse(&dlq_name, 0);
            if let Ok(dlq) = address.and_then(|a| self.destination(&a, 0)) {
                let m = &dead.message;
                let body = match m.body.copy() {
                    Ok(body) => body,
                    Err(e) => {
                        // Not acknowledged either: the stored original comes
                        // back after a restart rather than being lost.
                        tracing::error!(seq = m.seq, error = %e, "dead letter not moved");
                        return;
                    }
                };
                let mut headers = m.headers.without(&["original-destination", "dlq-reason"]);
                headers.push("original-destination", &m.destination);
                headers.push("dlq-reason", &dead.cause.describe());
                let copy = Arc::new(Message {
                    seq: self.next_seq(),
                    destination: dlq.address.name.clone(),
                    persistent: m.persistent,
                    priority: m.priority,
                    // A message expired on arrival would expire again here.
                    expires: 0,
                    timestamp: m.timestamp,
                    headers,
                    body,
                });
                if copy.persistent {
                    entries.push(LogEntry::Enqueue {
                        message: copy.clone(),
                    });
                }
                moved = Some((dlq, copy));
            }
        }
        if dead.message.persistent {
            entries.push(LogEntry::Ack {
                destination: dead.from.clone(),
                seq: dead.message.seq,
            });
        }
        if !entries.is_empty() {
            // The DLQ copy and the ack of the original go in one append, in
            // that order: a crash between them leaves a duplicate in the
            // DLQ, never a loss.
            drop(self.store.append(entries));
        }
        // Published after the append, as `publish` does: the store has
        // marked the body as its own before the DLQ accounts for it.
        if let Some((dlq, copy)) = moved {
            dlq.publish(copy);
        }
    }

    /// Removes the temporary destinations `conn` owned. Called when it closes,
    /// after its subscriptions are gone.
    pub fn drop_temporaries(&self, conn: ConnectionId) {
        let mut map = self.destinations.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, d| d.address.temp_owner != Some(conn));
        self.wildcards
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| d.address.temp_owner != Some(conn));
    }

    /// Publishes an empty non-persistent message to `destination` (unit
    /// tests of the router's users).
    #[cfg(test)]
    pub(crate) fn publish_empty(&self, destination: &Destination) {
        let message = Message {
            seq: self.next_seq(),
            destination: destination.address.name.clone(),
            persistent: false,
            priority: DEFAULT_PRIORITY,
            expires: 0,
            timestamp: 0,
            headers: Default::default(),
            body: Default::default(),
        };
        drop(self.publish(destination, message));
    }

    /// The message id clients see for sequence number `seq`.
    pub fn message_id(&self, seq: u64) -> String {
        let mut id = self.message_id_prefix();
        id.push_str(itoa::Buffer::new().format(seq));
        id
    }

    /// What every message id of this node starts with: `ID:<node>-`.
    pub fn message_id_prefix(&self) -> String {
        format!("ID:{}-", self.config.node)
    }

    /// The sequence number inside a message id made by [`Router::message_id`].
    pub fn seq_of_message_id(id: &str) -> Option<u64> {
        id.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
    }
}

/// The store entries acknowledging `acked` (its persistent messages) on
/// `destination`.
fn ack_entries(destination: &Destination, acked: &[Arc<Message>]) -> Vec<LogEntry> {
    acked
        .iter()
        .filter(|m| m.persistent)
        .map(|m| LogEntry::Ack {
            destination: destination.address.name.clone(),
            seq: m.seq,
        })
        .collect()
}
