//! One benchmark scenario: who sends what to where, and how it is acknowledged.
//! Its [`Scenario::parameters`] are the JSON `parameters` object of the original
//! JMS Benchmark report (same keys), which is also the identity used to resume.

use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Point-to-point or publish/subscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/queue/…`: each message goes to one consumer.
    Queue,
    /// `/topic/…`: each message goes to every subscriber.
    Topic,
}

impl Mode {
    /// The name used in JSON parameters and scenario names.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Queue => "queue",
            Mode::Topic => "topic",
        }
    }
}

/// How consumers acknowledge, as the STOMP `ack` header says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// `ack:auto` (JMS `AUTO_ACKNOWLEDGE` / `DUPS_OK_ACKNOWLEDGE`).
    Auto,
    /// `ack:client`: one ACK per message (cumulative on the broker).
    Client,
    /// `ack:client-individual`: one ACK per message, for that message only.
    ClientIndividual,
}

impl AckMode {
    /// The STOMP header value.
    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }

    /// Parses a header value / CLI word.
    pub fn parse(s: &str) -> Option<AckMode> {
        match s {
            "auto" | "dups_ok" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" | "client_individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }
}

/// One consumer that processes slowly (the `slow_consumer` group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowConsumer {
    /// Which consumer (0-based) is slow.
    pub index: u32,
    /// How long it sleeps per message.
    pub delay: Duration,
}

/// Everything that defines one run of producers and consumers.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// `throughput`, `slow_consumer`, `latency`, `queue_staging`, a
    /// stomp-benchmark group, or `custom` for ad-hoc runs.
    pub group: String,
    /// Queue or topic.
    pub mode: Mode,
    /// `persistent:true` on every SEND, and (without a transaction) a RECEIPT
    /// awaited per SEND, which is what a JMS persistent send means.
    pub persistent: bool,
    /// Body size in bytes.
    pub message_size: usize,
    /// Messages per transaction (0 = no transactions).
    pub tx_size: u32,
    /// Number of destinations; client `i` uses destination `i % destination_count`.
    pub destination_count: u32,
    /// Producer connections.
    pub producers: u32,
    /// Consumer connections.
    pub consumers: u32,
    /// Total messages per second over all producers, or unlimited.
    pub producer_rate: Option<u64>,
    /// Consumer acknowledgement mode.
    pub ack: AckMode,
    /// Whether `ack` was chosen explicitly (then it appears in `parameters`).
    pub ack_explicit: bool,
    /// Durable topic subscriptions (the original meant to but never did).
    pub durable: bool,
    /// Whether a persistent SEND outside a transaction waits for its RECEIPT.
    pub sync_send: bool,
    /// One slow consumer, if any.
    pub slow_consumer: Option<SlowConsumer>,
    /// Load-then-unload: consumers start and producers stop at the midpoint.
    pub staging: bool,
    /// Samples for this scenario instead of the run's `--samples`.
    pub sample_count: Option<u32>,
}

impl Scenario {
    /// A 1 producer / 1 destination / 1 consumer, 10-byte, non-persistent
    /// queue scenario in `group`: the baseline every sweep starts from.
    pub fn baseline(group: &str) -> Scenario {
        Scenario {
            group: group.to_string(),
            mode: Mode::Queue,
            persistent: false,
            message_size: 10,
            tx_size: 0,
            destination_count: 1,
            producers: 1,
            consumers: 1,
            producer_rate: None,
            ack: AckMode::Client,
            ack_explicit: false,
            durable: false,
            sync_send: true,
            slow_consumer: None,
            staging: false,
            sample_count: None,
        }
    }

    /// The JSON `parameters` object, with the original's keys.
    pub fn parameters(&self) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("group".into(), self.group.clone().into());
        p.insert("mode".into(), self.mode.as_str().into());
        p.insert("persistent".into(), self.persistent.into());
        p.insert("message_size".into(), (self.message_size as u64).into());
        p.insert("tx_size".into(), self.tx_size.into());
        p.insert("destination_count".into(), self.destination_count.into());
        p.insert("producers".into(), self.producers.into());
        p.insert("consumers".into(), self.consumers.into());
        if let Some(rate) = self.producer_rate {
            p.insert("producer_rate".into(), rate.into());
        }
        if self.durable {
            p.insert("durable".into(), true.into());
        }
        if self.ack_explicit {
            p.insert("ack".into(), self.ack.as_str().into());
        }
        if !self.sync_send && self.persistent {
            p.insert("sync_send".into(), false.into());
        }
        p
    }

    /// A short unique name, e.g. `throughput/queue-p-10p10d10c-1kb-tx0`.
    pub fn name(&self) -> String {
        let mut s = format!(
            "{}/{}-{}{}-{}p{}d{}c-{}-tx{}",
            self.group,
            self.mode.as_str(),
            if self.persistent { "p" } else { "np" },
            if self.durable { "-durable" } else { "" },
            self.producers,
            self.destination_count,
            self.consumers,
            human_size(self.message_size),
            self.tx_size
        );
        if let Some(rate) = self.producer_rate {
            s.push_str(&format!("-{rate}ps"));
        }
        if self.ack_explicit {
            s.push_str(&format!("-ack-{}", self.ack.as_str()));
        }
        if self.persistent && !self.sync_send {
            s.push_str("-async");
        }
        s
    }

    /// The destination of client `index`, e.g. `/queue/loadq-3`.
    pub fn destination(&self, index: u32, queue_prefix: &str, topic_prefix: &str) -> String {
        let slot = index % self.destination_count.max(1);
        match self.mode {
            Mode::Queue => format!("{queue_prefix}loadq-{slot}"),
            Mode::Topic => format!("{topic_prefix}loadt-{slot}"),
        }
    }

    /// Whether messages can be left behind for the next scenario (and so a
    /// drain is needed): queues always, topics only with durable subscriptions.
    pub fn needs_drain(&self) -> bool {
        self.mode == Mode::Queue || self.durable
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `10b`, `1kb`, `100kb`, `10mb` for the matrix's decimal sizes; `1kib`,
/// `256kib` for stomp-benchmark's binary ones.
pub fn human_size(bytes: usize) -> String {
    match bytes {
        b if b >= 1_000_000 && b % 1_000_000 == 0 => format!("{}mb", b / 1_000_000),
        b if b >= 1_000 && b % 1_000 == 0 => format!("{}kb", b / 1_000),
        b if b >= 1_048_576 && b % 1_048_576 == 0 => format!("{}mib", b / 1_048_576),
        b if b >= 1_024 && b % 1_024 == 0 => format!("{}kib", b / 1_024),
        b => format!("{b}b"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_use_the_original_keys() {
        let s = Scenario::baseline("throughput");
        let params = s.parameters();
        let mut keys: Vec<&str> = params.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = [
            "group",
            "mode",
            "persistent",
            "message_size",
            "tx_size",
            "destination_count",
            "producers",
            "consumers",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let mut lat = Scenario::baseline("latency");
        lat.producer_rate = Some(1000);
        assert_eq!(lat.parameters()["producer_rate"], 1000);
        assert_ne!(lat.parameters(), s.parameters());
    }

    #[test]
    fn names_and_destinations() {
        let mut s = Scenario::baseline("throughput");
        s.persistent = true;
        s.producers = 10;
        s.destination_count = 10;
        s.consumers = 10;
        s.message_size = 1000;
        assert_eq!(s.name(), "throughput/queue-p-10p10d10c-1kb-tx0");
        assert_eq!(s.destination(13, "/queue/", "/topic/"), "/queue/loadq-3");
        s.mode = Mode::Topic;
        assert_eq!(s.destination(13, "/queue/", "/topic/"), "/topic/loadt-3");
        assert!(!s.needs_drain());
        s.durable = true;
        assert!(s.needs_drain());
        assert_eq!(human_size(10_000_000), "10mb");
        assert_eq!(human_size(100_000), "100kb");
        assert_eq!(human_size(1024), "1kib");
        assert_eq!(human_size(256 * 1024), "256kib");
        assert_eq!(human_size(1500), "1500b");
    }
}
