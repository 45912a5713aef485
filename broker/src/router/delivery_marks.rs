//! Which messages the store keeps, and [`DeliveryMarks`]: recording each
//! delivery of a stored message before its consumer can see it.
//!
//! One rule, one place: [`stores_messages_of`] says which destinations keep
//! their persistent messages in the store; `Router::stores` (what is
//! appended at publish) and [`DeliveryMarks::wrap`] (which subscriptions
//! record deliveries) both ask it.

use super::address::DestinationKind;
use super::delivery::{Delivery, DeliverySink};
use super::destination::Destination;
use crate::store::{Handoff, Store};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// Whether persistent messages sent to `destination` go to the store. Only
/// queues that outlive their connection are stored: a topic message (durable
/// subscriptions store their own copies) or a temporary queue's has nobody
/// to come back to after a restart.
pub fn stores_messages_of(destination: &Destination) -> bool {
    destination.kind() == DestinationKind::Queue && !destination.address.is_temporary()
}

/// A [`DeliverySink`] wrapper for queues whose persistent messages are
/// stored: each delivery of a stored message is recorded in the log
/// (`LogEntry::Delivered`) before the consumer can see it, so a message
/// delivered before a crash comes back `redelivered` with its count.
///
/// Why an exact record and not "mark every recovered message of a queue that
/// had consumers": a message never delivered comes back unmarked, one
/// delivered twice comes back with count 2 (which redelivery limits need),
/// and the cost stays small: a fresh message's record rides in the same
/// group commit as its enqueue (no wait at all), and when the ack follows
/// within that batch nothing is written. Only deliveries of messages already
/// on disk wait for one group commit.
pub struct DeliveryMarks {
    inner: Arc<dyn DeliverySink>,
    store: Arc<dyn Store>,
    /// Itself, for the handoffs it gives the store.
    me: Weak<DeliveryMarks>,
    /// Deliveries held by the store, not yet passed to `inner`.
    held: AtomicUsize,
}

impl DeliveryMarks {
    /// Wraps `sink` when `destination` stores its persistent messages.
    pub fn wrap(
        sink: Arc<dyn DeliverySink>,
        destination: &Destination,
        store: &Arc<dyn Store>,
    ) -> Arc<dyn DeliverySink> {
        if stores_messages_of(destination) {
            Arc::new_cyclic(|me| DeliveryMarks {
                inner: sink,
                store: store.clone(),
                me: me.clone(),
                held: AtomicUsize::new(0),
            })
        } else {
            sink
        }
    }

    /// Passes a delivery the store held on to the consumer's connection.
    fn release(&self, delivery: Delivery) {
        self.inner.deliver(delivery);
        // Decrement after the deliver: a later delivery that sees zero may
        // go directly without overtaking this one.
        self.held.fetch_sub(1, Ordering::SeqCst);
    }
}

