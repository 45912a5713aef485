//! [`DeliveryBook`]: the unsettled deliveries of one connection's consumer
//! links, by (channel, delivery id). The writer records a delivery when it
//! writes its transfer; the state machine settles ranges of them on
//! Disposition. Bounded by the links' prefetch windows: the router never has
//! more unacknowledged deliveries than that per link.

use crate::router::Consumer;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

/// One unsettled delivery.
#[derive(Debug, Clone)]
pub struct Unsettled {
    /// The link's subscription.
    pub consumer: Arc<Consumer>,
    /// The message's sequence number.
    pub seq: u64,
}

/// One session's unsettled deliveries in id order. The writer numbers a
/// session's deliveries in the order it records them, so recording is a
/// push at the back and settling in order a drain at the front.
type Channel = VecDeque<(u64, Unsettled)>;

/// Shared by a connection's writer and its state machine.
#[derive(Debug, Default)]
pub struct DeliveryBook {
    /// By channel; a connection has few sessions.
    unsettled: Mutex<Vec<(u32, Channel)>>,
}

impl DeliveryBook {
    fn lock(&self) -> MutexGuard<'_, Vec<(u32, Channel)>> {
        self.unsettled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a delivery written on `channel` as `delivery_id`.
    pub fn record(&self, channel: u32, delivery_id: u64, delivery: Unsettled) {
        let mut channels = self.lock();
        let at = match channels.iter().position(|(c, _)| *c == channel) {
            Some(at) => at,
            None => {
                channels.push((channel, VecDeque::new()));
                channels.len() - 1
            }
        };
        let q = &mut channels[at].1;
        if q.back().is_none_or(|(id, _)| *id < delivery_id) {
            q.push_back((delivery_id, delivery));
            return;
        }
        // Out of order (not how the writer records): keep the order anyway.
        let pos = q.partition_point(|(id, _)| *id < delivery_id);
        match q.get_mut(pos) {
            Some(entry) if entry.0 == delivery_id => entry.1 = delivery,
            _ => q.insert(pos, (delivery_id, delivery)),
        }
    }

    /// Removes and returns the unsettled deliveries of `channel` with ids in
    /// `first..=last`, in id order. Ids not in the book are skipped, so a huge
    /// range costs only what it matches.
    pub fn take_range(&self, channel: u32, first: u64, last: u64) -> Vec<Unsettled> {
        let mut channels = self.lock();
        let Some((_, q)) = channels.iter_mut().find(|(c, _)| *c == channel) else {
            return Vec::new();
        };
        let start = q.partition_point(|(id, _)| *id < first);
        let end = q.partition_point(|(id, _)| *id <= last);
        if start >= end {
            return Vec::new();
        }
        q.drain(start..end).map(|(_, u)| u).collect()
    }

    /// Forgets the deliveries of subscription `id` (its link is gone and the
    /// router has taken its messages back).
    pub fn forget_consumer(&self, id: u64) {
        // A wildcard link's deliveries carry its per-queue members.
        for (_, q) in self.lock().iter_mut() {
            q.retain(|(_, u)| u.consumer.subscription_id() != id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::router::{
        AckMode, Address, Delivery, DeliverySink, LinkFlow, Router, RouterConfig, SubscribeOptions,
    };
    use crate::store::memory::MemoryStore;

    /// Records the sequence numbers delivered to it.
    #[derive(Default)]
    struct Collect(Mutex<Vec<u64>>);

    impl DeliverySink for Collect {
        fn deliver(&self, d: Delivery) {
            self.0.lock().unwrap().push(d.message.seq);
        }
    }

    impl Collect {
        fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    fn queue_with(router: &Router, n: usize) -> Arc<crate::router::Destination> {
        let d = router
            .destination(&Address::parse("/queue/q", 1).unwrap(), 1)
            .unwrap();
        for _ in 0..n {
            router.publish_empty(&d);
        }
        d
    }

    #[test]
    fn link_credit_bounds_deliveries_and_drain_uses_it_up() {
        let router = Router::new(RouterConfig::default(), Arc::new(MemoryStore));
        let d = queue_with(&router, 5);
        let sink = Arc::new(Collect::default());
        let c = router.subscribe_link(
            d,
            1,
            "l".into(),
            AckMode::Auto,
            SubscribeOptions::default(),
            sink.clone(),
        );
        assert_eq!(sink.len(), 0, "no credit, no delivery");
        let f = router.flow(&c, 0, 2, false).unwrap();
        assert_eq!(sink.len(), 2);
        assert_eq!(
            f,
            LinkFlow {
                delivery_count: 2,
                link_credit: 0
            }
        );
        // A grant that crossed a delivery: the receiver had seen 1 of the 2,
        // so 1 + 2 allows one more, not two.
        router.flow(&c, 1, 2, false).unwrap();
        assert_eq!(sink.len(), 3);
        // Drain: 2 messages left, 10 credit: 2 sent, 8 used up by the count.
        let f = router.flow(&c, 3, 10, true).unwrap();
        assert_eq!(sink.len(), 5);
        assert_eq!(
            f,
            LinkFlow {
                delivery_count: 13,
                link_credit: 0
            }
        );
        // A receiver count behind the deliveries leaves no credit.
        let f = router.flow(&c, 0, 5, false).unwrap();
        assert_eq!(f.link_credit, 0);
    }

    #[test]
    fn ranges_take_only_their_channel_and_known_ids() {
        let router = Router::new(RouterConfig::default(), Arc::new(MemoryStore));
        let d = queue_with(&router, 0);
        let sink = Arc::new(Collect::default());
        let consumer = router.subscribe_link(
            d,
            1,
            "l".into(),
            AckMode::ClientIndividual,
            SubscribeOptions::default(),
            sink,
        );
        let book = DeliveryBook::default();
        for id in [0, 1, 2, 5] {
            let u = Unsettled {
                consumer: consumer.clone(),
                seq: id + 100,
            };
            book.record(1, id, u.clone());
            book.record(2, id, u);
        }
        let taken: Vec<u64> = book
            .take_range(1, 1, u64::MAX)
            .iter()
            .map(|u| u.seq)
            .collect();
        assert_eq!(taken, [101, 102, 105]);
        assert!(book.take_range(1, 1, 5).is_empty(), "already settled");
        assert_eq!(book.take_range(2, 0, 0).len(), 1);
        // Out of order and repeated records keep the id order.
        for id in [9, 7, 7] {
            book.record(
                3,
                id,
                Unsettled {
                    consumer: consumer.clone(),
                    seq: id,
                },
            );
        }
        let taken: Vec<u64> = book.take_range(3, 0, 100).iter().map(|u| u.seq).collect();
        assert_eq!(taken, [7, 9]);
        assert!(book.take_range(4, 0, 100).is_empty(), "no such channel");
        book.forget_consumer(consumer.id);
        assert!(book.take_range(2, 0, u64::MAX).is_empty());
        assert_eq!(book.take_range(1, 0, 0).len(), 0);
    }
}
