//! The log writer in cluster mode: takes a batch from the [`Queue`] exactly
//! as `thread::run` does, but instead of applying and flushing it locally
//! it proposes the encoded bytes to the cluster ([`Replicator::propose`])
//! and moves on to the next batch while earlier ones are in flight. A
//! completer thread awaits the proposals in log order and only then
//! resolves each batch's commits and releases its held deliveries. The
//! batch reaches this node's store through [`ReplicatedState`]'s
//! `ApplyLog::apply`, like on every other node. Once a proposal resolved
//! (its batch applied here), the completer hands the apply's changes to the
//! [`Pager`], which pages bodies out beyond `store.memory_limit` as the
//! single-node writer does after its apply.
//!
//! The single-node writer does not run this code: choosing it is one branch
//! at start (`LogWriter::start_replicated`), none per batch or message.

use super::queue::{Shared, Waiter, WriterWait};
use super::thread::gather;
use crate::cluster::stages::{self, Stage};
use crate::cluster::{Proposal, ReplicateError, Replicator};
use crate::store::entry;
use crate::store::paging::Pager;
use crate::store::replicated::ReplicatedState;
use crate::store::{Handoff, LogEntry, StoreError};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tracing::{error, info};

/// How long the completer waits for one proposal before it gives up on it
/// (its commits fail: the outcome is unknown, so no receipt is sent).
const PROPOSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the cluster-mode writer needs.
#[derive(Clone)]
pub struct Replication {
    /// Set once the cluster node has started (it needs the store first);
    /// until then every batch fails as "not the leader".
    pub replicator: Arc<OnceLock<Arc<dyn Replicator>>>,
    /// The runtime the cluster runs on (proposals are its futures).
    pub runtime: tokio::runtime::Handle,
    /// Batches proposed and not resolved yet, at most (`cluster.max_in_flight`).
    pub max_in_flight: usize,
}

/// One proposed batch, on its way to the completer.
struct InFlight {
    proposal: Proposal,
    waiters: Vec<Waiter>,
    handoffs: Vec<Handoff>,
    /// Seqs of the batch's enqueues: their single-message commits are
    /// looked up at resolution (an ack may have resolved them earlier).
    enqueued: Vec<u64>,
    /// The entries proposed: the pager's, once applied.
    entries: Vec<LogEntry>,
    /// When the writer took the batch and when it proposed it: the ends of
    /// the commit's stages (`cluster::stages`).
    taken: Instant,
    proposed: Instant,
}

