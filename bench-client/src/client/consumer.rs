//! A consumer client: receives, records end-to-end latency from each
//! message's send stamp, and acknowledges as its ack mode and transaction size
//! say. Transactions are committed every `tx_size` messages, or early after
//! 500 ms without a message (as the original's consumers do).

use super::failover::Reconnect;
use super::ScenarioShared;
use crate::clock;
use crate::driver::{ConsumerLink, ConsumerSpec, Delivery, Driver, DriverError};
use crate::scenario::AckMode;
use crate::stats::LatencyBatch;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long an open transaction may wait for more messages before committing.
const IDLE_COMMIT: Duration = Duration::from_millis(500);

/// What one consumer does.
#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    /// Client number (picks the first endpoint, names errors).
    pub index: u32,
    /// Destination, ack mode, durability, prefetch.
    pub spec: ConsumerSpec,
    /// Messages per transaction, 0 for none.
    pub tx_size: u32,
    /// Sleep this long per message (the slow consumer).
    pub delay: Option<Duration>,
    /// Connect only at the queue-staging midpoint.
    pub start_at_midpoint: bool,
}

/// Runs until the scenario stops, reconnecting after errors.
pub async fn run<D: Driver>(driver: Arc<D>, plan: ConsumerPlan, shared: Arc<ScenarioShared>) {
    if plan.start_at_midpoint {
        tokio::select! {
            _ = shared.midpoint() => {}
            _ = shared.stopped() => return,
        }
    }
    let who = format!("consumer {}", plan.index);
    let mut reconnect = Reconnect::new(plan.index as usize, driver.endpoint_count());
    let mut counted = false;
    let mut next_tx = 1u64;
    while !shared.is_stopping() {
        let link = tokio::select! {
            r = driver.connect_consumer(reconnect.endpoint(), &plan.spec) => r,
            _ = shared.stopped() => break,
        };
        let result = match link {
            Ok(mut link) => {
                reconnect.connected();
                if !counted {
                    counted = true;
                    shared.connected.fetch_add(1, Ordering::Relaxed);
                }
                let r = consume(&mut link, &plan, &shared, &mut next_tx).await;
                if r.is_ok() {
                    link.close().await;
                }
                r
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => break,
            Err(e) => {
                if !shared
                    .recover(driver.as_ref(), &who, &e, &mut reconnect)
                    .await
                {
                    break;
                }
            }
        }
    }
}

async fn consume<L: ConsumerLink>(
    link: &mut L,
    plan: &ConsumerPlan,
    shared: &ScenarioShared,
    next_tx: &mut u64,
) -> Result<(), DriverError> {
    let tx_size = plan.tx_size;
    let mut in_tx = 0u32;
    let mut current_tx = 0u64;
    let mut received: Vec<Delivery> = Vec::with_capacity(4096);
    let mut latencies = LatencyBatch::default();
    loop {
        received.clear();
        let n = if in_tx > 0 {
            tokio::select! {
                r = link.receive(&mut received) => r?,
                _ = tokio::time::sleep(IDLE_COMMIT) => {
                    link.push_commit(current_tx);
                    link.flush().await?;
                    in_tx = 0;
                    continue;
                }
                _ = shared.stopped() => return Ok(()),
            }
        } else {
            tokio::select! {
                r = link.receive(&mut received) => r?,
                _ = shared.stopped() => return Ok(()),
            }
        };
        // Checked as received, before the acks: a message whose ack is
        // lost with the link comes again, flagged redelivered.
        shared.check_order(&plan.spec.destination, &received);
        let mut now = clock::now_ns();
        for (i, &Delivery { stamp, .. }) in received.iter().enumerate() {
            if stamp != 0 {
                let latency = now.saturating_sub(stamp);
                shared.counters.observe_max_latency(latency);
                latencies.push(latency, &shared.e2e);
            }
            if let Some(delay) = plan.delay {
                shared.counters.consumed.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shared.stopped() => return Ok(()),
                }
                now = clock::now_ns();
            }
            if tx_size > 0 {
                if in_tx == 0 {
                    current_tx = *next_tx;
                    *next_tx += 1;
                    link.push_begin(current_tx);
                }
                link.push_ack(i, Some(current_tx));
                in_tx += 1;
                if in_tx == tx_size {
                    link.push_commit(current_tx);
                    in_tx = 0;
                }
            } else if plan.spec.ack == AckMode::ClientIndividual {
                link.push_ack(i, None);
            }
        }
        // `ack:client` is cumulative: one ACK of the last message covers the batch.
        if tx_size == 0 && plan.spec.ack == AckMode::Client && n > 0 {
            link.push_ack(n - 1, None);
        }
        latencies.flush(&shared.e2e);
        if plan.delay.is_none() {
            shared
                .counters
                .consumed
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        link.flush().await?;
        // Same reason as the producer's yield: stay fair to the other clients.
        tokio::task::yield_now().await;
    }
}
