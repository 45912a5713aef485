//! The order checker: per producer, which sequence numbers have arrived,
//! in bounded memory, and the verdict against a manifest.
//!
//! A producer's track keeps one past the highest number seen and the gaps
//! below it still open, as ranges (not one entry per message): a number at
//! or above the mark is new (numbers skipped on the way open a gap); one
//! below it that closes part of a gap is new but late (out of order); any
//! other is a second delivery, counted as `redelivered` when the broker
//! flagged it so (an unacknowledged message given out again, as after a
//! consumer's crash: at-least-once, allowed) and as a duplicate otherwise.
//! At most [`MAX_GAPS`] gaps are kept per producer; beyond that the oldest
//! is forgotten and the verdict says it is no longer exact.

use super::manifest::ManifestEntry;
use super::Origin;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Open gaps kept per producer.
pub const MAX_GAPS: usize = 1024;
/// Producers with a problem listed by name in the verdict.
const MAX_LISTED: usize = 20;

/// What has arrived from one producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// Where its first message was received.
    pub destination: String,
    /// One past the highest sequence number received.
    pub next: u64,
    /// Numbers below `next` not received yet: `[start, end)`, ascending.
    pub gaps: VecDeque<(u64, u64)>,
    /// Numbers in gaps dropped for the bound.
    pub forgotten: u64,
    /// Distinct messages received.
    pub received: u64,
    /// Of those, received after a higher number (out of order).
    pub late: u64,
    /// Second deliveries without the broker's `redelivered` flag.
    pub duplicates: u64,
    /// Second deliveries the broker flagged as redelivered.
    pub redelivered: u64,
}

impl Track {
    fn new(destination: &str) -> Track {
        Track {
            destination: destination.to_string(),
            next: 1,
            gaps: VecDeque::new(),
            forgotten: 0,
            received: 0,
            late: 0,
            duplicates: 0,
            redelivered: 0,
        }
    }

    /// Records the arrival of `seq`.
    pub fn observe(&mut self, seq: u64, redelivered: bool) {
        if seq >= self.next {
            if seq > self.next {
                self.gaps.push_back((self.next, seq));
            }
            self.next = seq + 1;
            self.received += 1;
        } else if let Some(i) = self.gap_holding(seq) {
            let (start, end) = self.gaps[i];
            match (seq == start, seq + 1 == end) {
                (true, true) => {
                    self.gaps.remove(i);
                }
                (true, false) => self.gaps[i].0 = seq + 1,
                (false, true) => self.gaps[i].1 = seq,
                (false, false) => {
                    self.gaps[i].1 = seq;
                    self.gaps.insert(i + 1, (seq + 1, end));
                }
            }
            self.received += 1;
            self.late += 1;
        } else if redelivered {
            self.redelivered += 1;
        } else {
            self.duplicates += 1;
        }
        while self.gaps.len() > MAX_GAPS {
            if let Some((start, end)) = self.gaps.pop_front() {
                self.forgotten += end - start;
            }
        }
    }

    fn gap_holding(&self, seq: u64) -> Option<usize> {
        // The last gap starting at or before `seq`.
        let i = self.gaps.partition_point(|&(start, _)| start <= seq);
        let i = i.checked_sub(1)?;
        (seq < self.gaps[i].1).then_some(i)
    }

    /// How many numbers in `[lo, hi]` have not arrived.
    pub fn missing_in(&self, lo: u64, hi: u64) -> u64 {
        if hi < lo {
            return 0;
        }
        let in_gaps: u64 = self
            .gaps
            .iter()
            .map(|&(s, e)| e.min(hi + 1).saturating_sub(s.max(lo)))
            .sum();
        let above = (hi + 1).saturating_sub(self.next.max(lo));
        in_gaps + above
    }
}

/// Everything a drain has seen so far (saved between drain runs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// By producer id.
    pub producers: HashMap<u64, Track>,
    /// Messages without a (valid) stamp.
    pub unstamped: u64,
}

