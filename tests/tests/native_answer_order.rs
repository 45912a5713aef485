//! The native protocol's form of the STOMP receipt rule, through the real
//! broker: the broker's answer to an unsettled Disposition is written before
//! the transfer the Disposition caused (a `modified` or `released` message
//! redelivered to the same link), and a Discharge's answer before the
//! redelivery of the NACKs it committed (protocol/NATIVE.md, section 5).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod native_common;

use ferromq_protocol::native::{
    Declare, DeliveryState, Discharge, Disposition, Frame, Modified, Performative, Released, Role,
    SettleMode, Transfer,
};
use native_common::{broker, native_addr, Raw};

fn transfer(raw: &mut Raw) -> Transfer {
    let frame = raw.recv();
    match frame.performative {
        Some(Performative::Transfer(t)) => t,
        _ => panic!("expected a transfer, got {frame:?}"),
    }
}

fn body(t: &Transfer) -> &[u8] {
    &t.message.as_ref().expect("a message").body[..]
}

#[test]
fn an_unsettled_dispositions_answer_comes_before_the_redelivery() {
    let b = broker();
    let mut raw = Raw::open(native_addr(&b));
    raw.attach(
        1,
        Role::Receiver,
        "/queue/answer.order",
        SettleMode::Unsettled,
    );
    raw.flow(1, 0, 100, false, false);
    b.client().send_message("/queue/answer.order", "m0", &[]);
    let mut t = transfer(&mut raw);
    let outcomes = [
        DeliveryState::Modified(Modified {
            delivery_failed: false,
            undeliverable_here: false,
        }),
        DeliveryState::Released(Released {}),
        DeliveryState::Modified(Modified {
            delivery_failed: false,
            undeliverable_here: false,
        }),
    ];
    for (round, state) in outcomes.into_iter().enumerate() {
        raw.send(Frame::new(
            1,
            Disposition {
                role: Role::Receiver.into(),
                first: t.delivery_id,
                settled: false,
                state: Some(state),
                ..Disposition::default()
            },
        ));
        let answer = raw.recv();
        let Some(Performative::Disposition(d)) = &answer.performative else {
            panic!("round {round}: the settling Disposition must come first, got {answer:?}");
        };
        assert_eq!(
            (d.role(), d.first, d.settled),
            (Role::Sender, t.delivery_id, true)
        );
        t = transfer(&mut raw);
        assert_eq!(body(&t), b"m0", "round {round}");
    }
}

#[test]
fn a_discharges_answer_comes_before_the_redelivery_of_its_nack() {
    let b = broker();
    let mut raw = Raw::open(native_addr(&b));
    raw.attach(1, Role::Receiver, "/queue/answer.tx", SettleMode::Unsettled);
    raw.flow(1, 0, 100, false, false);
    b.client().send_message("/queue/answer.tx", "m0", &[]);
    let t = transfer(&mut raw);
    raw.send(Frame::new(
        1,
        Declare {
            txn_id: "t".into(),
            error: None,
        },
    ));
    assert!(matches!(
        raw.recv().performative,
        Some(Performative::Declare(_))
    ));
    raw.send(Frame::new(
        1,
        Disposition {
            role: Role::Receiver.into(),
            first: t.delivery_id,
            settled: true,
            txn_id: Some("t".into()),
            state: Some(DeliveryState::Modified(Modified {
                delivery_failed: true,
                undeliverable_here: false,
            })),
            ..Disposition::default()
        },
    ));
    raw.send(Frame::new(
        1,
        Discharge {
            txn_id: "t".into(),
            fail: false,
            error: None,
        },
    ));
    let answer = raw.recv();
    assert!(
        matches!(
            &answer.performative,
            Some(Performative::Discharge(Discharge { error: None, .. }))
        ),
        "the Discharge answer must come first, got {answer:?}"
    );
    let again = transfer(&mut raw);
    assert_eq!(body(&again), b"m0");
    assert!(again.message.unwrap().properties.unwrap().redelivered);
}
