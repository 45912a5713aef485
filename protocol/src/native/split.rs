//! Splitting a [`Transfer`] too large for the peer's maximum frame size into
//! several Transfer frames.
//!
//! The first frame carries everything but part of the body: handle, delivery id
//! and tag, settled flag, transaction, properties and application headers.
//! Each further frame carries the handle, the delivery id, the settled flag and
//! the next piece of the body. Every frame but the last has `more = true`. Body
//! pieces are slices of the original [`Bytes`]; nothing is copied.
//! [`super::Reassembler`] joins the pieces on the receiving side.

use super::codec::encoded_frame_size;
use super::error::NativeError;
use super::frame::{Frame, Performative};
use super::transfer::{Message, Transfer};
use bytes::Bytes;

/// Bytes a frame can grow by when a body of any size is put into a Transfer
/// whose size was measured with an empty body: the body field's tag (1) and
/// length varint (at most 5), plus the growth of the two enclosing length
/// varints (Transfer inside Frame, Message inside Transfer; at most 4 each).
const BODY_FIELD_SLACK: usize = 1 + 5 + 4 + 4;

/// Splits `transfer` into frames on `channel` of at most `max_frame_size` bytes
/// each (length prefix included). A transfer that fits yields itself, unchanged.
///
/// Fails with [`NativeError::DoesNotFit`] when even the first frame with a
/// one-byte body piece (properties and headers included) would exceed the limit.
pub fn split_transfer(
    channel: u32,
    transfer: Transfer,
    max_frame_size: usize,
) -> Result<TransferFrames, NativeError> {
    let whole = Frame::new(channel, transfer);
    let whole_size = encoded_frame_size(&whole);
    let Some(Performative::Transfer(mut first)) = whole.performative else {
        // Frame::new above put a Transfer there; this arm cannot be reached.
        return Ok(TransferFrames::empty(channel));
    };
    if whole_size <= max_frame_size {
        return Ok(TransferFrames {
            channel,
            whole: Some(first),
            ..TransferFrames::empty(channel)
        });
    }
    let final_more = first.more;
    let body = first
        .message
        .as_mut()
        .map(|m| std::mem::take(&mut m.body))
        .unwrap_or_default();
    let continuation = Transfer {
        handle: first.handle,
        delivery_id: first.delivery_id,
        settled: first.settled,
        more: true,
        message: Some(Message::default()),
        ..Transfer::default()
    };
    first.more = true;
    let first_chunk = body_room(channel, &first, max_frame_size)?;
    let chunk = body_room(channel, &continuation, max_frame_size)?;
    if body.is_empty() {
        // Properties and headers alone exceed the limit: nothing to split.
        return Err(NativeError::DoesNotFit {
            performative: "transfer",
            needed: whole_size,
            limit: max_frame_size,
        });
    }
    Ok(TransferFrames {
        channel,
        whole: None,
        first: Some(first),
        continuation,
        body,
        first_chunk,
        chunk,
        final_more,
    })
}

/// How many body bytes fit into `template` (whose body is empty) within `limit`.
fn body_room(channel: u32, template: &Transfer, limit: usize) -> Result<usize, NativeError> {
    let overhead = encoded_frame_size(&Frame::new(channel, template.clone())) + BODY_FIELD_SLACK;
    match limit.checked_sub(overhead) {
        Some(room) if room > 0 => Ok(room),
        _ => Err(NativeError::DoesNotFit {
            performative: "transfer",
            needed: overhead + 1,
            limit,
        }),
    }
}

/// The frames of one split transfer, produced lazily by [`split_transfer`].
#[derive(Debug, Clone)]
pub struct TransferFrames {
    channel: u32,
    /// Set when the transfer fit in one frame: it is yielded as it was.
    whole: Option<Transfer>,
    /// The first frame's transfer, with an empty body, until it is yielded.
    first: Option<Transfer>,
    /// Template of every later frame, with an empty body.
    continuation: Transfer,
    /// Body bytes not yet yielded.
    body: Bytes,
    first_chunk: usize,
    chunk: usize,
    /// The `more` flag of the original transfer, given to the last frame.
    final_more: bool,
}

