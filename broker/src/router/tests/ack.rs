//! Acknowledgement and its failures: individual and cumulative ACK, NACK and
//! the order redelivered messages come back in, what a closing consumer
//! returns, and the redelivery limit.

use super::harness::{Bench, Got, Msg, Opts};
use crate::router::RouterError;

const Q: &str = "/queue/ack";

fn redelivered(seqs: &[u64], times: u32) -> Vec<Got> {
    seqs.iter()
        .map(|&seq| Got {
            seq,
            redeliveries: times,
        })
        .collect()
}

#[test]
fn an_individual_ack_consumes_that_message_only() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(10));
    let seqs = bench.publish_n(Q, 3);
    bench.ack(&sub, seqs[1]).unwrap();
    assert_eq!(bench.snapshot(Q).unacked, 2);
    assert!(bench.router.has_unacked(&sub.handle, seqs[0]));
    assert!(!bench.router.has_unacked(&sub.handle, seqs[1]));
    assert!(bench.router.has_unacked(&sub.handle, seqs[2]));
}

#[test]
fn a_cumulative_ack_consumes_everything_delivered_up_to_it() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::client(10));
    let seqs = bench.publish_n(Q, 4);
    bench.ack(&sub, seqs[2]).unwrap();
    assert_eq!(bench.snapshot(Q).unacked, 1);
    assert!(bench.router.has_unacked(&sub.handle, seqs[3]));
    // The ones it covered are gone: acknowledging them again is an error.
    assert!(bench.ack(&sub, seqs[0]).is_err());
}

#[test]
fn a_cumulative_ack_follows_delivery_order_not_sequence_numbers() {
    let bench = Bench::new();
    let low = bench.publish(Q, Msg::new().priority(0));
    let later_low = bench.publish(Q, Msg::new().priority(0));
    let high = bench.publish(Q, Msg::new().priority(9));
    let sub = bench.subscribe(Q, Opts::client(3));
    assert_eq!(sub.take_seqs(), [high, low, later_low]);
    // `high` has the largest sequence number but was delivered first: acking
    // it covers nothing else.
    bench.ack(&sub, high).unwrap();
    assert_eq!(bench.snapshot(Q).unacked, 2);
    bench.ack(&sub, later_low).unwrap();
    assert_eq!(bench.snapshot(Q).unacked, 0);
}

#[test]
fn acking_what_was_not_delivered_here_is_refused_and_changes_nothing() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(1));
    let b = bench.subscribe(Q, Opts::individual(1));
    let seqs = bench.publish_n(Q, 3);
    assert_eq!(a.all(), [seqs[0]]);
    assert_eq!(b.all(), [seqs[1]]);
    // Delivered to the other consumer, still waiting, or never published.
    for (sub, seq) in [(&a, seqs[1]), (&a, seqs[2]), (&b, 10_000)] {
        assert!(matches!(
            bench.ack(sub, seq),
            Err(RouterError::NotDelivered(_))
        ));
        assert!(matches!(
            bench.nack(sub, seq),
            Err(RouterError::NotDelivered(_))
        ));
    }
    assert_eq!(bench.snapshot(Q).unacked, 2);
    assert_eq!(bench.waiting(Q), [seqs[2]]);
    // Acking twice: the second is refused.
    bench.ack(&a, seqs[0]).unwrap();
    assert!(bench.ack(&a, seqs[0]).is_err());
}

#[test]
fn a_nacked_message_comes_back_first_marked_redelivered() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(1));
    let seqs = bench.publish_n(Q, 3);
    assert_eq!(sub.take_seqs(), [seqs[0]]);
    bench.nack(&sub, seqs[0]).unwrap();
    // In front of the messages that waited all along.
    assert_eq!(sub.take(), redelivered(&seqs[..1], 1));
    bench.nack(&sub, seqs[0]).unwrap();
    assert_eq!(sub.take(), redelivered(&seqs[..1], 2));
    bench.ack(&sub, seqs[0]).unwrap();
    assert_eq!(sub.take(), redelivered(&seqs[1..2], 0));
}

#[test]
fn a_cumulative_nack_returns_everything_up_to_it_in_delivery_order() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::client(3));
    let seqs = bench.publish_n(Q, 5);
    assert_eq!(a.take_seqs(), seqs[..3]);
    bench.nack(&a, seqs[1]).unwrap();
    // seqs[0] and seqs[1] go back in front, in their order; the two free
    // slots take them straight back.
    assert_eq!(a.take(), redelivered(&seqs[..2], 1));
    assert_eq!(bench.waiting(Q), seqs[3..]);
    assert!(bench.router.has_unacked(&a.handle, seqs[2]));
}

#[test]
fn a_closing_consumer_returns_its_messages_in_delivery_order_ahead_of_the_rest() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(3));
    let seqs = bench.publish_n(Q, 5);
    bench.ack(&a, seqs[1]).unwrap();
    assert_eq!(a.take_seqs(), seqs[..4]);
    bench.close(&a);
    let returned = [seqs[0], seqs[2], seqs[3]];
    assert_eq!(
        bench.waiting(Q),
        [returned[0], returned[1], returned[2], seqs[4]]
    );
    let b = bench.subscribe(Q, Opts::individual(10));
    let mut expected = redelivered(&returned, 1);
    expected.extend(redelivered(&seqs[4..], 0));
    assert_eq!(b.take(), expected);
}