impl OrderState {
    /// Records one received message.
    pub fn observe(&mut self, destination: &str, origin: Option<Origin>, redelivered: bool) {
        match origin {
            Some(o) if o.seq > 0 => self
                .producers
                .entry(o.producer)
                .or_insert_with(|| Track::new(destination))
                .observe(o.seq, redelivered),
            _ => self.unstamped += 1,
        }
    }

    /// Reads a saved state; an absent file is a fresh one.
    pub fn load(path: &Path) -> Result<OrderState, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OrderState::default()),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    what: "read",
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the state (atomically: a new file renamed over the old).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |what| {
            move |source| StateError::Io {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let text = serde_json::to_string(self).map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(io("write"))?;
        std::fs::rename(&tmp, path).map_err(io("rename"))
    }

    /// The verdict against `expected` (the manifest; `None`: totals only).
    pub fn verdict(&self, expected: Option<&HashMap<u64, ManifestEntry>>) -> OrderReport {
        let mut r = OrderReport {
            producers_seen: self.producers.len() as u64,
            unstamped: self.unstamped,
            exact: true,
            ..OrderReport::default()
        };
        for t in self.producers.values() {
            r.received += t.received;
            r.out_of_order += t.late;
            r.duplicates += t.duplicates;
            r.redelivered += t.redelivered;
            r.gaps_forgotten += t.forgotten;
        }
        let Some(expected) = expected else {
            r.exact = r.gaps_forgotten == 0;
            return r;
        };
        r.producers_expected = Some(expected.len() as u64);
        let fresh = Track::new("");
        let mut lost = 0;
        let mut unconfirmed_missing = 0;
        let mut unconfirmed_sent = 0;
        let mut beyond_sent = 0;
        for (id, e) in expected {
            let t = self.producers.get(id).unwrap_or(&fresh);
            let first = e.first.max(1);
            let owed = t.missing_in(first, e.receipted);
            let maybe = t.missing_in(e.receipted.max(first - 1) + 1, e.sent);
            let over = t.next.saturating_sub(1).saturating_sub(e.sent);
            lost += owed;
            unconfirmed_missing += maybe;
            unconfirmed_sent += e.sent.saturating_sub(e.receipted);
            beyond_sent += over;
            if owed + t.late + t.duplicates + over > 0 && r.problems.len() < MAX_LISTED {
                r.problems.push(ProducerProblem {
                    producer: *id,
                    destination: e.destination.clone(),
                    lost: owed,
                    out_of_order: t.late,
                    duplicates: t.duplicates,
                    beyond_sent: over,
                    first_gaps: t.gaps.iter().take(5).copied().collect(),
                });
            }
        }
        let unknown = self
            .producers
            .iter()
            .filter(|(id, _)| !expected.contains_key(id));
        let (mut unknown_producers, mut unknown_messages) = (0, 0);
        for (_, t) in unknown {
            unknown_producers += 1;
            unknown_messages += t.received;
        }
        r.lost = Some(lost);
        r.unconfirmed_sent = Some(unconfirmed_sent);
        r.unconfirmed_missing = Some(unconfirmed_missing);
        r.beyond_sent = Some(beyond_sent);
        r.unknown_producers = Some(unknown_producers);
        r.unknown_messages = Some(unknown_messages);
        r.exact = r.gaps_forgotten == 0;
        r
    }
}

