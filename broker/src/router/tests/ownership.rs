//! Consumers that own messages: a message group belongs to the consumer that
//! received its first message until the group closes or the consumer leaves;
//! an exclusive consumer alone receives from its queue while it exists.

use super::harness::{Bench, Got, Msg, Opts};

const Q: &str = "/queue/owned";

#[test]
fn a_group_stays_with_the_consumer_that_received_its_first_message() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(10));
    let b = bench.subscribe(Q, Opts::individual(10));
    let g1 = bench.publish(Q, Msg::new().group("g"));
    let g2 = bench.publish(Q, Msg::new().group("g"));
    let h1 = bench.publish(Q, Msg::new().group("h"));
    let g3 = bench.publish(Q, Msg::new().group("g"));
    let h2 = bench.publish(Q, Msg::new().group("h"));
    assert_eq!(a.take_seqs(), [g1, g2, g3]);
    assert_eq!(b.take_seqs(), [h1, h2]);
}

#[test]
fn a_group_waits_for_its_owner_while_others_have_credit() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(1));
    let b = bench.subscribe(Q, Opts::individual(10));
    let g1 = bench.publish(Q, Msg::new().group("g"));
    let g2 = bench.publish(Q, Msg::new().group("g"));
    let plain = bench.publish(Q, Msg::new());
    assert_eq!(a.take_seqs(), [g1]);
    // `plain` overtakes g2: b may have it, and may not have g2.
    assert_eq!(b.take_seqs(), [plain]);
    assert_eq!(bench.waiting(Q), [g2]);
    bench.ack(&a, g1).unwrap();
    assert_eq!(a.take_seqs(), [g2]);
}

#[test]
fn a_closed_group_goes_to_whoever_receives_its_next_message() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(10));
    let b = bench.subscribe(Q, Opts::individual(10));
    let first = bench.publish(Q, Msg::new().group("g"));
    let last = bench.publish(Q, Msg::new().closing_group("g"));
    let reopened = bench.publish(Q, Msg::new().group("g"));
    let again = bench.publish(Q, Msg::new().group("g"));
    assert_eq!(a.take_seqs(), [first, last]);
    assert_eq!(b.take_seqs(), [reopened, again]);
}

#[test]
fn a_leaving_owner_hands_its_group_and_its_messages_on() {
    let bench = Bench::new();
    let a = bench.subscribe(Q, Opts::individual(10));
    let b = bench.subscribe(Q, Opts::individual(10));
    let g1 = bench.publish(Q, Msg::new().group("g"));
    let other = bench.publish(Q, Msg::new());
    let g2 = bench.publish(Q, Msg::new().group("g"));
    bench.ack(&a, g1).unwrap();
    assert_eq!(a.take_seqs(), [g1, g2]);
    assert_eq!(b.take_seqs(), [other]);
    bench.close(&a);
    assert_eq!(
        b.take(),
        [Got {
            seq: g2,
            redeliveries: 1
        }]
    );
    let g3 = bench.publish(Q, Msg::new().group("g"));
    assert_eq!(b.take_seqs(), [g3]);
}

#[test]
fn an_exclusive_consumer_alone_receives() {
    let bench = Bench::new();
    let shared = bench.subscribe(Q, Opts::individual(10));
    let first = bench.publish(Q, Msg::new());
    let exclusive = bench.subscribe(Q, Opts::individual(2).exclusive());
    let seqs = bench.publish_n(Q, 3);
    assert_eq!(
        shared.take_seqs(),
        [first],
        "only before the exclusive one came"
    );
    assert_eq!(exclusive.take_seqs(), seqs[..2]);
    // Out of credit, the exclusive consumer still keeps the rest from the
    // shared one.
    assert_eq!(bench.waiting(Q), seqs[2..]);
    bench.ack(&exclusive, seqs[0]).unwrap();
    assert_eq!(exclusive.take_seqs(), seqs[2..]);
    assert!(shared.take().is_empty());
}

#[test]
fn when_the_exclusive_consumer_leaves_the_next_exclusive_one_takes_over() {
    let bench = Bench::new();
    let shared = bench.subscribe(Q, Opts::individual(10));
    let first = bench.subscribe(Q, Opts::individual(10).exclusive());
    let second = bench.subscribe(Q, Opts::individual(10).exclusive());
    let seqs = bench.publish_n(Q, 2);
    assert_eq!(first.take_seqs(), seqs);
    bench.close(&first);
    assert_eq!(
        second.take(),
        [
            Got {
                seq: seqs[0],
                redeliveries: 1
            },
            Got {
                seq: seqs[1],
                redeliveries: 1
            }
        ]
    );
    bench.close(&second);
    // No exclusive consumer left: back to sharing.
    assert_eq!(shared.take().len(), 2);
}

/// Found by the queue-model property test: a group whose messages were
/// published before anyone subscribed had no owner yet, and a subscription
/// switched the queue back to plain round-robin, which delivers without
/// pinning groups: the group's messages went to different consumers at once.
#[test]
fn a_group_published_before_anyone_subscribed_still_has_one_owner() {
    let bench = Bench::new();
    let g1 = bench.publish(Q, Msg::new().group("g"));
    let g2 = bench.publish(Q, Msg::new().group("g"));
    let a = bench.subscribe(Q, Opts::individual(1));
    let b = bench.subscribe(Q, Opts::individual(1));
    assert_eq!(a.take_seqs(), [g1]);
    assert!(b.take().is_empty(), "g2 waits for the group's owner");
    assert_eq!(bench.waiting(Q), [g2]);
    bench.ack(&a, g1).unwrap();
    assert_eq!(a.take_seqs(), [g2]);
}

/// Found by the queue-model property test: a group's closing message
/// published straight to its owner freed the group's other waiting
/// messages, but nothing dispatched them, so a consumer with credit sat
/// idle beside a message it could have had (until the next ack or
/// subscription).
#[test]
fn closing_a_group_on_publish_frees_its_waiting_messages_for_others() {
    let bench = Bench::new();
    let blue = bench.publish(Q, Msg::new().group("g").property("color", "blue"));
    let red = bench.publish(Q, Msg::new().group("g").property("color", "red"));
    let owner = bench.subscribe(Q, Opts::individual(2).selector("color = 'red'"));
    let other = bench.subscribe(Q, Opts::individual(1));
    assert_eq!(owner.take_seqs(), [red]);
    assert!(other.take().is_empty(), "the group is the red-only owner's");
    let last = bench.publish(Q, Msg::new().closing_group("g").property("color", "red"));
    assert_eq!(owner.take_seqs(), [last]);
    assert_eq!(other.take_seqs(), [blue]);
}