#[test]
fn a_returned_message_keeps_its_priority() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(1));
    let low = bench.publish(Q, Msg::new().priority(1));
    let high = bench.publish(Q, Msg::new().priority(8));
    let other_low = bench.publish(Q, Msg::new().priority(1));
    assert_eq!(sub.take_seqs(), [low]);
    bench.nack(&sub, low).unwrap();
    // Back in front of its own priority, still behind the higher one.
    assert_eq!(bench.waiting(Q), [low, other_low]);
    assert_eq!(sub.take_seqs(), [high]);
    bench.ack(&sub, high).unwrap();
    assert_eq!(sub.take(), redelivered(&[low], 1));
}

#[test]
fn a_message_returned_too_often_is_given_up() {
    let mut bench = Bench::with_max_redeliveries(2);
    let sub = bench.subscribe(Q, Opts::individual(1));
    let seqs = bench.publish_n(Q, 2);
    assert_eq!(sub.take_seqs(), [seqs[0]]);
    for times in 1..=2 {
        bench.nack(&sub, seqs[0]).unwrap();
        assert_eq!(sub.take(), redelivered(&seqs[..1], times));
    }
    assert!(bench.dead().is_empty());
    // The third return is one too many.
    bench.nack(&sub, seqs[0]).unwrap();
    assert_eq!(bench.dead(), [seqs[0]]);
    assert_eq!(sub.take_seqs(), [seqs[1]]);
    assert!(bench.waiting(Q).is_empty());
}

#[test]
fn a_consumer_closing_counts_as_a_return_towards_the_limit() {
    let mut bench = Bench::with_max_redeliveries(1);
    let seq = bench.publish(Q, Msg::new().persistent(true));
    let first = bench.subscribe(Q, Opts::individual(1));
    bench.close(&first);
    let second = bench.subscribe(Q, Opts::individual(1));
    assert_eq!(second.take(), redelivered(&[seq], 1));
    bench.close(&second);
    assert_eq!(bench.dead(), [seq]);
    assert_eq!(bench.snapshot(Q).waiting, 0);
}

#[test]
fn a_transactional_ack_frees_credit_before_it_consumes() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(1));
    let seqs = bench.publish_n(Q, 3);
    let held = bench.stage(&sub, seqs[0]).unwrap();
    assert_eq!(held, [seqs[0]]);
    // The slot is free; the message stays unacknowledged until commit.
    assert_eq!(sub.take_seqs(), [seqs[0], seqs[1]]);
    assert!(bench.router.has_unacked(&sub.handle, seqs[0]));
    // Abort: it counts against credit again, so nothing more is delivered
    // when seqs[1] is acked.
    bench.abort(&sub, &held);
    bench.ack(&sub, seqs[1]).unwrap();
    assert!(sub.take().is_empty());
    assert_eq!(bench.waiting(Q), [seqs[2]]);
}

#[test]
fn a_committed_transaction_consumes_its_acks_and_returns_its_nacks() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::client(2));
    let seqs = bench.publish_n(Q, 4);
    assert_eq!(sub.take_seqs(), seqs[..2]);
    // Cumulative: holds both delivered messages, freeing both slots.
    let acks = bench.stage(&sub, seqs[1]).unwrap();
    assert_eq!(acks, seqs[..2]);
    assert_eq!(sub.take_seqs(), seqs[2..]);
    // Staged ones are skipped: this holds only the newly delivered one.
    let nacks = bench.stage(&sub, seqs[2]).unwrap();
    assert_eq!(nacks, [seqs[2]]);
    bench.commit_acks(&sub, &acks);
    bench.commit_nacks(&sub, &nacks);
    assert_eq!(sub.take(), redelivered(&seqs[2..3], 1));
    for &seq in &seqs[..2] {
        assert!(!bench.router.has_unacked(&sub.handle, seq));
    }
    assert_eq!(bench.snapshot(Q).unacked, 2);
}

#[test]
fn a_delayed_redelivery_stays_away_until_its_delay_ends_then_goes_first() {
    let mut bench = Bench::with_redelivery(6, 1000);
    let sub = bench.subscribe(Q, Opts::individual(1));
    let seqs = bench.publish_n(Q, 3);
    assert_eq!(sub.take_seqs(), [seqs[0]]);
    bench.nack(&sub, seqs[0]).unwrap();
    assert_eq!(bench.delayed(), [(seqs[0], 1)]);
    // Meanwhile the queue goes on without it.
    assert_eq!(sub.take_seqs(), [seqs[1]]);
    assert_eq!(bench.waiting(Q), [seqs[2]]);
    bench.return_delayed(seqs[0]);
    assert_eq!(bench.waiting(Q), [seqs[0], seqs[2]]);
    bench.ack(&sub, seqs[1]).unwrap();
    assert_eq!(sub.take(), redelivered(&seqs[..1], 1));
    assert!(bench.delayed().is_empty());
}