impl DeliverySink for DeliveryMarks {
    fn deliver(&self, delivery: Delivery) {
        // Called under the destination lock, so deliveries of one
        // subscription come here one at a time, in order.
        let must_wait = self.held.load(Ordering::SeqCst) > 0;
        let mark = delivery
            .message
            .persistent
            .then(|| (delivery.message.seq, delivery.redeliveries + 1));
        if mark.is_none() && !must_wait {
            return self.inner.deliver(delivery);
        }
        let Some(me) = self.me.upgrade() else {
            return self.inner.deliver(delivery);
        };
        self.held.fetch_add(1, Ordering::SeqCst);
        // Durability ordering: the store runs this only once the delivery
        // record is durable (or at once when it rides with the message's
        // own enqueue), so the consumer never sees a delivery a crash could
        // forget.
        let handoff = Handoff::new(move || me.release(delivery));
        if let Some(now) = self.store.hand_off(mark, must_wait, handoff) {
            now.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::message::Message;
    use crate::router::{
        AckMode, Address, Delivery, DeliverySink, Router, RouterConfig, SubscribeOptions,
    };
    use crate::store::log_writer::WriterSettings;
    use crate::store::sled_store::{SledStore, StoreSettings};
    use crate::store::{Commit, Store, StoreError};
    use bytes::Bytes;
    use ferromq_config::StoreSync;
    use ferromq_protocol::Headers;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    fn settings(path: &Path) -> StoreSettings {
        StoreSettings {
            path: path.to_path_buf(),
            writer: WriterSettings {
                sync: StoreSync::Always,
                batch_delay: Duration::from_millis(2),
                disk_limit: 1 << 30,
                ack_gather: crate::store::log_writer::ACK_GATHER,
                checkpoint_bytes: u64::MAX,
            },
            cache_bytes: 8 << 20,
            body_budget: 1 << 30,
            compact_min_bytes: 1 << 20,
            bodies: crate::store::body_segments::BodySettings::new(
                path.with_extension("bodies"),
                64 << 10,
            ),
        }
    }

    fn wait(c: Commit) -> Result<(), StoreError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(c.wait())
    }

    /// Store-and-dispatch through the router: a persistent message published
    /// to a queue with a consumer reaches the consumer without waiting for a
    /// flush (its delivery record joins its enqueue), the writer waits for
    /// the consumer's ack instead of writing, the ack releases the receipt,
    /// and the message is never written. The gather is made long so that
    /// nothing here depends on timing.
    #[test]
    fn a_message_consumed_within_the_gather_reaches_its_consumer_at_once_and_is_never_written() {
        #[derive(Default)]
        struct Collect(std::sync::Mutex<Vec<u64>>);
        impl DeliverySink for Collect {
            fn deliver(&self, d: Delivery) {
                self.0.lock().unwrap().push(d.message.seq);
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.writer.ack_gather = Duration::from_secs(30);
        let (store, _) = SledStore::open(s).unwrap();
        let store = Arc::new(store);
        let router = Router::new(RouterConfig::default(), store.clone());
        let queue = router
            .destination(&Address::parse("/queue/q", 1).unwrap(), 1)
            .unwrap();
        let sink = Arc::new(Collect::default());
        let consumer = router.subscribe(
            queue.clone(),
            1,
            "sub".into(),
            AckMode::ClientIndividual,
            SubscribeOptions::default(),
            sink.clone(),
        );
        let message = Message {
            seq: router.next_seq(),
            destination: queue.address.name.clone(),
            persistent: true,
            priority: 4,
            expires: 0,
            timestamp: 1,
            headers: Headers::new(),
            body: Bytes::from_static(b"hello").into(),
        };
        let seq = message.seq;
        let Commit::Pending(mut receipt) = router.publish(&queue, message) else {
            panic!("a persistent publish waits for the store");
        };
        assert_eq!(*sink.0.lock().unwrap(), vec![seq], "held for a flush");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            receipt.try_recv().is_err(),
            "the writer wrote the message instead of waiting for the ack"
        );
        let acked = router.ack(&consumer, seq).unwrap();
        assert_eq!(
            receipt.try_recv(),
            Ok(Ok(())),
            "the ack releases the receipt"
        );
        wait(acked).unwrap();
        let m = store.metrics().unwrap();
        assert_eq!((m.messages_written, m.messages_elided), (0, 1));
        // Without a consumer there is nothing to wait for: written at once.
        let lone = router
            .destination(&Address::parse("/queue/lone", 1).unwrap(), 1)
            .unwrap();
        let message = Message {
            seq: router.next_seq(),
            destination: lone.address.name.clone(),
            persistent: true,
            priority: 4,
            expires: 0,
            timestamp: 1,
            headers: Headers::new(),
            body: Bytes::from_static(b"kept").into(),
        };
        let started = std::time::Instant::now();
        wait(router.publish(&lone, message)).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "waited for the gather"
        );
        assert_eq!(store.metrics().unwrap().messages_written, 1);
    }
}
