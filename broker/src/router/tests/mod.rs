//! Unit tests of the router core on one queue, against the in-memory store:
//! credit and prefetch, acknowledgement, redelivery, priority, message
//! groups, exclusive consumers and the dispatch invariant, plus a property
//! test comparing the router with a reference model of a queue.
//!
//! - [`harness`]: the bench the tests run on (router, recording consumers,
//!   message builder).
//! - [`deep`]: the store cursor over the real sled store (durable
//!   subscriptions paging, mixed persistence, purging a stored backlog).
//! - [`dispatch`]: who receives what, and when.
//! - [`ack`]: acknowledgement, rejection and redelivery.
//! - [`ownership`]: message groups and exclusive consumers.
//! - [`queue_model`]: a reference model of one queue.
//! - [`queue_property`]: the property test running the router and the
//!   model side by side.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod ack;
mod deep;
mod dispatch;
mod harness;
mod ownership;
mod queue_model;
mod queue_property;