/// The order check's verdict, in the results file (`order`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReport {
    /// Distinct stamped messages received (over all drain runs so far).
    pub received: u64,
    /// Of those, received after a higher number of the same producer.
    pub out_of_order: u64,
    /// Second deliveries without the `redelivered` flag.
    pub duplicates: u64,
    /// Second deliveries flagged `redelivered` (at-least-once: allowed).
    pub redelivered: u64,
    /// Messages without a stamp.
    pub unstamped: u64,
    /// Producers whose messages were received.
    pub producers_seen: u64,
    /// Producers in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producers_expected: Option<u64>,
    /// Receipted messages not received: lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Messages sent after the last RECEIPT (async sends, a broken link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed_sent: Option<u64>,
    /// Of those, not received (allowed: never confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unconfirmed_missing: Option<u64>,
    /// Numbers received above what the manifest says was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beyond_sent: Option<u64>,
    /// Producers received but not in the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_producers: Option<u64>,
    /// Their messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_messages: Option<u64>,
    /// Numbers in gaps forgotten for the memory bound.
    pub gaps_forgotten: u64,
    /// False when gaps were forgotten: a late arrival in one was counted
    /// as a duplicate, and a loss in one is not counted.
    pub exact: bool,
    /// The first producers with lost, late, duplicated or unexpected
    /// messages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<ProducerProblem>,
}

impl OrderReport {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        let opt = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |n| n.to_string());
        format!(
            "order check: received {}, lost {}, duplicated {}, out of order {}, redelivered {}, unconfirmed missing {} of {}, unknown producers {}, {}",
            self.received,
            opt(self.lost),
            self.duplicates,
            self.out_of_order,
            self.redelivered,
            opt(self.unconfirmed_missing),
            opt(self.unconfirmed_sent),
            opt(self.unknown_producers),
            if self.exact { "exact" } else { "NOT exact (gaps forgotten)" }
        )
    }
}

/// One producer with a problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerProblem {
    /// Its id.
    pub producer: u64,
    /// Its destination.
    pub destination: String,
    /// Receipted messages not received.
    pub lost: u64,
    /// Messages received late.
    pub out_of_order: u64,
    /// Unflagged second deliveries.
    pub duplicates: u64,
    /// Numbers received above its last sent.
    pub beyond_sent: u64,
    /// Its first open gaps, `[start, end)`.
    pub first_gaps: Vec<(u64, u64)>,
}

