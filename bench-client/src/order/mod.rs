//! The per-producer order and completeness check of a deep drain.
//!
//! With `--manifest FILE`, every producer stamps its messages with its
//! producer id and a sequence number (1, 2, 3, … per producer) and, when the
//! run ends, appends one line to the manifest: what it sent and what the
//! broker confirmed ([`manifest`]). A later run given `--expect FILE`
//! checks every stamped message its consumers (and its drain) receive,
//! per producer, with state bounded per producer, not per message
//! ([`checker`]), and reports lost, duplicated and out-of-order messages
//! against the manifest. Fill and drain are separate runs, and a drain may
//! take several (each ends when its consumers sit idle): `--order-state
//! FILE` carries the checker's state from one drain run to the next.
//!
//! Per-producer order holds only when one consumer takes a destination's
//! messages at a time (as the bench's one consumer per queue does); several
//! consumers on one queue interleave, and the check reports that as
//! reordering.

pub mod checker;
pub mod manifest;

use crate::driver::Delivery;
use checker::OrderState;
use std::sync::{Arc, Mutex};

/// The checker, shared by a run's consumers and its drain (one lock per
/// received batch, not per message).
pub type SharedOrder = Arc<Mutex<OrderState>>;

/// Records a batch received from `destination`.
pub fn observe_all(order: &SharedOrder, destination: &str, received: &[Delivery]) {
    let mut state = order.lock().unwrap_or_else(|e| e.into_inner());
    for d in received {
        state.observe(destination, d.origin, d.redelivered);
    }
}

/// Header carrying the producer id of a stamped message.
pub const PRODUCER_HEADER: &str = "bench-producer";
/// Header carrying the sequence number of a stamped message.
pub const SEQ_HEADER: &str = "bench-seq";
/// Bits of a producer id that hold the producer's index in its run.
pub const INDEX_BITS: u32 = 12;
/// Most producers one stamped run can have (the index's bits).
pub const MAX_PRODUCERS: u32 = 1 << INDEX_BITS;

/// Where a stamped message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The producer's id ([`producer_id`]).
    pub producer: u64,
    /// Its sequence number at that producer, from 1.
    pub seq: u64,
}

/// A producer id unique across runs: the run's start in microseconds since
/// the Unix epoch (51 bits until the year 2041) above the producer's index
/// in the run. Fill runs follow one another, so their ids never meet.
pub fn producer_id(run: u64, index: u32) -> u64 {
    (run << INDEX_BITS) | u64::from(index % MAX_PRODUCERS)
}

/// The run id for [`producer_id`]: microseconds since the Unix epoch now.
pub fn run_id() -> u64 {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    (micros as u64) & ((1 << (64 - INDEX_BITS)) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_ids_of_two_runs_differ() {
        let a = producer_id(run_id(), 3);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = producer_id(run_id(), 3);
        assert_ne!(a, b);
        assert_eq!(a & u64::from(MAX_PRODUCERS - 1), 3);
        assert_ne!(producer_id(7, 0), producer_id(7, 1));
    }
}