/// Counts batches in flight; the writer waits for a free slot before it
/// proposes (backpressure from the cluster, like the queue bound's from
/// the disk).
#[derive(Default)]
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    /// Waits until fewer than `max` are used (without taking one).
    fn wait_free(&self, max: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= max {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn is_free(&self, max: usize) -> bool {
        *self.used.lock().unwrap_or_else(|e| e.into_inner()) < max
    }

    fn take(&self, max: usize) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= max {
            used = self.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
    }

    fn give(&self) {
        *self.used.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.freed.notify_one();
    }
}

/// The cluster-mode writer thread's loop.
pub(super) fn run(
    shared: Arc<Shared>,
    state: Arc<ReplicatedState>,
    replication: Replication,
    mut pager: Pager,
) {
    let slots = Arc::new(Slots::default());
    let (to_completer, proposed) = std::sync::mpsc::channel::<InFlight>();
    let completer = {
        let (shared, state, slots) = (shared.clone(), state.clone(), slots.clone());
        let runtime = replication.runtime.clone();
        std::thread::Builder::new()
            .name("ferromq-log-commits".into())
            .spawn(move || {
                for batch in proposed {
                    complete(&shared, &state, &runtime, &mut pager, batch);
                    slots.give();
                }
            })
    };
    let completer = match completer {
        Ok(handle) => handle,
        Err(e) => {
            error!(error = %e, "cannot start the log commit thread; refusing persistent messages");
            shared.lock().broken = Some(StoreError::Io(format!("commit thread: {e}")));
            shared.space.notify_all();
            return;
        }
    };
    let max_in_flight = replication.max_in_flight.max(1);
    let mut max_seq = state.max_seq();
    loop {
        let (entries, waiters, handoffs, closing) = {
            let mut q = shared.lock();
            loop {
                q.writer = WriterWait::Idle;
                while (q.entries.is_empty() && q.handoffs.is_empty() || q.holds > 0) && !q.closed {
                    q = shared.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q.writer = WriterWait::Busy;
                // Entries to propose wait for a free slot *before* the
                // batch is taken, so that everything queued meanwhile goes
                // into it: openraft 0.9 writes and fsyncs each proposal on
                // its own, one after the other in its core task (it awaits
                // each append's flush), so a proposal per handful of
                // messages costs a leader fsync each and delays the commit
                // of all later ones; one batch per free slot is the group
                // commit. (Taking first and waiting after, as before, sent
                // small batches and left the rest queued behind them.)
                // Deliveries without entries need no slot.
                if q.closed || q.entries.is_empty() || slots.is_free(max_in_flight) {
                    break;
                }
                drop(q);
                slots.wait_free(max_in_flight);
                q = shared.lock();
            }
            let gathering = Instant::now();
            q = gather(&shared, q, shared.settings.ack_gather);
            stages::record(Stage::Gather, gathering.elapsed());
            let b = shared.take_batch(q);
            (b.entries, b.waiters, b.handoffs, b.closing)
        };
        let taken = Instant::now();
        let nothing_taken = entries.is_empty();
        if !entries.is_empty() || !waiters.is_empty() || !handoffs.is_empty() {
            let enqueued = entries
                .iter()
                .filter_map(|e| match e {
                    LogEntry::Enqueue { message, .. } => Some(message.seq),
                    _ => None,
                })
                .collect();
            // Applied batches may carry seqs this writer never saw (a
            // previous leader's): the batch's max_seq covers both.
            max_seq = max_seq.max(state.max_seq());
            let proposal = match entry::build(&entries, max_seq) {
                Err(e) => Err(StoreError::Io(e.to_string())),
                Ok(_) if entries.is_empty() => Ok(None),
                Ok((built, _)) => match replication.replicator.get() {
                    None => Err(StoreError::NotCommitted(
                        "the cluster node has not started".into(),
                    )),
                    Some(replicator) => {
                        max_seq = built.max_seq;
                        // Free (waited for above) unless the batch was
                        // taken while closing: only this thread takes.
                        slots.take(max_in_flight);
                        // The entry's position in the log is fixed here, so
                        // batches commit in the order they were taken.
                        Ok(Some(replicator.propose(built.to_bytes().into())))
                    }
                },
            };
            match proposal {
                Ok(Some(proposal)) => {
                    let proposed = Instant::now();
                    stages::record(Stage::Encode, proposed - taken);
                    let batch = InFlight {
                        proposal,
                        waiters,
                        handoffs,
                        enqueued,
                        entries,
                        taken,
                        proposed,
                    };
                    if let Err(unsent) = to_completer.send(batch) {
                        slots.give();
                        resolve(&shared, unsent.0, Err(StoreError::Closed));
                    }
                }
                // Nothing to write (deliveries without records): answer now.
                Ok(None) => resolve_now(&shared, waiters, handoffs, enqueued, Ok(())),
                Err(e) => {
                    fail(&shared, &state, &e);
                    resolve_now(&shared, waiters, handoffs, enqueued, Err(e));
                }
            }
        }
        if closing && nothing_taken {
            break;
        }
    }
    drop(to_completer);
    if completer.join().is_err() {
        error!("the store's log commit thread panicked");
    }
    if let Err(e) = state.flush() {
        error!(error = %e, "the store could not flush at close");
    }
    info!("store closed (cluster mode)");
}

/// Awaits one proposal and resolves its batch.
fn complete(
    shared: &Shared,
    state: &ReplicatedState,
    runtime: &tokio::runtime::Handle,
    pager: &mut Pager,
    batch: InFlight,
) {
    let InFlight {
        proposal,
        waiters,
        handoffs,
        enqueued,
        entries,
        taken,
        proposed,
    } = batch;
    let outcome = runtime.block_on(async {
        match tokio::time::timeout(PROPOSAL_TIMEOUT, proposal).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ReplicateError::Abandoned),
        }
    });
    // Durability ordering: a proposal resolves Ok once its batch is on disk
    // (fsynced) in the Raft log of the leader and of enough followers to
    // make a majority, and applied here. Only then may a commit, and with
    // it a RECEIPT, resolve: a receipt means "fsynced on the leader and on
    // a majority". Any error fails the commits; none of them is ever
    // answered later.
    let (result, index) = match outcome {
        Ok(index) => (Ok(()), Some(index)),
        Err(e) => {
            let e = StoreError::NotCommitted(e.to_string());
            fail(shared, state, &e);
            (Err(e), None)
        }
    };
    let resolved = Instant::now();
    shared
        .live_bytes
        .store(state.live_bytes(), Ordering::Relaxed);
    resolve_now(shared, waiters, handoffs, enqueued, result);
    if let Some(index) = index {
        let answered = Instant::now();
        stages::record_commit(index, proposed, resolved);
        stages::record(Stage::Receipt, answered - resolved);
        stages::record(Stage::Total, answered - taken);
    }
    // After the receipts: paging is memory bookkeeping, no receipt waits
    // for it. The batch is applied here (the proposal resolved), so every
    // body paged out has its record in the store (see `replicated`).
    if let Some(changes) = index.and_then(|index| state.take_changes(index)) {
        pager.after_apply(&entries, &changes);
        shared.publish_paging(pager);
    }
}

