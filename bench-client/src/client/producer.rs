//! A producer client: sends as fast as the broker takes them (batching many
//! messages per write) or at a fixed rate, with a RECEIPT per persistent SEND
//! or a BEGIN/COMMIT around every `tx_size` messages.
//!
//! A SEND whose RECEIPT had not come when its link failed is resent on the
//! next link with its original stamp (so its latency includes the
//! failover), and counted in `resent`: at least once, never reported lost.
//! A transaction whose COMMIT's RECEIPT never came is counted in
//! `unconfirmed` and not resent (the broker rolled it back or committed it;
//! the client cannot tell which).
//!
//! Fixed-rate producers stamp each message with its *intended* send time
//! (start + k / rate), so a broker that stalls the producer is charged for the
//! whole delay: no coordinated omission.

use super::failover::Reconnect;
use super::ScenarioShared;
use crate::clock;
use crate::driver::{Driver, DriverError, ProducerLink, ProducerSpec};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes buffered before a write when sending unpaced.
const BATCH_BYTES: usize = 32 * 1024;
/// Messages buffered before a write when sending unpaced.
const BATCH_MESSAGES: usize = 128;

/// What one producer does.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    /// Client number (picks the first endpoint, names errors).
    pub index: u32,
    /// Destination, persistence and body.
    pub spec: ProducerSpec,
    /// Wait for a RECEIPT after each SEND (persistent, no transaction).
    pub sync_send: bool,
    /// Messages per transaction, 0 for none.
    pub tx_size: u32,
    /// This producer's share of a fixed rate, msg/s.
    pub rate: Option<f64>,
    /// Stop sending at the queue-staging midpoint.
    pub stop_at_midpoint: bool,
    /// Runs alone on a dedicated thread ([`spawn_on_own_thread`]), so pacing
    /// may block the thread.
    pub own_thread: bool,
}

/// Runs a producer on a dedicated OS thread with its own single-threaded
/// runtime (fixed-rate producers: see the pacing comment in `produce`).
/// The returned future resolves when the producer has finished.
pub fn spawn_on_own_thread<D: Driver>(
    driver: Arc<D>,
    mut plan: ProducerPlan,
    shared: Arc<ScenarioShared>,
) -> impl std::future::Future<Output = ()> + Send {
    plan.own_thread = true;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let thread_shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("paced-producer-{}", plan.index))
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(run(driver, plan, thread_shared)),
                Err(e) => eprintln!("error: paced producer runtime: {e}"),
            }
            let _ = done_tx.send(());
        });
    if let Err(e) = &spawned {
        eprintln!("error: cannot start a paced producer thread: {e}");
        shared.counters.error();
    }
    async move {
        let _ = done_rx.await;
    }
}

