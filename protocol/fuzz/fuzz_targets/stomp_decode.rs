//! Fuzzes the STOMP decoder: arbitrary bytes, delivered in two pieces split at an
//! arbitrary point, under small limits so that every limit check is reachable.
//! The decoder must never panic and never loop without consuming input. Each
//! decoded frame also goes through the STOMP -> native mapping: when it maps,
//! mapping the result back to STOMP headers and again to native gives the same
//! message (the mapping loses nothing it keeps).
//!
//! Input layout: byte 0 picks the STOMP version, bytes 1-2 the split point, the
//! rest is the byte stream.
#![no_main]

use bytes::BytesMut;
use ferromq_protocol::native::{message_from_stomp, stomp_headers_from};
use ferromq_protocol::stomp::{Decoder, Frame, Limits, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [version, hi, lo, stream @ ..] = data else {
        return;
    };
    let version = Version::ALL[usize::from(*version) % Version::ALL.len()];
    let split = usize::from(u16::from_be_bytes([*hi, *lo])) % (stream.len() + 1);
    let mut decoder = Decoder::new(Limits {
        max_frame_size: 4096,
        max_headers: 16,
        max_header_line: 256,
        ..Limits::default()
    });
    decoder.set_version(version);
    let mut buf = BytesMut::new();
    for piece in [&stream[..split], &stream[split..]] {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "a frame was decoded from nothing");
                    check_mapping(&frame);
                }
                Ok(None) => break,
                // An error closes the connection: nothing more is read.
                Err(_) => return,
            }
        }
    }
});

fn check_mapping(frame: &Frame) {
    let Ok(message) = message_from_stomp(&frame.headers, frame.body.clone()) else {
        return; // a header value the mapping refuses, with an error
    };
    let again = message_from_stomp(&stomp_headers_from(&message), frame.body.clone())
        .expect("headers produced by the mapping map back");
    assert_eq!(again, message);
}
