//! [`NativeError`]: everything that can go wrong decoding, validating, encoding,
//! splitting or reassembling native frames. Each variant knows the
//! [`ErrorCondition`] the broker or client reports to the peer before closing.

use super::condition::{ErrorCondition, ErrorInfo};
use thiserror::Error;

/// Why a native byte stream or frame is unacceptable.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NativeError {
    /// The length prefix announces a frame larger than this side accepts. Reported
    /// as soon as the prefix is read, before any of the frame is buffered.
    #[error("frame of {size} bytes exceeds the maximum frame size of {limit} bytes")]
    FrameTooLarge {
        /// Announced size, length prefix included.
        size: usize,
        /// The negotiated maximum.
        limit: usize,
    },
    /// The frame's bytes are not a valid protobuf `Frame`.
    #[error("frame is not a valid native frame: {reason}")]
    Malformed {
        /// prost's explanation.
        reason: String,
    },
    /// The frame carries no performative (or one from a newer protocol version).
    #[error("frame on channel {channel} carries no known performative")]
    MissingPerformative {
        /// The frame's channel.
        channel: u32,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid {performative}.{field}: {reason}")]
    InvalidField {
        /// Which performative (`"attach"`, `"disposition"`, …).
        performative: &'static str,
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An Open announces a maximum frame size below the protocol's minimum.
    #[error("max frame size {announced} is below the minimum of {minimum} bytes")]
    MaxFrameSizeTooSmall {
        /// What the peer announced.
        announced: u32,
        /// [`super::MIN_MAX_FRAME_SIZE`].
        minimum: u32,
    },
    /// A frame to be written would exceed the peer's maximum frame size (for a
    /// Transfer: even its smallest piece would).
    #[error("a {performative} frame needs {needed} bytes but the maximum frame size is {limit}")]
    DoesNotFit {
        /// Which performative.
        performative: &'static str,
        /// Smallest encoding, length prefix included.
        needed: usize,
        /// The peer's maximum frame size.
        limit: usize,
    },
    /// prost failed to encode (cannot happen with a reserved buffer; kept so the
    /// encoder never panics).
    #[error("encoding a {performative} frame failed: {reason}")]
    Encode {
        /// Which performative.
        performative: &'static str,
        /// prost's explanation.
        reason: String,
    },
    /// A reassembled message body exceeds the limit.
    #[error("message on handle {handle} exceeds the maximum message size of {limit} bytes")]
    MessageTooLarge {
        /// The link's handle.
        handle: u32,
        /// The configured maximum body size.
        limit: usize,
    },
    /// A transfer arrived while another split message on the same link is
    /// still incomplete.
    #[error(
        "transfer of delivery {got} on handle {handle} interleaves with incomplete delivery {pending} on handle {pending_handle}"
    )]
    InterleavedTransfer {
        /// Handle of the offending transfer.
        handle: u32,
        /// Its delivery id.
        got: u64,
        /// Handle of the incomplete message.
        pending_handle: u32,
        /// Delivery id of the incomplete message.
        pending: u64,
    },
}

impl NativeError {
    /// The condition to report to the peer for this error.
    pub fn condition(&self) -> ErrorCondition {
        match self {
            NativeError::FrameTooLarge { .. }
            | NativeError::Malformed { .. }
            | NativeError::MissingPerformative { .. }
            | NativeError::InvalidField { .. } => ErrorCondition::DecodeError,
            NativeError::MaxFrameSizeTooSmall { .. } | NativeError::DoesNotFit { .. } => {
                ErrorCondition::FrameSizeTooSmall
            }
            NativeError::Encode { .. } => ErrorCondition::InternalError,
            NativeError::MessageTooLarge { .. } => ErrorCondition::ResourceLimitExceeded,
            NativeError::InterleavedTransfer { .. } => ErrorCondition::IllegalState,
        }
    }

    /// The error as a report for a Close, End or Detach.
    pub fn to_error_info(&self) -> ErrorInfo {
        ErrorInfo::new(self.condition(), self.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn report_carries_condition_and_context() {
        let e = NativeError::FrameTooLarge {
            size: 70_000,
            limit: 65_536,
        };
        let info = e.to_error_info();
        assert_eq!(info.condition(), ErrorCondition::DecodeError);
        assert!(info.description.contains("70000"), "{}", info.description);
        assert!(info.description.contains("65536"), "{}", info.description);
        let e = NativeError::MessageTooLarge {
            handle: 2,
            limit: 10,
        };
        assert_eq!(e.condition(), ErrorCondition::ResourceLimitExceeded);
    }
}