/// Runs until the scenario stops, reconnecting after errors.
pub async fn run<D: Driver>(driver: Arc<D>, plan: ProducerPlan, shared: Arc<ScenarioShared>) {
    let who = format!("producer {}", plan.index);
    let mut reconnect = Reconnect::new(plan.index as usize, driver.endpoint_count());
    let mut counted = false;
    let mut state = ProducerState {
        next_receipt: 1,
        next_tx: 1,
        sent: 0,
        start: Instant::now(),
        in_flight: None,
        committing: 0,
    };
    while !shared.is_stopping() {
        let link = tokio::select! {
            r = driver.connect_producer(reconnect.endpoint(), &plan.spec) => r,
            _ = shared.stopped() => break,
        };
        let result = match link {
            Ok(mut link) => {
                reconnect.connected();
                if !counted {
                    counted = true;
                    shared.connected.fetch_add(1, Ordering::Relaxed);
                    state.start = Instant::now();
                }
                let r = produce(&mut link, &plan, &shared, &mut state).await;
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
                let lost_commit = std::mem::take(&mut state.committing);
                shared.unconfirmed.fetch_add(lost_commit, Ordering::Relaxed);
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

/// Survives reconnects, so a fixed-rate schedule keeps its origin.
struct ProducerState {
    next_receipt: u64,
    next_tx: u64,
    /// Messages sent on the fixed-rate schedule so far.
    sent: u64,
    start: Instant,
    /// The stamp of the SEND awaiting its RECEIPT (sync sends).
    in_flight: Option<u64>,
    /// Messages of the COMMIT awaiting its RECEIPT.
    committing: u64,
}

/// Sends until stopped; `Err` means the link is broken.
async fn produce<L: ProducerLink>(
    link: &mut L,
    plan: &ProducerPlan,
    shared: &ScenarioShared,
    state: &mut ProducerState,
) -> Result<(), DriverError> {
    let size = plan.spec.body.len() + 100;
    let batch_limit = (BATCH_BYTES / size).clamp(1, BATCH_MESSAGES) as u64;
    let tx_size = u64::from(plan.tx_size);
    let mut in_tx = 0u64;
    let mut current_tx = 0u64;
    let mut unflushed = 0u64;
    if let (true, Some(stamp)) = (plan.sync_send, state.in_flight) {
        shared.resent.fetch_add(1, Ordering::Relaxed);
        if !send_confirmed(link, shared, state, stamp).await? {
            return Ok(());
        }
    }
    loop {
        if shared.is_stopping() || (plan.stop_at_midpoint && shared.past_midpoint()) {
            return Ok(());
        }
        let count = match plan.rate {
            None => batch_limit,
            Some(rate) => {
                let elapsed = state.start.elapsed().as_secs_f64();
                // Message k is due at start + k/rate (message 0 at once).
                let due = ((elapsed * rate) as u64 + 1).saturating_sub(state.sent);
                if due == 0 {
                    let next = state.start + Duration::from_secs_f64(state.sent as f64 / rate);
                    if plan.own_thread {
                        // Alone on this thread: the OS sleep is precise to tens
                        // of µs, where tokio's timer rounds up to whole ms and
                        // that lateness would show up as broker latency.
                        let wait = next.saturating_duration_since(Instant::now());
                        std::thread::sleep(wait.min(Duration::from_millis(10)));
                        continue;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep_until(next.into()) => {}
                        _ = shared.stopped() => return Ok(()),
                    }
                    continue;
                }
                due.min(batch_limit)
            }
        };
        for _ in 0..count {
            let stamp = match plan.rate {
                Some(rate) => {
                    let intended = state.start + Duration::from_secs_f64(state.sent as f64 / rate);
                    state.sent += 1;
                    clock::ns_at(intended)
                }
                None => clock::now_ns(),
            };
            if tx_size > 0 {
                if in_tx == 0 {
                    current_tx = state.next_tx;
                    state.next_tx += 1;
                    link.push_begin(current_tx);
                }
                link.push_send(stamp, Some(current_tx), None);
                unflushed += 1;
                in_tx += 1;
                if in_tx == tx_size {
                    in_tx = 0;
                    let receipt = state.next_receipt;
                    state.next_receipt += 1;
                    link.push_commit(current_tx, Some(receipt));
                    link.flush().await?;
                    shared
                        .counters
                        .produced
                        .fetch_add(unflushed, Ordering::Relaxed);
                    unflushed = 0;
                    state.committing = tx_size;
                    if !await_receipt(link, receipt, shared).await? {
                        return Ok(());
                    }
                    state.committing = 0;
                    let now = clock::now_ns();
                    shared.receipt.record_all(&[now.saturating_sub(stamp)]);
                    shared.gaps.receipt(now, tx_size);
                }
            } else if plan.sync_send {
                state.in_flight = Some(stamp);
                if !send_confirmed(link, shared, state, stamp).await? {
                    return Ok(());
                }
            } else {
                link.push_send(stamp, None, None);
                unflushed += 1;
            }
        }
        if link.buffered() > 0 {
            tokio::select! {
                r = link.flush() => r?,
                _ = shared.stopped() => return Ok(()),
            }
        }
        if unflushed > 0 && tx_size == 0 {
            shared
                .counters
                .produced
                .fetch_add(unflushed, Ordering::Relaxed);
            unflushed = 0;
        }
        link.check_incoming().await?;
        // A socket write that completes at once never returns Pending, so
        // without this a fast broker lets one producer monopolise a runtime
        // thread and starve the consumers sharing it.
        tokio::task::yield_now().await;
    }
}

/// Sends the message stamped `stamp` with a receipt and waits for it; on
/// the receipt it is no longer in flight and counts as produced. `Ok(false)`
/// if the scenario stopped first.
async fn send_confirmed<L: ProducerLink>(
    link: &mut L,
    shared: &ScenarioShared,
    state: &mut ProducerState,
    stamp: u64,
) -> Result<bool, DriverError> {
    let receipt = state.next_receipt;
    state.next_receipt += 1;
    link.push_send(stamp, None, Some(receipt));
    link.flush().await?;
    if !await_receipt(link, receipt, shared).await? {
        return Ok(false);
    }
    state.in_flight = None;
    let now = clock::now_ns();
    shared.receipt.record_all(&[now.saturating_sub(stamp)]);
    shared.gaps.receipt(now, 1);
    shared.counters.produced.fetch_add(1, Ordering::Relaxed);
    Ok(true)
}

/// Waits for a receipt unless the scenario stops first (then `Ok(false)`).
async fn await_receipt<L: ProducerLink>(
    link: &mut L,
    id: u64,
    shared: &ScenarioShared,
) -> Result<bool, DriverError> {
    tokio::select! {
        r = link.wait_receipt(id) => r.map(|()| true),
        _ = shared.stopped() => Ok(false),
    }
}
