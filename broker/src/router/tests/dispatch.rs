//! Who receives what, and when: prefetch and link credit, round-robin over
//! consumers, priority order, and the dispatch invariant (no consumer with
//! credit is left without a waiting message it may have).

use super::harness::{Bench, Msg, Opts};

const Q: &str = "/queue/dispatch";

#[test]
fn prefetch_bounds_the_unacknowledged_deliveries() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(2));
    let seqs = bench.publish_n(Q, 5);
    assert_eq!(sub.take_seqs(), seqs[..2]);
    assert_eq!(bench.waiting(Q), seqs[2..]);
    assert_eq!(bench.snapshot(Q).unacked, 2);

    // Each ack frees one slot, which the next waiting message fills at once.
    bench.ack(&sub, seqs[1]).unwrap();
    assert_eq!(sub.take_seqs(), [seqs[2]]);
    bench.ack(&sub, seqs[0]).unwrap();
    assert_eq!(sub.take_seqs(), [seqs[3]]);
    assert_eq!(bench.waiting(Q), [seqs[4]]);
}

#[test]
fn a_subscriber_arriving_late_receives_the_backlog_up_to_its_prefetch() {
    let bench = Bench::new();
    let seqs = bench.publish_n(Q, 4);
    let sub = bench.subscribe(Q, Opts::individual(3));
    assert_eq!(sub.take_seqs(), seqs[..3]);
    assert_eq!(bench.waiting(Q), seqs[3..]);
}

#[test]
fn consumers_with_credit_take_turns() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(10));
    let b = bench.subscribe(Q, Opts::individual(10));
    let seqs = bench.publish_n(Q, 4);
    assert_eq!(a.take_seqs(), [seqs[0], seqs[2]]);
    assert_eq!(b.take_seqs(), [seqs[1], seqs[3]]);
}

#[test]
fn a_consumer_without_credit_is_passed_over() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(1));
    let b = bench.subscribe(Q, Opts::individual(10));
    let seqs = bench.publish_n(Q, 4);
    assert_eq!(a.take_seqs(), [seqs[0]]);
    assert_eq!(b.take_seqs(), seqs[1..]);
    // Credit back: the turn comes round to it again.
    bench.ack(&a, seqs[0]).unwrap();
    let next = bench.publish(Q, Msg::new());
    assert_eq!(a.take_seqs(), [next]);
    assert!(b.take().is_empty());
}

#[test]
fn higher_priority_goes_first_and_equal_priority_in_publication_order() {
    let bench = Bench::new();
    let seqs: Vec<u64> = [4, 9, 0, 9, 4, 7]
        .into_iter()
        .map(|p| bench.publish(Q, Msg::new().priority(p)))
        .collect();
    let expected = [seqs[1], seqs[3], seqs[5], seqs[0], seqs[4], seqs[2]];
    assert_eq!(bench.waiting(Q), expected);
    let sub = bench.subscribe(Q, Opts::individual(100));
    assert_eq!(sub.take_seqs(), expected);
}

#[test]
fn priority_orders_only_what_waits_not_what_was_already_delivered() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(1));
    let low = bench.publish(Q, Msg::new().priority(0));
    let mid = bench.publish(Q, Msg::new().priority(4));
    let high = bench.publish(Q, Msg::new().priority(9));
    // The low one went out while nothing else waited.
    assert_eq!(sub.take_seqs(), [low]);
    bench.ack(&sub, low).unwrap();
    assert_eq!(sub.take_seqs(), [high]);
    bench.ack(&sub, high).unwrap();
    assert_eq!(sub.take_seqs(), [mid]);
}

#[test]
fn a_link_receives_only_what_its_credit_allows() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(10).link());
    let seqs = bench.publish_n(Q, 5);
    assert!(sub.take().is_empty(), "no credit, no delivery");

    let flow = bench.grant(&sub, 2, false);
    assert_eq!(sub.take_seqs(), seqs[..2]);
    assert_eq!(flow.link_credit, 0);
    assert_eq!(flow.delivery_count, 2);

    // Credit beyond what waits is kept for later messages ...
    let flow = bench.grant(&sub, 5, false);
    assert_eq!(sub.take_seqs(), seqs[2..]);
    assert_eq!(flow.link_credit, 2);
    let later = bench.publish(Q, Msg::new());
    assert_eq!(sub.take_seqs(), [later]);

    // ... unless drained: the delivery count moves past it instead.
    let flow = bench.grant(&sub, 3, true);
    assert_eq!(flow.link_credit, 0);
    assert_eq!(flow.delivery_count, 6 + 3);
    bench.publish(Q, Msg::new());
    assert!(sub.take().is_empty());
}

