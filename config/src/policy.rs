//! Schema of the resource and behaviour tables: `[limits]`,
//! `[destinations]`, `[store]` and `[log]`, with their compiled-in defaults.
//! Every bound the broker enforces is a named key here.

use serde::{Deserialize, Serialize};

use crate::units::{ByteSize, Millis};

/// `[limits]`: per-broker and per-connection caps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections across all listeners.
    pub max_connections: u32,
    /// Open connections from one client IP address.
    pub max_connections_per_ip: u32,
    /// Subscriptions on one connection.
    pub max_subscriptions_per_connection: u32,
    /// Destinations (queues and topics) that may exist at once.
    pub max_destinations: u32,
    /// Messages delivered but not yet acknowledged on one connection.
    pub max_unacked_per_connection: u32,
    /// Bytes queued for one connection's writer before delivery to it pauses.
    pub outbound_buffer: ByteSize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 1000,
            max_subscriptions_per_connection: 1000,
            max_destinations: 10_000,
            max_unacked_per_connection: 100_000,
            outbound_buffer: ByteSize::mib(8),
        }
    }
}

/// What a STOMP `NACK` does with the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NackPolicy {
    /// Redeliver until `max_redeliveries`, then dead-letter.
    #[default]
    Redeliver,
    /// Dead-letter at once.
    DeadLetter,
}

/// What a durable subscription does when it holds `durable_subscription_limit`
/// messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DurableSubscriptionPolicy {
    /// Block producers of the topic (flow control).
    #[default]
    Block,
    /// Discard the oldest pending message.
    DropOldest,
}

/// `[destinations]`: policy applied to every queue and topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestinationsConfig {
    /// Bytes pending on one destination before producer flow control starts.
    pub memory_limit: ByteSize,
    /// Messages waiting on a queue with consumers before its producers
    /// pause (0 = off): keeps latency bounded when consumers fall behind.
    pub flow_control_window: u32,
    /// Default prefetch (unacked deliveries) for a queue subscription.
    pub queue_prefetch: u32,
    /// Waiting messages a persistent queue holds in memory; further
    /// persistent messages stay in the store and are read back in order as
    /// consumers drain the queue.
    pub queue_window: u32,
    /// Default prefetch for a topic subscription.
    pub topic_prefetch: u32,
    /// Redeliveries before a message is dead-lettered.
    pub max_redeliveries: u32,
    /// Shared dead-letter queue name (without `/queue/`).
    pub dead_letter_queue: String,
    /// `true`: dead-letter each queue to its own `DLQ.<name>` instead.
    pub individual_dead_letter: bool,
    /// What `NACK` does.
    pub nack: NackPolicy,
    /// Delay before the first redelivery.
    pub redelivery_delay: Millis,
    /// Each further redelivery waits `redelivery_backoff` times longer.
    pub redelivery_backoff: f64,
    /// `true`: expired messages go to the dead-letter queue instead of vanishing.
    pub expired_to_dlq: bool,
    /// Messages a durable subscription holds while its subscriber is away.
    pub durable_subscription_limit: u32,
    /// What happens when that limit is reached.
    pub durable_subscription_policy: DurableSubscriptionPolicy,
}

impl Default for DestinationsConfig {
    fn default() -> Self {
        Self {
            memory_limit: ByteSize::mib(64),
            flow_control_window: 1000,
            queue_prefetch: 1000,
            queue_window: 5000,
            topic_prefetch: 32766,
            max_redeliveries: 6,
            dead_letter_queue: "ActiveMQ.DLQ".to_owned(),
            individual_dead_letter: false,
            nack: NackPolicy::Redeliver,
            redelivery_delay: Millis(0),
            redelivery_backoff: 1.0,
            expired_to_dlq: false,
            durable_subscription_limit: 100_000,
            durable_subscription_policy: DurableSubscriptionPolicy::Block,
        }
    }
}

/// When the store makes persistent messages durable before acknowledging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreSync {
    /// Flush to disk before every receipt: nothing acknowledged is ever lost.
    #[default]
    Always,
    /// Group commit: flush at most every `batch_delay`, receipts wait for it.
    Batch,
    /// Never wait for a flush: fastest, loses recent messages on a crash.
    Never,
}

/// `[store]`: the durable message store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Durability mode.
    pub sync: StoreSync,
    /// Longest wait to gather a group commit (`sync = "batch"` only).
    pub batch_delay: Millis,
    /// Bytes of persistent message bodies kept in memory; beyond it they
    /// are paged out and read back from disk when dispatched.
    pub memory_limit: ByteSize,
    /// Bytes the store may use on disk before producers are refused.
    pub disk_limit: ByteSize,
    /// Compact the store's files (at start, and while the broker is idle)
    /// once at least this much disk can be won back.
    pub compact_threshold: ByteSize,
    /// Bodies of persistent messages up to this size stay inline in the
    /// store's record; larger ones are appended to body files next to it
    /// (written once, not rewritten with sled's pages).
    pub body_inline_max: ByteSize,
    /// Reopen the store's database after about this many bytes have been
    /// written to it, so that a restart replays little of sled's log (sled
    /// 0.34 snapshots only when it opens): at most twice this much, when
    /// reopens are spaced out because they take long.
    pub checkpoint_every: ByteSize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            sync: StoreSync::Always,
            batch_delay: Millis(2),
            memory_limit: ByteSize::mib(256),
            disk_limit: ByteSize::gib(10),
            compact_threshold: ByteSize::mib(64),
            body_inline_max: ByteSize::kib(64),
            checkpoint_every: ByteSize::mib(256),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`: logging to stderr (the journal under systemd).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A level (`info`) or `EnvFilter` directives (`info,ferromq_broker=debug`).
    /// `RUST_LOG` overrides it.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}
