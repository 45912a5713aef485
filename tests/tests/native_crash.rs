//! The native twin of `durability_crash.rs`'s transaction test: kill -9 at
//! random points while native producers commit transactions of several
//! persistent sends (Declare, transfers in the transaction, Discharge).
//! After each restart every transaction whose Discharge was answered is
//! back whole, and no transaction ever comes back split: a native
//! transaction is one atomic log batch, as a STOMP COMMIT is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::client::{Connection, OutgoingMessage, ReceiverOptions, SettleMode};
use native_common::broker;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::timeout;

const QUEUE: &str = "/queue/native-crash-tx";
/// Sends per transaction. Many, so that a commit that did not hold the log
/// would be split by the writer often enough for a kill to land between
/// the halves (checked: with the hold removed from `Transaction::commit`,
/// this test fails).
const PER_TX: u64 = 50;
/// Longest a single client call may take before the producer gives up
/// (the broker is being killed under it).
const STEP: Duration = Duration::from_secs(5);

/// xorshift: the kill points only need to vary between runs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Commits transactions numbered from `n` until the broker goes away;
/// records the committed ones and returns the next number to use.
async fn produce_transactions(
    addr: SocketAddr,
    mut n: u64,
    committed: Arc<Mutex<HashSet<u64>>>,
) -> u64 {
    let Ok(Ok(conn)) = timeout(STEP, Connection::connect(&format!("ferromq://{addr}"))).await
    else {
        return n;
    };
    let Ok(Ok(sender)) = timeout(STEP, conn.open_sender(QUEUE, SettleMode::Unsettled)).await else {
        return n;
    };
    // Bounded: a broker that never dies would end the loop anyway.
    for _ in 0..100_000 {
        let Ok(Ok(txn)) = timeout(STEP, conn.declare()).await else {
            return n + 1;
        };
        for i in 0..PER_TX {
            let m = OutgoingMessage::text(&format!("t{n}-{i}")).persistent(true);
            if !matches!(timeout(STEP, sender.send_in(&txn, m)).await, Ok(Ok(_))) {
                return n + 1;
            }
        }
        match timeout(STEP, txn.commit()).await {
            Ok(Ok(())) => {
                committed.lock().unwrap().insert(n);
            }
            // Unknown outcome: it may or may not be back, but whole.
            _ => return n + 1,
        }
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_never_splits_a_native_transaction() {
    let loops: usize = std::env::var("FERROMQ_CRASH_LOOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1);
    let committed = Arc::new(Mutex::new(HashSet::new()));
    // Producer p numbers its transactions from p * 10^9 up.
    let mut next = [0u64, 1_000_000_000];
    let b = broker();
    let dir = b.dir;
    let mut broker = b.broker;
    for _ in 0..loops {
        let addr = broker.listener("native").unwrap();
        let producers: Vec<_> = next
            .iter()
            .map(|&n| tokio::spawn(produce_transactions(addr, n, committed.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(100 + rng.next() % 400)).await;
        broker.kill9();
        for (p, h) in producers.into_iter().enumerate() {
            next[p] = h.await.unwrap();
        }
        broker = broker.restart();
    }
    let addr = broker.listener("native").unwrap();
    let conn = Connection::connect(&format!("ferromq://{addr}"))
        .await
        .unwrap();
    let options = ReceiverOptions {
        credit: 200,
        settle_mode: SettleMode::Unsettled,
        ..ReceiverOptions::default()
    };
    let mut r = conn.open_receiver(QUEUE, options).await.unwrap();
    let mut per_tx: HashMap<u64, Vec<String>> = HashMap::new();
    while let Ok(Some(d)) = timeout(Duration::from_secs(2), r.recv()).await {
        let body = String::from_utf8_lossy(d.body()).into_owned();
        let n: u64 = body[1..body.find('-').unwrap()].parse().unwrap();
        per_tx.entry(n).or_default().push(body);
        r.accept(&d).await.unwrap();
    }
    let committed = committed.lock().unwrap().clone();
    assert!(!committed.is_empty(), "no transaction was ever committed");
    for n in &committed {
        assert!(per_tx.contains_key(n), "committed transaction {n} lost");
    }
    for (n, bodies) in &per_tx {
        let want: Vec<String> = (0..PER_TX).map(|i| format!("t{n}-{i}")).collect();
        assert_eq!(
            bodies, &want,
            "transaction {n} came back split or out of order"
        );
    }
    eprintln!(
        "native transactions: {} committed with an answer, {} recovered whole",
        committed.len(),
        per_tx.len()
    );
    drop(broker);
    drop(dir);
}