#[test]
fn link_credit_and_prefetch_both_bound_deliveries() {
    let bench = Bench::new();
    let sub = bench.subscribe(Q, Opts::individual(2).link());
    let seqs = bench.publish_n(Q, 4);
    bench.grant(&sub, 10, false);
    // Prefetch 2 stops it although credit remains ...
    assert_eq!(sub.take_seqs(), seqs[..2]);
    // ... and an ack lets the remaining credit be used.
    bench.ack(&sub, seqs[0]).unwrap();
    assert_eq!(sub.take_seqs(), [seqs[2]]);
}

/// The invariant publishing relies on: whenever a message waits, no
/// consumer that may have it has credit. Checked after every step of a
/// scenario that moves credit in every way a plain queue can.
#[test]
fn nothing_waits_while_a_consumer_has_credit() {
    let bench = Bench::new();
    let prefetch = [2, 1, 3];
    let check = |subs: &[&super::harness::Sub], step: &str| {
        let waiting = bench.waiting(Q).len();
        let unacked = bench.snapshot(Q).unacked;
        let capacity: usize = prefetch[..subs.len()].iter().sum();
        assert!(
            waiting == 0 || unacked == capacity,
            "{step}: {waiting} waiting while only {unacked} of {capacity} delivery slots are used"
        );
    };
    let seqs = bench.publish_n(Q, 3);
    let a = bench.subscribe(Q, Opts::individual(prefetch[0]));
    check(&[&a], "subscribe a");
    let mut more = bench.publish_n(Q, 4);
    check(&[&a], "publish");
    let b = bench.subscribe(Q, Opts::client(prefetch[1]));
    check(&[&a, &b], "subscribe b");
    let c = bench.subscribe(Q, Opts::individual(prefetch[2]));
    check(&[&a, &b, &c], "subscribe c");
    more.extend(bench.publish_n(Q, 3));
    check(&[&a, &b, &c], "publish more");
    bench.ack(&a, seqs[0]).unwrap();
    check(&[&a, &b, &c], "ack");
    let b_first = b.all()[0];
    bench.nack(&b, b_first).unwrap();
    check(&[&a, &b, &c], "nack");
    bench.close(&c);
    check(&[&a, &b], "close");
    // Everything published is somewhere: delivered and unacked, or waiting.
    let snapshot = bench.snapshot(Q);
    assert_eq!(
        snapshot.unacked + snapshot.waiting,
        seqs.len() + more.len() - 1
    );
}

#[test]
fn a_selective_consumer_with_credit_takes_a_match_past_messages_it_cannot_have() {
    let bench = Bench::new();
    let busy = bench.subscribe(Q, Opts::individual(1));
    let picky = bench.subscribe(Q, Opts::individual(5).selector("color = 'red'"));
    let first = bench.publish(Q, Msg::new());
    let blue = bench.publish(Q, Msg::new().property("color", "blue"));
    assert_eq!(busy.take_seqs(), [first]);
    assert_eq!(
        bench.waiting(Q),
        [blue],
        "only the busy consumer may have it"
    );
    let red = bench.publish(Q, Msg::new().property("color", "red"));
    assert_eq!(picky.take_seqs(), [red]);
    assert_eq!(bench.waiting(Q), [blue]);
    bench.ack(&busy, first).unwrap();
    assert_eq!(busy.take_seqs(), [blue]);
}

/// Found by the queue-model property test: on the path that checks each
/// message against each consumer (selectors, exclusivity, groups), one
/// dispatch of several messages gave them all to one consumer, skipping
/// the others' turns.
#[test]
fn returned_messages_are_shared_in_turn_when_consumers_have_selectors() {
    let bench = Bench::new();
    let leaving = bench.subscribe(Q, Opts::individual(2));
    let seqs = bench.publish_n(Q, 2);
    assert_eq!(leaving.take_seqs(), seqs);
    let a = bench.subscribe(Q, Opts::individual(5).selector("JMSPriority >= 0"));
    let b = bench.subscribe(Q, Opts::individual(5));
    bench.close(&leaving);
    assert_eq!(a.take_seqs(), [seqs[0]]);
    assert_eq!(b.take_seqs(), [seqs[1]]);
}

/// An expired message is given up, never delivered, whether it waited for a
/// consumer or one was ready when it arrived. (The second case was
/// delivered: publishing straight to a consumer skipped the expiry check
/// that dispatching waiting messages makes.)
#[test]
fn an_expired_message_is_given_up_whether_or_not_a_consumer_is_ready() {
    let mut bench = Bench::new();
    let waited = bench.publish(Q, Msg::new().expired());
    let sub = bench.subscribe(Q, Opts::individual(10));
    let arrived = bench.publish(Q, Msg::new().expired());
    let fresh = bench.publish(Q, Msg::new());
    assert_eq!(sub.take_seqs(), [fresh]);
    assert_eq!(bench.dead(), [waited, arrived]);
    let destination = bench.destination(Q);
    let stats = &destination.stats;
    assert_eq!(stats.expired.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(bench.snapshot(Q).waiting, 0);
}