/// After a batch that did not commit the router's memory may be ahead of
/// the log: refuse persistent messages from now on, and say so to
/// `crate::leadership`, which stops serving and restarts the node.
fn fail(shared: &Shared, state: &ReplicatedState, e: &StoreError) {
    state.mark_diverged();
    error!(error = %e, "a batch was not committed by the cluster; refusing persistent messages from now on");
    let mut q = shared.lock();
    if q.broken.is_none() {
        q.broken = Some(e.clone());
    }
    drop(q);
    shared.space.notify_all();
}

fn resolve(shared: &Shared, batch: InFlight, result: Result<(), StoreError>) {
    resolve_now(
        shared,
        batch.waiters,
        batch.handoffs,
        batch.enqueued,
        result,
    );
}

/// Resolves a batch's commits and releases its deliveries (as `thread::run`
/// does after its flush).
fn resolve_now(
    shared: &Shared,
    mut waiters: Vec<Waiter>,
    handoffs: Vec<Handoff>,
    enqueued: Vec<u64>,
    result: Result<(), StoreError>,
) {
    {
        let mut q = shared.lock();
        for seq in enqueued {
            waiters.extend(q.by_seq.remove(&seq));
        }
        q.expect = waiters.iter().filter(|w| !w.is_closed()).count() + q.receipts;
        if q.writer == WriterWait::Gathering && q.wakes_writer() {
            shared.work.notify_one();
        }
    }
    for w in waiters {
        let _ = w.send(result.clone());
    }
    for h in handoffs {
        h.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ApplyLog, ClusterStatus, LeaderInfo, Role};
    use crate::message::Message;
    use crate::store::log_writer::{WriterSettings, ACK_GATHER};
    use crate::store::sled_store::{SledStore, StoreSettings};
    use crate::store::Store;
    use bytes::Bytes;
    use ferromq_config::StoreSync;
    use ferromq_protocol::Headers;
    use std::sync::atomic::AtomicU64;

    /// The parts of [`Replicator`] the writer reads besides `propose`, as
    /// every fake here answers them: this node leads and names no other;
    /// `$fenced` says whether its lease ran out.
    macro_rules! leading {
        ($fenced:expr) => {
            fn role(&self) -> Role {
                Role::Leader
            }
            fn leader(&self) -> Option<LeaderInfo> {
                None
            }
            fn is_fenced(&self) -> bool {
                ($fenced)(self)
            }
            fn status(&self) -> ClusterStatus {
                unimplemented!("not used by the writer")
            }
        };
    }

    /// Commits every batch at once (a one-node "majority") and applies it,
    /// or refuses every batch as a follower would.
    struct Fake {
        state: OnceLock<Arc<ReplicatedState>>,
        next: AtomicU64,
        leader: bool,
    }

    impl Replicator for Fake {
        fn propose(&self, batch: Bytes) -> Proposal {
            if !self.leader {
                return Proposal::ready(Err(ReplicateError::NotLeader { leader: None }));
            }
            let index = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            let applied = match self.state.get() {
                Some(state) => state.apply(index, &batch).map(|_| index),
                None => Ok(index),
            };
            Proposal::ready(applied.map_err(|e| ReplicateError::Stopped(e.to_string())))
        }
        leading!(|fake: &Self| !fake.leader);
    }

    fn open(
        dir: &std::path::Path,
        leader: bool,
        runtime: &tokio::runtime::Runtime,
    ) -> (SledStore, Arc<ReplicatedState>) {
        open_with_budget(dir, leader, runtime, 1 << 30)
    }

    fn open_with_budget(
        dir: &std::path::Path,
        leader: bool,
        runtime: &tokio::runtime::Runtime,
        body_budget: u64,
    ) -> (SledStore, Arc<ReplicatedState>) {
        let fake = Arc::new(Fake {
            state: OnceLock::new(),
            next: AtomicU64::new(0),
            leader,
        });
        let (store, state) = open_on(dir, runtime, body_budget, fake.clone());
        let _ = fake.state.set(state.clone());
        (store, state)
    }

    /// Opens a cluster-mode store proposing through `fake`.
    fn open_on(
        dir: &std::path::Path,
        runtime: &tokio::runtime::Runtime,
        body_budget: u64,
        fake: Arc<dyn Replicator>,
    ) -> (SledStore, Arc<ReplicatedState>) {
        open_with(dir, runtime, body_budget, fake, 4)
    }

    fn open_on_with_slots(
        dir: &std::path::Path,
        runtime: &tokio::runtime::Runtime,
        fake: Arc<dyn Replicator>,
        max_in_flight: usize,
    ) -> (SledStore, Arc<ReplicatedState>) {
        open_with(dir, runtime, 1 << 30, fake, max_in_flight)
    }

    fn open_with(
        dir: &std::path::Path,
        runtime: &tokio::runtime::Runtime,
        body_budget: u64,
        fake: Arc<dyn Replicator>,
        max_in_flight: usize,
    ) -> (SledStore, Arc<ReplicatedState>) {
        let replicator: Arc<OnceLock<Arc<dyn Replicator>>> = Arc::new(OnceLock::new());
        let settings = StoreSettings {
            path: dir.to_path_buf(),
            writer: WriterSettings {
                sync: StoreSync::Always,
                batch_delay: Duration::from_millis(2),
                disk_limit: 1 << 30,
                ack_gather: ACK_GATHER,
                checkpoint_bytes: u64::MAX,
            },
            cache_bytes: 8 << 20,
            body_budget,
            compact_min_bytes: u64::MAX,
            bodies: crate::store::body_segments::BodySettings::new(dir.join("bodies"), 64 << 10),
        };
        let (store, state) = SledStore::open_replicated(
            settings,
            Replication {
                replicator: replicator.clone(),
                runtime: runtime.handle().clone(),
                max_in_flight,
            },
        )
        .unwrap();
        let _ = replicator.set(fake);
        (store, state)
    }

    fn enqueue(seq: u64) -> LogEntry {
        enqueue_body(seq, Bytes::from_static(b"body"), false)
    }

    fn enqueue_body(seq: u64, body: Bytes, backlog: bool) -> LogEntry {
        LogEntry::Enqueue {
            message: Arc::new(Message {
                seq,
                destination: "/queue/a".into(),
                persistent: true,
                priority: 4,
                expires: 0,
                timestamp: 1,
                headers: Headers::new(),
                body: body.into(),
            }),
            backlog,
        }
    }

    /// Seqs of the live messages, read back lane by lane with the cursor
    /// after a leader's restore.
    fn live_seqs(store: &SledStore, state: &ReplicatedState) -> Vec<u64> {
        let recovered = state.recovered().unwrap();
        let mut seqs = Vec::new();
        for lane in recovered.backlog {
            let read = store
                .read_backlog(&lane.destination, lane.priority, 0, usize::MAX)
                .unwrap();
            seqs.extend(read.messages.iter().map(|m| m.message.seq));
        }
        seqs
    }

    #[test]
    fn a_commit_resolves_once_its_batch_is_committed_and_applied() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (store, state) = open(dir.path(), true, &runtime);
        let commits: Vec<_> = (1..=20)
            .map(|seq| store.append(vec![enqueue(seq)]))
            .collect();
        for c in commits {
            runtime.block_on(c.wait()).unwrap();
        }
        // Every receipted message is in the applied state, with its index.
        assert_eq!(live_seqs(&store, &state), (1..=20).collect::<Vec<u64>>());
        assert!(state.last_applied().is_some_and(|i| i >= 1));
        assert!(!state.diverged());
        store.close();
    }

    #[test]
    fn a_batch_the_cluster_refuses_fails_its_commits_and_the_store_refuses_more() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (store, state) = open(dir.path(), false, &runtime);
        let refused = runtime.block_on(store.append(vec![enqueue(1)]).wait());
        assert!(
            matches!(&refused, Err(StoreError::NotCommitted(reason)) if reason.contains("not the leader")),
            "{refused:?}"
        );
        assert!(store.append(vec![enqueue(2)]).is_failed());
        // The leader must step down and rebuild (crate::leadership).
        assert!(state.diverged());
        assert!(live_seqs(&store, &state).is_empty());
        store.close();
    }

    /// On the leader (its router restored), bodies beyond the budget are
    /// paged out once their batch is committed and applied, newest first,
    /// and read back from the store; messages the router left to the
    /// store are read back by the cursor once applied, and not counted.
    #[test]
    fn the_leader_pages_bodies_and_reads_its_backlog_once_applied() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (store, state) = open_with_budget(dir.path(), true, &runtime, 250);
        assert!(store.keeps_backlog());
        let restored = state.recovered().unwrap();
        assert!(restored.backlog.is_empty());
        let body = |seq: u64| Bytes::from(format!("{seq:0>100}"));
        let held: Vec<LogEntry> = (1..=5)
            .map(|seq| enqueue_body(seq, body(seq), false))
            .collect();
        let left: Vec<LogEntry> = (6..=8)
            .map(|seq| enqueue_body(seq, body(seq), true))
            .collect();
        runtime.block_on(store.append(held.clone()).wait()).unwrap();
        runtime.block_on(store.append(left).wait()).unwrap();
        // The pager runs right after the receipts: wait for its gauges.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.metrics().unwrap().paged_messages < 3 {
            assert!(std::time::Instant::now() < deadline, "nothing paged");
            std::thread::sleep(Duration::from_millis(5));
        }
        let m = store.metrics().unwrap();
        assert_eq!((m.resident_bytes, m.paged_messages), (200, 3));
        for (seq, e) in (1..).zip(&held) {
            let LogEntry::Enqueue { message, .. } = e else {
                unreachable!()
            };
            assert_eq!(message.body.is_resident(), seq <= 2, "seq {seq}");
            assert_eq!(message.body.get().unwrap(), body(seq));
        }
        let read = store.read_backlog("/queue/a", 4, 0, 100).unwrap();
        let seqs: Vec<u64> = read.messages.iter().map(|m| m.message.seq).collect();
        assert_eq!(seqs, vec![6, 7, 8], "held ones are the router's");
        store.close();
    }

    /// Holds its first proposal until `release` fires; commits every
    /// proposal in order, applying it as it resolves.
    struct Gated {
        state: OnceLock<Arc<ReplicatedState>>,
        next: AtomicU64,
        release: Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    }

    impl Replicator for Gated {
        fn propose(&self, batch: Bytes) -> Proposal {
            let index = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            let gate = match index {
                1 => self.release.lock().unwrap().take(),
                _ => None,
            };
            let state = self.state.get().cloned();
            Proposal::pending(async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                match state {
                    Some(state) => state.apply(index, &batch).map(|_| index),
                    None => Ok(index),
                }
                .map_err(|e| ReplicateError::Stopped(e.to_string()))
            })
        }
        leading!(|_: &Self| false);
    }

    /// With every slot in flight, what is appended meanwhile waits in the
    /// queue and goes out as one proposal once a slot frees, not as a
    /// small batch taken early and a remainder queued behind it.
    #[test]
    fn appends_made_while_every_slot_is_in_flight_become_one_proposal() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (release, gate) = tokio::sync::oneshot::channel();
        let fake = Arc::new(Gated {
            state: OnceLock::new(),
            next: AtomicU64::new(0),
            release: Mutex::new(Some(gate)),
        });
        let (store, state) = open_on_with_slots(dir.path(), &runtime, fake.clone(), 1);
        let _ = fake.state.set(state.clone());
        let first = store.append(vec![enqueue(1)]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while fake.next.load(Ordering::SeqCst) < 1 {
            assert!(std::time::Instant::now() < deadline, "nothing proposed");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The one slot is taken: these wait in the writer's queue.
        let later: Vec<_> = (2..=10)
            .map(|seq| {
                let commit = store.append(vec![enqueue(seq)]);
                std::thread::sleep(Duration::from_millis(5));
                commit
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            fake.next.load(Ordering::SeqCst),
            1,
            "proposed past the slot"
        );
        release.send(()).unwrap();
        runtime.block_on(first.wait()).unwrap();
        for commit in later {
            runtime.block_on(commit.wait()).unwrap();
        }
        assert_eq!(
            fake.next.load(Ordering::SeqCst),
            2,
            "the nine later appends went out in one proposal"
        );
        assert_eq!(live_seqs(&store, &state), (1..=10).collect::<Vec<u64>>());
        store.close();
    }

    /// Holds every proposal open until `release` turns true, then commits
    /// it (applied nowhere) or fails it as a fenced leader's.
    struct Held {
        fenced: bool,
        release: tokio::sync::watch::Receiver<bool>,
    }

    impl Replicator for Held {
        fn propose(&self, _batch: Bytes) -> Proposal {
            let (mut release, fenced) = (self.release.clone(), self.fenced);
            Proposal::pending(async move {
                let _ = release.wait_for(|released| *released).await;
                if fenced {
                    Err(ReplicateError::Fenced)
                } else {
                    Ok(1)
                }
            })
        }
        leading!(|held: &Self| held.fenced);
    }

    /// A consumer's ack of a message whose batch is still proposed answers
    /// the producer at once on a leader holding its lease
    /// (store-and-dispatch), and never on a fenced one: there the receipt
    /// waits for the proposal and fails with it. Before this, a leader
    /// continued after SIGSTOP receipted SENDs taken while it was deposed
    /// through its consumers' acks (`cluster_pause`).
    #[test]
    fn an_ack_answers_a_receipt_early_only_on_a_leader_holding_its_lease() {
        for fenced in [false, true] {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let (release, held) = tokio::sync::watch::channel(false);
            let fake = Arc::new(Held {
                fenced,
                release: held,
            });
            let (store, _state) = open_on(dir.path(), &runtime, 1 << 30, fake);
            let mut sent = Box::pin(store.append(vec![enqueue(1)]).wait());
            let _ack = store.append(vec![LogEntry::Ack {
                destination: "/queue/a".into(),
                seq: 1,
            }]);
            let wait = Duration::from_millis(if fenced { 300 } else { 10_000 });
            let early = runtime.block_on(async { tokio::time::timeout(wait, &mut sent).await });
            if fenced {
                assert!(early.is_err(), "a fenced leader answered early: {early:?}");
                release.send_replace(true);
                let late = runtime.block_on(sent);
                assert!(
                    matches!(&late, Err(StoreError::NotCommitted(reason)) if reason.contains("fenced")),
                    "{late:?}"
                );
            } else {
                assert!(matches!(early, Ok(Ok(()))), "{early:?}");
                release.send_replace(true);
            }
            store.close();
        }
    }

    /// Like the real node in the one respect that matters here: a
    /// proposal needs a runtime worker (a task applies it). The first
    /// proposal waits a moment, so producers fill the writer's queue
    /// meanwhile.
    struct NeedsWorker {
        state: OnceLock<Arc<ReplicatedState>>,
        next: AtomicU64,
        runtime: tokio::runtime::Handle,
    }

    impl Replicator for NeedsWorker {
        fn propose(&self, batch: Bytes) -> Proposal {
            let index = self.next.fetch_add(1, Ordering::SeqCst) + 1;
            if index == 1 {
                std::thread::sleep(Duration::from_millis(500));
            }
            let state = self.state.get().cloned();
            let apply = self.runtime.spawn(async move {
                match state {
                    Some(state) => state.apply(index, &batch).map(|_| index),
                    None => Ok(index),
                }
            });
            // The writer's thread waits for a worker to run the task.
            let applied = match self.runtime.block_on(apply) {
                Ok(Ok(index)) => Ok(index),
                Ok(Err(e)) => Err(ReplicateError::Stopped(e.to_string())),
                Err(e) => Err(ReplicateError::Stopped(e.to_string())),
            };
            Proposal::ready(applied)
        }
        leading!(|_: &Self| false);
    }

    /// Producers (sessions appending on the runtime's workers) faster than
    /// the cluster fill the writer's queue and wait for space; the wait
    /// must leave the workers to the runtime, or no proposal resolves and
    /// the leader freezes (it did, under 10 producers of async sends).
    #[test]
    fn producers_waiting_for_a_full_queue_leave_the_runtime_to_the_cluster() {
        const TASKS: usize = 4;
        const PER_TASK: usize = 16;
        const BODY: usize = 1 << 20;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(NeedsWorker {
            state: OnceLock::new(),
            next: AtomicU64::new(0),
            runtime: runtime.handle().clone(),
        });
        let (store, state) = open_on(dir.path(), &runtime, 1 << 30, fake.clone());
        let _ = fake.state.set(state);
        let store = Arc::new(store);
        let (done_tx, done) = std::sync::mpsc::channel();
        for t in 0..TASKS {
            let (store, done_tx) = (store.clone(), done_tx.clone());
            runtime.spawn(async move {
                // As a session does: the append blocks while the queue is
                // full, then the commit is awaited.
                let commits: Vec<_> = (0..PER_TASK)
                    .map(|i| {
                        let seq = (t * PER_TASK + i + 1) as u64;
                        let body = Bytes::from(vec![b'x'; BODY]);
                        store.append(vec![enqueue_body(seq, body, false)])
                    })
                    .collect();
                let mut committed = 0;
                for c in commits {
                    committed += usize::from(c.wait().await.is_ok());
                }
                let _ = done_tx.send(committed);
            });
        }
        drop(done_tx);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut committed = 0;
        for _ in 0..TASKS {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match done.recv_timeout(left) {
                Ok(n) => committed += n,
                Err(_) => {
                    // Dropping a runtime whose workers are stuck would hang.
                    std::mem::forget(runtime);
                    panic!("stuck: {committed} commits; waiting producers hold every worker");
                }
            }
        }
        assert_eq!(committed, TASKS * PER_TASK);
        assert!(fake.next.load(Ordering::SeqCst) >= 2, "one batch took all");
        store.close();
    }
}
