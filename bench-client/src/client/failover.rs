//! Following a broker cluster's failover: where a client reconnects next
//! and how long it waits first ([`Reconnect`]), and the run's receipt
//! timeline with its gaps ([`ReceiptGaps`]), which is what a failover costs
//! a producer that waits for receipts.
//!
//! Reconnect policy. A cluster member that is not the leader refuses with
//! ERROR `not the leader` (native: Close `not-leader`), naming the leader
//! when one is elected. That is not a failure of the broker, so it is not
//! counted as an error: the client goes at once to the named leader if it
//! is in the URL's failover list, else to the next endpoint. Any failure
//! moves to the next endpoint of the list at once; only when a whole round
//! of the list has failed does the client pause: briefly
//! ([`ELECTION_RETRY`]) when some member said an election is running, else
//! the run's reconnect delay (1 s, the original's). A single URL pauses
//! after every failure, as the original did.

use crate::driver::DriverError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Pause after a round of refusals while a cluster elects its leader: short,
/// because the election ends within seconds and the time to the first
/// receipt from the new leader is what a failover measurement reads.
pub const ELECTION_RETRY: Duration = Duration::from_millis(50);

/// An interval without any receipt at least this long is recorded as a gap
/// (a persistent producer normally sees receipts every few ms).
pub const GAP_MIN: Duration = Duration::from_millis(500);

/// Gaps kept per scenario (later ones are counted, not kept).
const MAX_GAPS: usize = 256;

/// Where one client connects next.
#[derive(Debug, Clone)]
pub struct Reconnect {
    endpoint: usize,
    endpoints: usize,
    /// Failures since the last successful connect or the last pause.
    failed_in_round: usize,
    /// A member said "not the leader" in this round.
    electing: bool,
}

impl Reconnect {
    /// Starts at endpoint `first` of `endpoints`.
    pub fn new(first: usize, endpoints: usize) -> Reconnect {
        let endpoints = endpoints.max(1);
        Reconnect {
            endpoint: first % endpoints,
            endpoints,
            failed_in_round: 0,
            electing: false,
        }
    }

    /// The endpoint to connect to now.
    pub fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// A link was established: the next failure starts a new round.
    pub fn connected(&mut self) {
        self.failed_in_round = 0;
        self.electing = false;
    }

    /// After `error`, picks the next endpoint and returns the pause before
    /// connecting to it. `leader` is the index in the list of the leader
    /// `error` names, if it names one that is in the list.
    pub fn failed(
        &mut self,
        error: &DriverError,
        leader: Option<usize>,
        reconnect_delay: Duration,
    ) -> Duration {
        self.failed_in_round += 1;
        let not_leader = matches!(error, DriverError::NotLeader { .. });
        self.electing |= not_leader;
        match leader.filter(|l| not_leader && *l < self.endpoints && *l != self.endpoint) {
            Some(leader) => self.endpoint = leader,
            None => self.endpoint = (self.endpoint + 1) % self.endpoints,
        }
        // A redirect is worth following at once, but a cluster whose members
        // name each other in a loop must not be hammered: a round is at most
        // one attempt per endpoint, redirects included.
        if self.failed_in_round < self.endpoints {
            return Duration::ZERO;
        }
        let pause = if self.electing {
            ELECTION_RETRY
        } else {
            reconnect_delay
        };
        self.failed_in_round = 0;
        self.electing = false;
        pause
    }
}

/// One interval without receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The last receipt before it (the run clock's ns, [`crate::clock`]).
    pub start_ns: u64,
    /// The first receipt after it, or the end of the scenario if none came.
    pub end_ns: u64,
    /// No receipt ended it: the scenario stopped first.
    pub open: bool,
}

/// Receipt times of all producers of a scenario, reduced to the gaps.
#[derive(Debug, Default)]
pub struct ReceiptGaps {
    /// Latest receipt so far (0: none yet).
    last_ns: AtomicU64,
    /// Longest interval between two receipts, ns.
    longest_ns: AtomicU64,
    /// Receipts (and COMMIT receipts) counted over the whole scenario.
    receipted: AtomicU64,
    gaps: Mutex<Vec<Gap>>,
    /// Gaps beyond the first 256 (not kept).
    dropped: AtomicU64,
}

impl ReceiptGaps {
    /// A receipt arrived at `now_ns`, confirming `messages` messages.
    pub fn receipt(&self, now_ns: u64, messages: u64) {
        self.receipted.fetch_add(messages, Ordering::Relaxed);
        // `fetch_max`: producers record concurrently and may arrive out of
        // order; only a receipt later than every earlier one closes a gap.
        let previous = self.last_ns.fetch_max(now_ns, Ordering::AcqRel);
        if previous == 0 || now_ns <= previous {
            return;
        }
        let interval = now_ns - previous;
        self.longest_ns.fetch_max(interval, Ordering::Relaxed);
        if interval >= GAP_MIN.as_nanos() as u64 {
            self.keep(Gap {
                start_ns: previous,
                end_ns: now_ns,
                open: false,
            });
        }
    }

