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
//! With the order check on ([`crate::order`]), each message also carries the
//! producer's id and its sequence number (a resent SEND keeps its number),
//! and the producer reports what it sent and what was receipted for the
//! manifest. An async producer ends with one receipted SEND, so the
//! manifest can say how far the broker confirmed it.
//!
//! Fixed-rate producers stamp each message with its *intended* send time
//! (start + k / rate), so a broker that stalls the producer is charged for the
//! whole delay: no coordinated omission.

use super::failover::Reconnect;
use super::ScenarioShared;
use crate::clock;
use crate::driver::{Driver, DriverError, ProducerLink, ProducerSpec};
use crate::order::manifest::ManifestEntry;
use crate::order::Origin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes buffered before a write when sending unpaced.
const BATCH_BYTES: usize = 32 * 1024;
/// Messages buffered before a write when sending unpaced.
const BATCH_MESSAGES: usize = 128;
/// How long a stamped producer's last writes, and then its last receipted
/// SEND, may each take once the run stops: twice this stays under the
/// runner's 10 s for clients to finish, since a producer abandoned there
/// would leave no manifest line (and its messages would count as a stranger's).
const TAIL_WAIT: Duration = Duration::from_secs(4);

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
    /// The producer id to stamp on every message with a sequence number
    /// (the order check), if any.
    pub stamp_id: Option<u64>,
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
        seq: 0,
        receipted: 0,
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
    if let Some(id) = plan.stamp_id {
        shared.manifest_entry(ManifestEntry {
            producer: id,
            destination: plan.spec.destination.clone(),
            first: 1,
            sent: state.seq,
            receipted: state.receipted,
        });
    }
}

/// Survives reconnects, so a fixed-rate schedule keeps its origin.
struct ProducerState {
    next_receipt: u64,
    next_tx: u64,
    /// Messages sent on the fixed-rate schedule so far.
    sent: u64,
    start: Instant,
    /// The stamps of the SEND awaiting its RECEIPT (sync sends).
    in_flight: Option<(u64, Option<Origin>)>,
    /// Messages of the COMMIT awaiting its RECEIPT.
    committing: u64,
    /// The last sequence number given to a message (order check).
    seq: u64,
    /// The last sequence number a RECEIPT covers.
    receipted: u64,
}

impl ProducerState {
    /// The next message's origin stamp, if stamping.
    fn next_origin(&mut self, plan: &ProducerPlan) -> Option<Origin> {
        let producer = plan.stamp_id?;
        self.seq += 1;
        Some(Origin {
            producer,
            seq: self.seq,
        })
    }
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
    if let (true, Some((stamp, origin))) = (plan.sync_send, state.in_flight) {
        shared.resent.fetch_add(1, Ordering::Relaxed);
        if !send_confirmed(link, shared, state, stamp, origin).await? {
            return Ok(());
        }
    }
    loop {
        if shared.is_stopping() || (plan.stop_at_midpoint && shared.past_midpoint()) {
            if plan.stamp_id.is_some() && !plan.sync_send && tx_size == 0 {
                confirm_tail(link, plan, state).await?;
            }
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
                let origin = state.next_origin(plan);
                link.push_send(stamp, origin, Some(current_tx), None);
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
                    state.receipted = state.seq;
                    let now = clock::now_ns();
                    shared.receipt.record_all(&[now.saturating_sub(stamp)]);
                    shared.gaps.receipt(now, tx_size);
                }
            } else if plan.sync_send {
                let origin = state.next_origin(plan);
                state.in_flight = Some((stamp, origin));
                if !send_confirmed(link, shared, state, stamp, origin).await? {
                    return Ok(());
                }
            } else {
                let origin = state.next_origin(plan);
                link.push_send(stamp, origin, None, None);
                unflushed += 1;
            }
        }
        if link.buffered() > 0 {
            if plan.stamp_id.is_some() {
                // Not cut short by the stop: a write abandoned half way
                // would be written again whole by the next flush, and
                // the manifest's numbers must be what the link carried.
                let stalled = async {
                    shared.stopped().await;
                    tokio::time::sleep(TAIL_WAIT).await;
                };
                tokio::select! {
                    r = link.flush() => r?,
                    // The link is left as it is (an error: not closed).
                    _ = stalled => return Err(tail_timeout("the last writes")),
                }
            } else {
                tokio::select! {
                    r = link.flush() => r?,
                    _ = shared.stopped() => return Ok(()),
                }
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
    origin: Option<Origin>,
) -> Result<bool, DriverError> {
    let receipt = state.next_receipt;
    state.next_receipt += 1;
    link.push_send(stamp, origin, None, Some(receipt));
    link.flush().await?;
    if !await_receipt(link, receipt, shared).await? {
        return Ok(false);
    }
    state.in_flight = None;
    if let Some(o) = origin {
        state.receipted = o.seq;
    }
    let now = clock::now_ns();
    shared.receipt.record_all(&[now.saturating_sub(stamp)]);
    shared.gaps.receipt(now, 1);
    shared.counters.produced.fetch_add(1, Ordering::Relaxed);
    Ok(true)
}

/// An async stamped producer's last message, sent with a RECEIPT once the
/// run stops: the broker persists one producer's messages in order, so its
/// RECEIPT covers every message before it, and the manifest's `receipted`
/// says how far. Not counted as produced (the samples are over). A broker
/// that does not answer within [`TAIL_WAIT`] fails the link (and leaves
/// `receipted` as it was).
async fn confirm_tail<L: ProducerLink>(
    link: &mut L,
    plan: &ProducerPlan,
    state: &mut ProducerState,
) -> Result<(), DriverError> {
    let origin = state.next_origin(plan);
    let receipt = state.next_receipt;
    state.next_receipt += 1;
    link.push_send(clock::now_ns(), origin, None, Some(receipt));
    let confirm = async {
        link.flush().await?;
        link.wait_receipt(receipt).await
    };
    tokio::time::timeout(TAIL_WAIT, confirm)
        .await
        .map_err(|_| tail_timeout("the RECEIPT of the last stamped SEND"))??;
    if let Some(o) = origin {
        state.receipted = o.seq;
    }
    Ok(())
}

/// A stamped producer's link that did not finish within [`TAIL_WAIT`] of
/// the stop (the broker holds it: flow control, a stall).
fn tail_timeout(what: &'static str) -> DriverError {
    DriverError::Timeout {
        endpoint: "producer link".into(),
        what,
    }
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