/// Why a saved checker state could not be read or written.
#[derive(Debug, Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a checker state.
    #[error("{path}: not an order-check state: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 42;

    fn origin(seq: u64) -> Option<Origin> {
        Some(Origin { producer: P, seq })
    }

    fn manifest(sent: u64, receipted: u64) -> HashMap<u64, ManifestEntry> {
        HashMap::from([(
            P,
            ManifestEntry {
                producer: P,
                destination: "/queue/q".into(),
                first: 1,
                sent,
                receipted,
            },
        )])
    }

    fn feed(seqs: &[u64]) -> OrderState {
        let mut s = OrderState::default();
        for &q in seqs {
            s.observe("/queue/q", origin(q), false);
        }
        s
    }

    #[test]
    fn in_order_and_complete() {
        let s = feed(&(1..=1000).collect::<Vec<_>>());
        let r = s.verdict(Some(&manifest(1000, 1000)));
        assert_eq!(r.received, 1000);
        assert_eq!(
            (r.lost, r.duplicates, r.out_of_order),
            (Some(0), 0, 0),
            "{r:?}"
        );
        assert_eq!(r.unconfirmed_missing, Some(0));
        assert!(r.exact && r.problems.is_empty());
        assert_eq!(s.producers[&P].gaps.len(), 0, "no state per message");
    }

    #[test]
    fn a_gap_is_lost_up_to_the_receipt_and_unconfirmed_after_it() {
        // 4 and 5 never arrive; 9 and 10 were sent after the last receipt (8).
        let s = feed(&[1, 2, 3, 6, 7, 8]);
        let r = s.verdict(Some(&manifest(10, 8)));
        assert_eq!(r.lost, Some(2));
        assert_eq!(r.unconfirmed_sent, Some(2));
        assert_eq!(r.unconfirmed_missing, Some(2));
        assert_eq!(r.out_of_order, 0);
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].first_gaps, vec![(4, 6)]);
        // A producer that never arrived at all is lost whole.
        let r = OrderState::default().verdict(Some(&manifest(5, 5)));
        assert_eq!(r.lost, Some(5));
    }

    #[test]
    fn a_duplicate_is_counted_and_not_received_twice() {
        let s = feed(&[1, 2, 2, 3, 1]);
        let r = s.verdict(Some(&manifest(3, 3)));
        assert_eq!((r.received, r.duplicates, r.lost), (3, 2, Some(0)));
        assert_eq!(r.out_of_order, 0);
    }

    #[test]
    fn reordering_is_late_not_lost() {
        let s = feed(&[1, 4, 2, 3, 7, 5, 6]);
        let r = s.verdict(Some(&manifest(7, 7)));
        assert_eq!(r.received, 7);
        assert_eq!(r.out_of_order, 4, "2, 3, 5 and 6 came after a higher one");
        assert_eq!((r.lost, r.duplicates), (Some(0), 0));
        assert!(s.producers[&P].gaps.is_empty());
        // The middle of a gap splits it.
        let s = feed(&[1, 10, 5]);
        assert_eq!(s.producers[&P].gaps, VecDeque::from([(2, 5), (6, 10)]));
        assert_eq!(s.producers[&P].missing_in(1, 10), 7);
    }

    #[test]
    fn redelivered_duplicates_after_a_crash_are_counted_apart() {
        // A consumer took 1..=5 and died before its acks reached the
        // broker: 4 and 5 come again, flagged, to the next consumer.
        let mut s = feed(&[1, 2, 3, 4, 5]);
        s.observe("/queue/q", origin(4), true);
        s.observe("/queue/q", origin(5), true);
        s.observe("/queue/q", origin(6), true);
        // An unflagged second delivery is a duplicate.
        s.observe("/queue/q", origin(2), false);
        let r = s.verdict(Some(&manifest(6, 6)));
        assert_eq!(r.redelivered, 2);
        assert_eq!(r.duplicates, 1);
        assert_eq!(
            r.received, 6,
            "a first delivery flagged redelivered counts once"
        );
        assert_eq!(r.lost, Some(0));
    }

    #[test]
    fn producers_are_checked_apart_and_strangers_reported() {
        let mut s = OrderState::default();
        for q in 1..=3 {
            s.observe(
                "/queue/a",
                Some(Origin {
                    producer: P,
                    seq: q,
                }),
                false,
            );
            s.observe(
                "/queue/b",
                Some(Origin {
                    producer: 7,
                    seq: q,
                }),
                false,
            );
        }
        s.observe("/queue/b", None, false);
        let r = s.verdict(Some(&manifest(3, 3)));
        assert_eq!(r.lost, Some(0));
        assert_eq!(
            (r.unknown_producers, r.unknown_messages),
            (Some(1), Some(3))
        );
        assert_eq!(r.unstamped, 1);
        assert_eq!(s.producers[&7].destination, "/queue/b");
    }

    #[test]
    fn gaps_are_bounded_and_the_verdict_says_so() {
        // Every other number: one gap per message until the bound.
        let seqs: Vec<u64> = (1..=(2 * MAX_GAPS as u64 + 20)).step_by(2).collect();
        let s = feed(&seqs);
        let t = &s.producers[&P];
        assert_eq!(t.gaps.len(), MAX_GAPS);
        assert!(t.forgotten > 0);
        let r = s.verdict(None);
        assert!(!r.exact);
        assert_eq!(r.gaps_forgotten, t.forgotten);
    }

    #[test]
    fn the_state_survives_a_save_between_drain_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("order-state.json");
        assert_eq!(OrderState::load(&path).unwrap(), OrderState::default());
        let s = feed(&[1, 2, 5]);
        s.save(&path).unwrap();
        let mut again = OrderState::load(&path).unwrap();
        assert_eq!(again, s);
        again.observe("/queue/q", origin(3), false);
        again.observe("/queue/q", origin(4), false);
        let r = again.verdict(Some(&manifest(5, 5)));
        assert_eq!((r.lost, r.out_of_order), (Some(0), 2));
        std::fs::write(&path, "nonsense").unwrap();
        let e = OrderState::load(&path).unwrap_err().to_string();
        assert!(e.contains("not an order-check state"), "{e}");
    }
}
