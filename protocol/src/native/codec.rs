//! [`NativeCodec`]: turns a byte stream into [`Frame`]s and back.
//!
//! A frame on the wire is a 4-byte big-endian length `N` and then `N` bytes of
//! prost-encoded [`Frame`]. The frame size that limits apply to is `4 + N`, the
//! whole frame with its prefix (as AMQP counts its frame header). Decoding is
//! incremental: a partial frame is `Ok(None)`, and an oversized one is refused
//! as soon as its prefix is read, so a peer cannot make us buffer it.

use super::error::NativeError;
use super::frame::Frame;
use super::performative::DEFAULT_MAX_FRAME_SIZE;
use super::validate::validate;
use bytes::{Buf, BufMut, BytesMut};
use prost::Message as _;

/// Bytes of the length prefix in front of every frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Most spare capacity [`NativeCodec::decode`] reserves for a partial frame.
const MAX_RESERVE: usize = 64 * 1024;

/// Encoder and decoder for one connection, with a limit for each direction.
///
/// Before the Open exchange both limits are [`DEFAULT_MAX_FRAME_SIZE`]; after it,
/// the inbound limit is what this side announced and the outbound one what the
/// peer announced ([`super::Open::effective_max_frame_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeCodec {
    max_inbound: usize,
    max_outbound: usize,
}

impl Default for NativeCodec {
    fn default() -> Self {
        NativeCodec::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl NativeCodec {
    /// A codec accepting and writing frames of at most `max_frame_size` bytes
    /// (taken literally: pass [`super::Open::effective_max_frame_size`], not a
    /// raw 0 meaning "default").
    pub fn new(max_frame_size: u32) -> NativeCodec {
        let limit = max_frame_size as usize;
        NativeCodec {
            max_inbound: limit,
            max_outbound: limit,
        }
    }

    /// The largest frame [`NativeCodec::decode`] accepts.
    pub fn max_inbound_frame_size(&self) -> usize {
        self.max_inbound
    }

    /// The largest frame [`NativeCodec::encode`] writes.
    pub fn max_outbound_frame_size(&self) -> usize {
        self.max_outbound
    }

    /// Sets the inbound limit (what this side announced in its Open).
    pub fn set_max_inbound_frame_size(&mut self, max_frame_size: u32) {
        self.max_inbound = max_frame_size as usize;
    }

    /// Sets the outbound limit (what the peer announced in its Open).
    pub fn set_max_outbound_frame_size(&mut self, max_frame_size: u32) {
        self.max_outbound = max_frame_size as usize;
    }

    /// Removes one whole frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (it then reserves
    /// room for the rest, up to 64 KiB at a time); call again after the next read
    /// into the same buffer. The decoded frame's bodies share `buf`'s memory. A
    /// frame that is too large, malformed or breaks a rule of
    /// [`mod@super::validate`] is an error, after which the connection must close.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, NativeError> {
        let Some(prefix) = buf.get(..LENGTH_PREFIX_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LENGTH_PREFIX_LEN];
        len_bytes.copy_from_slice(prefix);
        // u32 always fits in usize on the 32- and 64-bit targets we build for;
        // saturate anyway so a 16-bit oddity fails the limit check, not the add.
        let body_len = usize::try_from(u32::from_be_bytes(len_bytes)).unwrap_or(usize::MAX);
        let size = body_len.saturating_add(LENGTH_PREFIX_LEN);
        if size > self.max_inbound {
            return Err(NativeError::FrameTooLarge {
                size,
                limit: self.max_inbound,
            });
        }
        if buf.len() < size {
            // Room for the rest, but not more than MAX_RESERVE at a time: a peer
            // that announces a large frame and then stalls should not pin the
            // whole limit's worth of memory per connection.
            buf.reserve((size - buf.len()).min(MAX_RESERVE));
            return Ok(None);
        }
        self.decode_whole(buf.split_to(size).freeze()).map(Some)
    }

    /// Decodes `frame`, exactly one whole frame with its length prefix (as
    /// [`super::view::complete_frame_len`] measures it, after the caller
    /// split it off its read buffer), with the checks of [`NativeCodec::decode`].
    pub fn decode_whole(&self, mut frame: bytes::Bytes) -> Result<Frame, NativeError> {
        if frame.len() > self.max_inbound {
            return Err(NativeError::FrameTooLarge {
                size: frame.len(),
                limit: self.max_inbound,
            });
        }
        if frame.len() < LENGTH_PREFIX_LEN {
            return Err(NativeError::Malformed {
                reason: "frame shorter than its length prefix".into(),
            });
        }
        frame.advance(LENGTH_PREFIX_LEN);
        let frame = Frame::decode(frame).map_err(|e| NativeError::Malformed {
            reason: e.to_string(),
        })?;
        validate(&frame)?;
        Ok(frame)
    }

    /// Appends `frame`, length prefix first, to `buf`.
    ///
    /// Fails without writing anything if the frame has no performative or would
    /// exceed the outbound limit; split large transfers first with [`super::split_transfer`].
    pub fn encode(&self, frame: &Frame, buf: &mut BytesMut) -> Result<(), NativeError> {
        if frame.performative.is_none() {
            // The peer would refuse it; fail here, where the bug is.
            return Err(NativeError::MissingPerformative {
                channel: frame.channel,
            });
        }
        let body_len = frame.encoded_len();
        let size = body_len.saturating_add(LENGTH_PREFIX_LEN);
        let prefix = u32::try_from(body_len)
            .ok()
            .filter(|_| size <= self.max_outbound);
        let Some(prefix) = prefix else {
            return Err(NativeError::DoesNotFit {
                performative: frame.performative_name(),
                needed: size,
                limit: self.max_outbound,
            });
        };
        buf.reserve(size);
        buf.put_u32(prefix);
        frame.encode(buf).map_err(|e| NativeError::Encode {
            performative: frame.performative_name(),
            reason: e.to_string(),
        })
    }
}

/// Encoded size of `frame` on the wire, length prefix included.
pub fn encoded_frame_size(frame: &Frame) -> usize {
    frame.encoded_len().saturating_add(LENGTH_PREFIX_LEN)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::native::{Heartbeat, Transfer};

    #[test]
    fn heartbeat_is_six_bytes() {
        let codec = NativeCodec::default();
        let mut buf = BytesMut::new();
        codec.encode(&Frame::heartbeat(), &mut buf).unwrap();
        // length 2, then field 13 (Heartbeat), length-delimited, empty.
        assert_eq!(&buf[..], &[0, 0, 0, 2, 0x6a, 0x00]);
        assert_eq!(encoded_frame_size(&Frame::heartbeat()), 6);
        let frame = codec.decode(&mut buf).unwrap();
        assert_eq!(frame, Some(Frame::new(0, Heartbeat {})));
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_refuses_frames_over_the_outbound_limit() {
        let mut codec = NativeCodec::new(1024);
        codec.set_max_outbound_frame_size(600);
        let transfer = Transfer {
            delivery_tag: vec![7u8; 700].into(),
            ..Transfer::default()
        };
        let mut buf = BytesMut::new();
        let err = codec
            .encode(&Frame::new(1, transfer), &mut buf)
            .unwrap_err();
        assert!(
            matches!(err, NativeError::DoesNotFit { limit: 600, .. }),
            "{err}"
        );
        assert!(buf.is_empty());
        assert_eq!(codec.max_inbound_frame_size(), 1024);
        let err = codec.encode(&Frame::default(), &mut buf).unwrap_err();
        assert_eq!(err, NativeError::MissingPerformative { channel: 0 });
        assert!(buf.is_empty());
    }
}
