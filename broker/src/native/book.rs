//! [`DeliveryBook`]: the unsettled deliveries of one connection's consumer
//! links, by (channel, delivery id). The writer records a delivery when it
//! writes its transfer; the state machine settles ranges of them on
//! Disposition. Bounded by the links' prefetch windows: the router never has
//! more unacknowledged deliveries than that per link.

use crate::router::Consumer;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One unsettled delivery.
#[derive(Debug, Clone)]
pub struct Unsettled {
    /// The link's subscription.
    pub consumer: Arc<Consumer>,
    /// The message's sequence number.
    pub seq: u64,
}

/// Shared by a connection's writer and its state machine.
#[derive(Debug, Default)]
pub struct DeliveryBook {
    unsettled: Mutex<BTreeMap<(u32, u64), Unsettled>>,
}

impl DeliveryBook {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<(u32, u64), Unsettled>> {
        self.unsettled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a delivery written on `channel` as `delivery_id`.
    pub fn record(&self, channel: u32, delivery_id: u64, delivery: Unsettled) {
        self.lock().insert((channel, delivery_id), delivery);
    }

    /// Removes and returns the unsettled deliveries of `channel` with ids in
    /// `first..=last`, in id order. Ids not in the book are skipped, so a huge
    /// range costs only what it matches.
    pub fn take_range(&self, channel: u32, first: u64, last: u64) -> Vec<Unsettled> {
        let mut map = self.lock();
        let keys: Vec<(u32, u64)> = map
            .range((channel, first)..=(channel, last))
            .map(|(k, _)| *k)
            .collect();
        keys.iter().filter_map(|k| map.remove(k)).collect()
    }

    /// Forgets the deliveries of subscription `id` (its link is gone and the
    /// router has taken its messages back).
    pub fn forget_consumer(&self, id: u64) {
        self.lock().retain(|_, u| u.consumer.id != id);
    }
}
