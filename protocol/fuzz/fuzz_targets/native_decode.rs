//! Fuzzes the native protocol's decoding side: the preamble check, the frame
//! decoder fed in two arbitrary pieces, the transfer reassembler, and two
//! invariants on every frame that decodes: it re-encodes to something that
//! decodes to the same frame, and a transfer split into small frames
//! reassembles to itself.
//!
//! Input layout: byte 0 picks the inbound frame limit, bytes 1-2 the split
//! point, the rest is the byte stream.
#![no_main]

use bytes::BytesMut;
use ferromq_protocol::native::{
    looks_like_native, split_transfer, NativeCodec, Performative, Preamble, Reassembler,
    MIN_MAX_FRAME_SIZE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Preamble::parse(data);
    let _ = looks_like_native(data);
    let [limit, hi, lo, stream @ ..] = data else {
        return;
    };
    let inbound = u32::from(*limit) * 64;
    let split = usize::from(u16::from_be_bytes([*hi, *lo])) % (stream.len() + 1);
    let codec = NativeCodec::new(inbound);
    let mut reassembler = Reassembler::new(64 * 1024);
    let mut buf = BytesMut::new();
    for piece in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    check_re_encoding(&frame);
                    if let Some(Performative::Transfer(t)) = frame.performative {
                        check_split(t.clone());
                        if reassembler.push(t).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                // A decode error closes the connection: nothing more is read.
                Err(_) => return,
            }
        }
    }
});

fn check_re_encoding(frame: &ferromq_protocol::native::Frame) {
    let codec = NativeCodec::new(u32::MAX);
    let mut out = BytesMut::new();
    codec
        .encode(frame, &mut out)
        .expect("a decoded frame re-encodes");
    let again = codec.decode(&mut out).expect("re-encoded frame decodes");
    assert_eq!(again.as_ref(), Some(frame), "re-encoding changed the frame");
    assert!(out.is_empty());
}

fn check_split(mut transfer: ferromq_protocol::native::Transfer) {
    transfer.more = false;
    let Ok(frames) = split_transfer(1, transfer.clone(), MIN_MAX_FRAME_SIZE as usize) else {
        return; // properties too large for the smallest frame: a legitimate refusal
    };
    let mut reassembler = Reassembler::new(usize::MAX);
    let mut whole = None;
    for frame in frames {
        assert!(
            ferromq_protocol::native::encoded_frame_size(&frame) <= MIN_MAX_FRAME_SIZE as usize
        );
        let Some(Performative::Transfer(piece)) = frame.performative else {
            panic!("split produced a {}", frame.performative_name());
        };
        assert!(whole.is_none(), "pieces after the last one");
        whole = reassembler.push(piece).expect("own pieces reassemble");
    }
    let whole = whole.expect("the last piece completes the message");
    // A split message always comes back with a message, possibly empty.
    if transfer.message.is_none() && whole.message.is_some() {
        transfer.message = Some(Default::default());
    }
    assert_eq!(whole, transfer);
}