    fn keep(&self, gap: Gap) {
        let mut gaps = self.gaps.lock().unwrap_or_else(|e| e.into_inner());
        if gaps.len() < MAX_GAPS {
            gaps.push(gap);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The scenario stopped at `now_ns`: a gap still running is kept as
    /// open. Returns the summary.
    pub fn finish(&self, now_ns: u64) -> GapSummary {
        let last = self.last_ns.load(Ordering::Acquire);
        let mut longest = self.longest_ns.load(Ordering::Relaxed);
        if last != 0 && now_ns > last {
            let tail = now_ns - last;
            longest = longest.max(tail);
            if tail >= GAP_MIN.as_nanos() as u64 {
                self.keep(Gap {
                    start_ns: last,
                    end_ns: now_ns,
                    open: true,
                });
            }
        }
        let mut gaps = self.gaps.lock().unwrap_or_else(|e| e.into_inner()).clone();
        gaps.sort_by_key(|g| g.start_ns);
        GapSummary {
            receipted: self.receipted.load(Ordering::Relaxed),
            longest_ns: longest,
            gaps,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// What [`ReceiptGaps::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapSummary {
    /// Messages confirmed by a receipt over the whole scenario.
    pub receipted: u64,
    /// Longest time without a receipt, ns (0 with fewer than two receipts).
    pub longest_ns: u64,
    /// Every gap of at least [`GAP_MIN`], in order (the first 256).
    pub gaps: Vec<Gap>,
    /// Gaps not kept.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(leader: Option<&str>) -> DriverError {
        DriverError::NotLeader {
            endpoint: "stomp://a:1".into(),
            leader: leader.map(str::to_string),
        }
    }

    fn closed() -> DriverError {
        DriverError::Closed {
            endpoint: "stomp://a:1".into(),
        }
    }

    const DELAY: Duration = Duration::from_secs(1);

    #[test]
    fn a_lost_leader_is_replaced_by_the_next_endpoint_at_once() {
        let mut r = Reconnect::new(0, 3);
        assert_eq!(r.failed(&closed(), None, DELAY), Duration::ZERO);
        assert_eq!(r.endpoint(), 1);
        // The follower names the leader: straight there.
        assert_eq!(
            r.failed(&refused(Some("c:3")), Some(2), DELAY),
            Duration::ZERO
        );
        assert_eq!(r.endpoint(), 2);
    }

    #[test]
    fn a_round_of_refusals_during_an_election_pauses_briefly() {
        let mut r = Reconnect::new(0, 3);
        assert_eq!(r.failed(&closed(), None, DELAY), Duration::ZERO);
        assert_eq!(r.failed(&refused(None), None, DELAY), Duration::ZERO);
        assert_eq!(r.failed(&refused(None), None, DELAY), ELECTION_RETRY);
        assert_eq!(r.endpoint(), 0, "the round starts over");
    }

    #[test]
    fn a_round_of_plain_failures_pauses_the_reconnect_delay() {
        let mut r = Reconnect::new(1, 2);
        assert_eq!(r.failed(&closed(), None, DELAY), Duration::ZERO);
        assert_eq!(r.failed(&closed(), None, DELAY), DELAY);
        // A single URL pauses after every failure, as the original did.
        let mut single = Reconnect::new(0, 1);
        assert_eq!(single.failed(&closed(), None, DELAY), DELAY);
        assert_eq!(single.failed(&refused(None), None, DELAY), ELECTION_RETRY);
    }

    #[test]
    fn members_naming_each_other_in_a_loop_are_not_hammered() {
        let mut r = Reconnect::new(0, 2);
        assert_eq!(
            r.failed(&refused(Some("b")), Some(1), DELAY),
            Duration::ZERO
        );
        assert_eq!(r.endpoint(), 1);
        assert_eq!(
            r.failed(&refused(Some("a")), Some(0), DELAY),
            ELECTION_RETRY
        );
        assert_eq!(r.endpoint(), 0);
        // A connect in between starts a new round.
        r.connected();
        assert_eq!(
            r.failed(&refused(Some("b")), Some(1), DELAY),
            Duration::ZERO
        );
    }

    #[test]
    fn a_leader_index_is_only_followed_for_a_refusal() {
        let mut r = Reconnect::new(0, 3);
        r.failed(&closed(), Some(2), DELAY);
        assert_eq!(r.endpoint(), 1);
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn gaps_of_at_least_the_minimum_are_kept_with_their_ends() {
        let g = ReceiptGaps::default();
        for t in [10, 20, 30, 2_030, 2_040, 2_300] {
            g.receipt(t * MS, 1);
        }
        let s = g.finish(2_300 * MS);
        assert_eq!(s.receipted, 6);
        assert_eq!(s.longest_ns, 2_000 * MS);
        assert_eq!(
            s.gaps,
            vec![Gap {
                start_ns: 30 * MS,
                end_ns: 2_030 * MS,
                open: false
            }]
        );
    }

    #[test]
    fn out_of_order_receipts_do_not_make_gaps_and_a_trailing_gap_is_open() {
        let g = ReceiptGaps::default();
        g.receipt(1_000 * MS, 10);
        g.receipt(400 * MS, 1); // recorded late by another producer
        g.receipt(1_100 * MS, 1);
        let s = g.finish(3_000 * MS);
        assert_eq!(s.receipted, 12);
        assert_eq!(s.longest_ns, 1_900 * MS);
        assert_eq!(s.gaps.len(), 1);
        assert!(s.gaps[0].open);
        assert_eq!(s.gaps[0].start_ns, 1_100 * MS);
    }

    #[test]
    fn no_receipt_means_no_gap() {
        let s = ReceiptGaps::default().finish(5_000 * MS);
        assert_eq!((s.receipted, s.longest_ns, s.gaps.len()), (0, 0, 0));
    }
}
