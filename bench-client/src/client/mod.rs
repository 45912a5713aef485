//! The benchmark's clients, independent of the wire protocol: a producer
//! ([`producer`]) and a consumer ([`consumer`]) task each own one link at a
//! time and, like the original, count an error, wait, and reconnect (to the
//! next failover endpoint, or the leader a cluster member names) whenever
//! the link fails ([`failover`]).

pub mod consumer;
pub mod failover;
pub mod producer;

use crate::driver::{Delivery, Driver, DriverError};
use crate::order::manifest::ManifestEntry;
use crate::order::SharedOrder;
use crate::stats::{Counters, SharedHistogram};
use failover::{ReceiptGaps, Reconnect};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// State shared by every client of one scenario and its sampler.
pub struct ScenarioShared {
    /// Per-interval counters.
    pub counters: Counters,
    /// End-to-end latency (send stamp to receipt by a consumer).
    pub e2e: SharedHistogram,
    /// Send (or commit) to RECEIPT latency.
    pub receipt: SharedHistogram,
    /// When receipts arrived: the gaps a failover leaves.
    pub gaps: ReceiptGaps,
    /// Refusals by cluster members that are not the leader (not errors).
    pub redirects: AtomicU64,
    /// SENDs resent on a new link because the old one failed before their
    /// RECEIPT came.
    pub resent: AtomicU64,
    /// Transacted messages whose COMMIT's RECEIPT never came (the link
    /// failed first): not resent, and not known to be committed.
    pub unconfirmed: AtomicU64,
    /// Clients that connected at least once.
    pub connected: AtomicU32,
    /// A broker answered with an error (an ERROR frame, a native Close).
    /// While no client has connected, that was a refused connect (bad
    /// credentials, say), and retrying will not help.
    refused: AtomicBool,
    /// Fast check of the stop signal on hot paths.
    stopping: AtomicBool,
    stop_tx: watch::Sender<bool>,
    /// Queue staging: set when producers should stop and consumers start.
    midpoint_tx: watch::Sender<bool>,
    /// The most recent error, for the progress line and the final report.
    last_error: Mutex<Option<String>>,
    /// The most recent `not the leader` refusal: not an error (it is not in
    /// `last_error`, which marks a run as having had errors), but the
    /// reason to give if no client could connect at all.
    last_redirect: Mutex<Option<String>>,
    /// Pause before reconnecting after an error.
    pub reconnect_delay: Duration,
    /// Print every error as it happens.
    pub display_errors: bool,
    /// The order check every received message goes through, if on.
    pub order: Option<SharedOrder>,
    /// What each stamped producer sent, for the manifest.
    manifest: Mutex<Vec<ManifestEntry>>,
}

impl ScenarioShared {
    /// Fresh state.
    pub fn new(reconnect_delay: Duration, display_errors: bool) -> ScenarioShared {
        ScenarioShared {
            counters: Counters::default(),
            e2e: SharedHistogram::default(),
            receipt: SharedHistogram::default(),
            gaps: ReceiptGaps::default(),
            redirects: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            unconfirmed: AtomicU64::new(0),
            connected: AtomicU32::new(0),
            refused: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop_tx: watch::channel(false).0,
            midpoint_tx: watch::channel(false).0,
            last_error: Mutex::new(None),
            last_redirect: Mutex::new(None),
            reconnect_delay,
            display_errors,
            order: None,
            manifest: Mutex::new(Vec::new()),
        }
    }

    /// Checks every received message's order with `order`.
    pub fn with_order(mut self, order: Option<SharedOrder>) -> ScenarioShared {
        self.order = order;
        self
    }

    /// A stamped producer's manifest line, once it has finished.
    pub fn manifest_entry(&self, entry: ManifestEntry) {
        self.manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    /// Every manifest line so far, by producer index order of finishing.
    pub fn take_manifest(&self) -> Vec<ManifestEntry> {
        std::mem::take(&mut *self.manifest.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Passes `received` (from `destination`) to the order check, if on.
    pub fn check_order(&self, destination: &str, received: &[Delivery]) {
        if let Some(order) = &self.order {
            crate::order::observe_all(order, destination, received);
        }
    }

    /// Tells every client to finish.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.stop_tx.send_replace(true);
    }

    /// Whether [`ScenarioShared::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Resolves once [`ScenarioShared::stop`] is called.
    pub async fn stopped(&self) {
        let mut rx = self.stop_tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while we wait.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Signals the queue-staging midpoint.
    pub fn reach_midpoint(&self) {
        self.midpoint_tx.send_replace(true);
    }

    /// Whether the midpoint has passed.
    pub fn past_midpoint(&self) -> bool {
        *self.midpoint_tx.borrow()
    }

    /// Resolves at the midpoint.
    pub async fn midpoint(&self) {
        let mut rx = self.midpoint_tx.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Whether a broker answered with an error (see the field).
    pub fn was_refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    /// Counts and remembers an error. A `not the leader` refusal is
    /// counted as a redirect instead: the cluster is electing or the client
    /// asked a follower, neither a failure.
    pub fn record_error(&self, who: &str, error: &DriverError) {
        let text = format!("{who}: {error}");
        if matches!(error, DriverError::NotLeader { .. }) {
            self.redirects.fetch_add(1, Ordering::Relaxed);
            *self.last_redirect.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
            return;
        }
        self.counters.error();
        if self.display_errors {
            eprintln!("\nerror: {text}");
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
        // After the text, so whoever sees the flag finds the reason.
        if matches!(error, DriverError::Broker { .. }) {
            self.refused.store(true, Ordering::Release);
        }
    }

    /// The most recent error.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The most recent error, else the most recent `not the leader`
    /// refusal: why no client could connect.
    pub fn why_not_connected(&self) -> Option<String> {
        self.last_error().or_else(|| {
            self.last_redirect
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// After a link failed with `error`: records it, picks the endpoint to
    /// try next (the leader a refusal names, else the next one) and waits
    /// as [`Reconnect::failed`] says. Returns false if stopped meanwhile.
    pub async fn recover<D: Driver>(
        &self,
        driver: &D,
        who: &str,
        error: &DriverError,
        reconnect: &mut Reconnect,
    ) -> bool {
        self.record_error(who, error);
        let leader = error.leader().and_then(|a| driver.endpoint_at(a));
        let pause = reconnect.failed(error, leader, self.reconnect_delay);
        if pause.is_zero() {
            return !self.is_stopping();
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => !self.is_stopping(),
            _ = self.stopped() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_a_redirect_not_an_error() {
        let shared = ScenarioShared::new(Duration::from_secs(1), false);
        let refusal = DriverError::NotLeader {
            endpoint: "stomp://b:1".into(),
            leader: None,
        };
        shared.record_error("producer 0", &refusal);
        assert_eq!(shared.redirects.load(Ordering::Relaxed), 1);
        assert_eq!(shared.counters.take().errors, 0);
        assert_eq!(
            shared.last_error(),
            None,
            "a run with redirects has no error"
        );
        assert!(!shared.was_refused());
        let why = shared.why_not_connected().unwrap_or_default();
        assert!(why.contains("not the leader"), "{why}");
        // A real error wins as the reason.
        let closed = DriverError::Closed {
            endpoint: "stomp://a:1".into(),
        };
        shared.record_error("producer 1", &closed);
        assert_eq!(shared.counters.take().errors, 1);
        assert!(shared
            .why_not_connected()
            .unwrap_or_default()
            .contains("closed"));
    }
}
