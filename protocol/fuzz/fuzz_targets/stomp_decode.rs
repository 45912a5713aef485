//! Fuzzes the STOMP decoder: arbitrary bytes, delivered in two pieces split at an
//! arbitrary point, under small limits so that every limit check is reachable.
//! The decoder must never panic and never loop without consuming input.
//!
//! Input layout: byte 0 picks the STOMP version, bytes 1-2 the split point, the
//! rest is the byte stream.
#![no_main]

use bytes::BytesMut;
use ferromq_protocol::stomp::{Decoder, Limits, Version};
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
                Ok(Some(_)) => assert!(buf.len() < before, "a frame was decoded from nothing"),
                Ok(None) => break,
                // An error closes the connection: nothing more is read.
                Err(_) => return,
            }
        }
    }
});
