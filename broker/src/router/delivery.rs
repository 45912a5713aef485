//! The [`Delivery`] the router hands to a protocol session through a
//! [`DeliverySink`]. The message itself is [`crate::message::Message`].

use super::subscription::Consumer;
use crate::message::Message;
use std::sync::Arc;

/// A message handed to one consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The subscription it is delivered on.
    pub consumer: Arc<Consumer>,
    /// The message.
    pub message: Arc<Message>,
    /// How many times it was delivered before (0 = first delivery).
    pub redeliveries: u32,
}

/// Where the router puts deliveries for one connection. Implemented by each
/// protocol's outbound queue.
///
/// `deliver` is called with a destination lock held, so it must only enqueue
/// and wake a writer: never block, never call back into the router. Its queue
/// is bounded by the subscriptions' credit (prefetch), which the router
/// enforces before calling it.
pub trait DeliverySink: Send + Sync {
    /// Queues a delivery for writing.
    fn deliver(&self, delivery: Delivery);
}