impl TransferFrames {
    fn empty(channel: u32) -> TransferFrames {
        TransferFrames {
            channel,
            whole: None,
            first: None,
            continuation: Transfer::default(),
            body: Bytes::new(),
            first_chunk: 0,
            chunk: 0,
            final_more: false,
        }
    }

    fn remaining(&self) -> usize {
        if self.whole.is_some() {
            return 1;
        }
        let mut left = self.body.len();
        let mut frames = 0;
        if self.first.is_some() {
            frames += 1;
            left = left.saturating_sub(self.first_chunk);
        }
        if self.chunk > 0 {
            frames += left.div_ceil(self.chunk);
        }
        frames
    }
}

impl Iterator for TransferFrames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if let Some(whole) = self.whole.take() {
            return Some(Frame::new(self.channel, whole));
        }
        let (mut transfer, room) = match self.first.take() {
            Some(first) => (first, self.first_chunk),
            None if !self.body.is_empty() => (self.continuation.clone(), self.chunk),
            None => return None,
        };
        let piece = self.body.split_to(room.min(self.body.len()));
        transfer.more = !self.body.is_empty() || self.final_more;
        transfer.message.get_or_insert_with(Message::default).body = piece;
        Some(Frame::new(self.channel, transfer))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining();
        (n, Some(n))
    }
}

impl ExactSizeIterator for TransferFrames {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::native::Properties;

    fn transfer(body_len: usize) -> Transfer {
        Transfer {
            handle: 3,
            delivery_id: 300,
            delivery_tag: Bytes::from_static(b"tag"),
            message: Some(Message {
                properties: Some(Properties {
                    destination: "/queue/big".into(),
                    ..Properties::default()
                }),
                body: Bytes::from((0..body_len).map(|i| i as u8).collect::<Vec<u8>>()),
                ..Message::default()
            }),
            ..Transfer::default()
        }
    }

    #[test]
    fn small_transfer_is_one_unchanged_frame() {
        let frames: Vec<Frame> = split_transfer(1, transfer(10), 512).unwrap().collect();
        assert_eq!(frames, vec![Frame::new(1, transfer(10))]);
    }

    #[test]
    fn large_transfer_fills_frames_up_to_the_limit() {
        let frames = split_transfer(1, transfer(5000), 512).unwrap();
        let expected = frames.len();
        let frames: Vec<Frame> = frames.collect();
        assert_eq!(frames.len(), expected);
        assert!(frames.len() >= 10, "{} frames", frames.len());
        let mut body = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            let size = encoded_frame_size(frame);
            assert!(size <= 512, "frame {i} is {size} bytes");
            // Pieces are not wastefully small: within the slack of the limit.
            if i + 1 < frames.len() {
                assert!(
                    size > 512 - 2 * BODY_FIELD_SLACK,
                    "frame {i} is {size} bytes"
                );
            }
            let Some(Performative::Transfer(t)) = &frame.performative else {
                panic!("not a transfer");
            };
            assert_eq!(t.more, i + 1 < frames.len());
            assert_eq!(t.delivery_id, 300);
            assert_eq!(t.message.as_ref().unwrap().properties.is_some(), i == 0);
            body.extend_from_slice(&t.message.as_ref().unwrap().body);
        }
        assert_eq!(body, transfer(5000).message.unwrap().body);
    }

    #[test]
    fn headers_larger_than_a_frame_do_not_fit() {
        let mut t = transfer(10);
        let m = t.message.as_mut().unwrap();
        m.application_headers.insert("h".into(), "x".repeat(600));
        let err = split_transfer(0, t, 512).unwrap_err();
        assert!(
            matches!(err, NativeError::DoesNotFit { limit: 512, .. }),
            "{err}"
        );
    }
}
