//! The router owns destination state: which destinations exist, what each one
//! holds, who subscribes and how much credit they have. Sessions of any
//! protocol call it with typed requests; it never touches a socket and knows
//! no wire format. Persistent state changes are appended to the [`Store`].
//!
//! This file keeps the registry of destinations (lookup, creation,
//! temporary ones) and message ids; each other concept has its own file,
//! with its own `impl Router` block:
//!
//! - [`address`]: destination names.
//! - `publish`: producers' entry point ([`Router::send`]), topic fan-out
//!   and producer flow control.
//! - `consume`: subscribing, credit, acknowledging and rejecting.
//! - [`durable`]: durable topic subscriptions.
//! - [`scheduler`]: scheduled delivery and redelivery delays.
//! - [`dead_letter`]: dead letters, and the errand task that runs what
//!   destinations cannot do under their own lock (dead letters, redelivery
//!   delays, wake-ups of wildcard queue subscriptions).
//! - `restore`: rebuilding the router from what the store recovered.
//! - `refill`: reading persistent queues' backlogs back from the store
//!   (the queue window itself is [`destination::backlog`]).
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
mod consume;
pub mod dead_letter;
pub mod delivery;
pub mod delivery_marks;
pub mod destination;
pub mod durable;
pub mod manage;
pub mod pending;
mod publish;
pub mod queue_wildcard;
mod refill;
mod restore;
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
    AckMode, ConnectionId, Consumer, ConsumerKind, LinkFlow, SubscribeOptions, SubscriptionId,
};

use crate::store::Store;
use consume::ack_entries;
use dead_letter::Errand;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
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
    /// Waiting messages a persistent queue holds in memory before it
    /// leaves further persistent ones to the store (`destinations.queue_window`).
    pub queue_window: usize,
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
            queue_window: 5000,
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
    errands: mpsc::UnboundedSender<Errand>,
    /// Names of removed queues whose stored messages are still being
    /// dropped, with how many drops run (see `Router::drop_backlog`).
    /// Lock order: after the destination map (creating a queue asks it
    /// under the map's lock); never with a destination's lock held.
    draining: Mutex<HashMap<Arc<str>, usize>>,
    /// Taken by [`Router::run_errands`].
    errand_rx: Mutex<Option<mpsc::UnboundedReceiver<Errand>>>,
    /// Open client connections, for the management API (see [`manage`]).
    connections: Arc<crate::registry::Registry>,
}

impl Router {
    /// A router with no destinations.
    pub fn new(config: RouterConfig, store: Arc<dyn Store>) -> Router {
        let (errands, rx) = mpsc::unbounded_channel();
        Router {
            dead_letter_policy: Arc::new(config.dead_letter.clone()),
            wildcards: RwLock::new(Vec::new()),
            has_wildcards: AtomicBool::new(false),
            queue_wildcards: RwLock::new(Vec::new()),
            scheduler: Arc::default(),
            durables: RwLock::new(HashMap::new()),
            has_durables: AtomicBool::new(false),
            errands,
            draining: Mutex::new(HashMap::new()),
            errand_rx: Mutex::new(Some(rx)),
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
        // Only queues whose messages are stored can leave them there.
        let window = (self.store.keeps_backlog()
            && address.kind == DestinationKind::Queue
            && !address.is_temporary())
        .then_some(self.config.queue_window);
        // A predecessor of this name still having its stored messages
        // dropped: read no lane until that is done (see `refill`). Lock
        // order: the destination map, then `draining`.
        let held = window.is_some() && self.is_draining(&address.name);
        let d = Arc::new(
            Destination::new(
                address.clone(),
                self.config.memory_limit,
                self.config.flow_control_window,
                backlog,
                window,
                self.dead_letter_policy.clone(),
                self.errands.clone(),
            )
            .with_backlog_held(held),
        );
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
