//! What a wildcard queue subscription (see [`crate::router::queue_wildcard`])
//! needs from each queue it consumes beyond what any subscription needs:
//! dispatching again when its shared window has room, and finding
//! deliveries by their place in the subscription-wide delivery order (for
//! cumulative acks across queues). Kept apart from the dispatch logic.

use super::{Destination, SubscriptionId};

impl Destination {
    /// Delivers waiting messages to whoever has credit now: a wildcard
    /// member's shared window got room through another queue.
    pub fn redispatch(&self) {
        let mut st = self.lock();
        self.dispatch(&mut st);
        self.account(&st);
    }

    /// The subscription-wide delivery order of message `seq` held
    /// unacknowledged by subscription `id`.
    pub fn delivery_order(&self, id: SubscriptionId, seq: u64) -> Option<u64> {
        let mut st = self.lock();
        let sub = st.subscription(id).ok()?;
        sub.unacked
            .iter()
            .find(|f| f.message.seq == seq)
            .map(|f| f.order)
    }

    /// The last message subscription `id` holds unacknowledged that was
    /// delivered no later than `order` (a member's deliveries are in
    /// order), if any: a cumulative ack up to it covers this queue's part.
    pub fn last_delivered_through(&self, id: SubscriptionId, order: u64) -> Option<u64> {
        let mut st = self.lock();
        let sub = st.subscription(id).ok()?;
        sub.unacked
            .iter()
            .take_while(|f| f.order <= order)
            .last()
            .map(|f| f.message.seq)
    }
}
