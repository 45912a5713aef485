//! [`Ledger`]: what the load's clients observed across every session, and
//! the checks of the rules listed in the parent module against it and
//! against the nodes' logs ([`serving_terms`], [`check_terms`]).

use super::TX_SIZE;
use crate::cluster::Node;
use crate::conn::body_of;
use ferromq_protocol::stomp::Frame;
use std::collections::{BTreeMap, HashMap, HashSet};

/// What the clients observed, across every session.
#[derive(Default)]
pub struct Ledger {
    /// Bodies whose SEND got a RECEIPT.
    pub receipted: HashSet<String>,
    /// RECEIPTs per node index (which node answered).
    pub receipts_by_node: BTreeMap<usize, u64>,
    /// Bodies an ACK was sent for.
    pub ack_sent: HashSet<String>,
    /// Bodies whose ACK got a RECEIPT.
    pub acked: HashSet<String>,
    /// Deliveries per body.
    pub deliveries: HashMap<String, u32>,
    /// Deliveries that carried `redelivered:true`.
    pub marked_redelivered: u64,
    /// Sequence number of each message id seen, and its body.
    pub seqs: HashMap<u64, String>,
    /// Transactions whose COMMIT got a RECEIPT.
    pub committed_tx: HashSet<u64>,
    /// Receipts owed when a session ended without them, or answered by an
    /// ERROR carrying their receipt-id.
    pub failed_receipts: u64,
    /// ERROR frames that carried a receipt-id.
    pub errors_with_receipt_id: u64,
    /// Sessions opened (all clients).
    pub sessions: u64,
    /// Broken rules, in the order seen.
    pub violations: Vec<String>,
    /// Per (session, producer), the last message number delivered in it
    /// without `redelivered`.
    last_in_session: HashMap<(u64, usize), u64>,
}

impl Ledger {
    pub(super) fn delivered(&mut self, session: u64, f: &Frame) {
        let body = body_of(f);
        let redelivered = f.get("redelivered") == Some("true");
        if self.acked.contains(&body) {
            self.violations.push(format!(
                "{body} delivered again after its ACK was receipted"
            ));
        }
        if redelivered {
            self.marked_redelivered += 1;
        }
        *self.deliveries.entry(body.clone()).or_default() += 1;
        if let Some(seq) = f.get("message-id").and_then(seq_of) {
            match self.seqs.get(&seq) {
                Some(other) if *other != body => self.violations.push(format!(
                    "seq {seq} (term {}) names both {other} and {body}",
                    seq >> 40
                )),
                Some(_) => {}
                None => {
                    self.seqs.insert(seq, body.clone());
                }
            }
        } else {
            self.violations
                .push(format!("{body}: no sequence number in {f:?}"));
        }
        if let (false, Some((p, k))) = (redelivered, producer_and_number(&body)) {
            if let Some(last) = self.last_in_session.insert((session, p), k) {
                if k <= last {
                    self.violations.push(format!(
                        "producer {p}'s message {k} delivered after {last} in session {session}"
                    ));
                }
            }
        }
    }

    /// Panics unless every rule held and something was tested. `tx` is
    /// what the final drain of [`TX_QUEUE`](super::TX_QUEUE) returned, per transaction.
    pub fn check(&self, tx: &BTreeMap<u64, Vec<String>>) {
        assert!(
            self.violations.is_empty(),
            "{} violations, first ones: {:#?}",
            self.violations.len(),
            &self.violations[..self.violations.len().min(10)]
        );
        let lost: Vec<_> = self
            .receipted
            .iter()
            .filter(|b| !self.deliveries.contains_key(*b))
            .take(10)
            .collect();
        assert!(
            lost.is_empty(),
            "receipted messages never delivered: {lost:?} (of {})",
            self.receipted.len()
        );
        assert!(!self.receipted.is_empty(), "no SEND was receipted");
        assert!(!self.acked.is_empty(), "no ACK was receipted");
        for n in &self.committed_tx {
            assert!(tx.contains_key(n), "committed transaction {n} lost");
        }
        for (n, bodies) in tx {
            let whole: Vec<String> = (0..TX_SIZE).map(|i| format!("t{n}-{i}")).collect();
            assert_eq!(
                bodies, &whole,
                "transaction {n} came back split or out of order"
            );
        }
    }

    /// One line of counts for the test's output.
    pub fn summary(&self) -> String {
        format!(
            "{} receipted (by node {:?}), {} acked, {} bodies delivered ({} marked redelivered), \
             {} transactions committed, {} receipts failed ({} by ERROR), {} sessions",
            self.receipted.len(),
            self.receipts_by_node,
            self.acked.len(),
            self.deliveries.len(),
            self.marked_redelivered,
            self.committed_tx.len(),
            self.failed_receipts,
            self.errors_with_receipt_id,
            self.sessions
        )
    }
}

/// `ID:<node>-<seq>` → seq.
fn seq_of(message_id: &str) -> Option<u64> {
    message_id.rsplit_once('-')?.1.parse().ok()
}

/// `p{producer}-{k}` → (producer, k).
fn producer_and_number(body: &str) -> Option<(usize, u64)> {
    let (p, k) = body.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, k.parse().ok()?))
}

/// The terms in which each node logged that it serves clients as leader;
/// panics if two nodes did so in one term, or one node in two of its lives
/// (one life serves a term at most once: it restarts when it stops).
pub fn serving_terms(nodes: &[Node]) -> BTreeMap<u64, u64> {
    let mut terms = BTreeMap::new();
    for node in nodes {
        let mut lives_per_term: BTreeMap<u64, usize> = BTreeMap::new();
        for line in node.log().lines() {
            let Some(rest) = line.split("serving clients").nth(1) else {
                continue;
            };
            let Some(term) = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("term="))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            let lives = lives_per_term.entry(term).or_default();
            *lives += 1;
            assert!(
                *lives == 1,
                "node {} served clients as leader of term {term} in two lives",
                node.id
            );
            if let Some(other) = terms.insert(term, node.id) {
                assert_eq!(
                    other, node.id,
                    "nodes {other} and {} both served clients as leader of term {term}",
                    node.id
                );
            }
        }
    }
    terms
}

/// Checks the messages' terms against the nodes' (see the module doc);
/// returns the terms writes were accepted in.
pub fn check_terms(ledger: &Ledger, nodes: &[Node]) -> BTreeMap<u64, u64> {
    let serving = serving_terms(nodes);
    for (seq, body) in &ledger.seqs {
        let term = seq >> 40;
        assert!(
            serving.contains_key(&term),
            "{body} has seq {seq} of term {term}, in which no node served; served: {serving:?}"
        );
    }
    serving
}
