//! Error conditions: the typed reason carried by Close, End, Detach, Rejected and
//! failed transaction replies, so that a peer can react to the kind of failure and
//! a person can read the description.

use std::fmt;

/// Why a connection, session, link, delivery or transaction failed.
///
/// On the wire this is a protobuf enum; an unknown value (from a newer peer) reads
/// as [`ErrorCondition::InternalError`] through [`ErrorInfo::condition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ErrorCondition {
    /// The peer hit a bug or an unexpected failure (store error, I/O error).
    InternalError = 0,
    /// A frame could not be decoded, or a field holds a value the protocol forbids.
    DecodeError = 1,
    /// A frame exceeds the negotiated maximum, or the maximum is too small to be usable.
    FrameSizeTooSmall = 2,
    /// Bad credentials, or the user may not use this destination this way.
    UnauthorizedAccess = 3,
    /// The destination, durable subscription, link handle or transaction does not exist.
    NotFound = 4,
    /// A limit was reached: connections, links, memory, message size.
    ResourceLimitExceeded = 5,
    /// The request is valid but the broker's policy forbids it.
    NotAllowed = 6,
    /// The performative is not allowed in the current state (e.g. a Transfer
    /// without credit, an Attach before Begin).
    IllegalState = 7,
    /// Cluster mode: this node is not the leader; the description names the
    /// leader's address for this protocol (`leader=HOST:PORT`), or says none
    /// is known during an election. Reconnect there.
    NotLeader = 8,
}

impl ErrorCondition {
    /// Every condition, in wire-value order.
    pub const ALL: [ErrorCondition; 9] = [
        ErrorCondition::InternalError,
        ErrorCondition::DecodeError,
        ErrorCondition::FrameSizeTooSmall,
        ErrorCondition::UnauthorizedAccess,
        ErrorCondition::NotFound,
        ErrorCondition::ResourceLimitExceeded,
        ErrorCondition::NotAllowed,
        ErrorCondition::IllegalState,
        ErrorCondition::NotLeader,
    ];

    /// The condition's name as written in NATIVE.md, logs and STOMP ERROR frames.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCondition::InternalError => "internal-error",
            ErrorCondition::DecodeError => "decode-error",
            ErrorCondition::FrameSizeTooSmall => "frame-size-too-small",
            ErrorCondition::UnauthorizedAccess => "unauthorized-access",
            ErrorCondition::NotFound => "not-found",
            ErrorCondition::ResourceLimitExceeded => "resource-limit-exceeded",
            ErrorCondition::NotAllowed => "not-allowed",
            ErrorCondition::IllegalState => "illegal-state",
            ErrorCondition::NotLeader => "not-leader",
        }
    }

    /// Parses a name produced by [`ErrorCondition::as_str`].
    pub fn parse(name: &str) -> Option<ErrorCondition> {
        ErrorCondition::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for ErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition plus a human-readable description, as sent to the peer.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ErrorInfo {
    /// The wire value of an [`ErrorCondition`]; read it with [`ErrorInfo::condition`].
    #[prost(enumeration = "ErrorCondition", tag = "1")]
    pub condition: i32,
    /// What went wrong, for a person: which frame, field, limit or destination.
    #[prost(string, tag = "2")]
    pub description: String,
}

impl ErrorInfo {
    /// An error report with the given condition and description.
    pub fn new(condition: ErrorCondition, description: impl Into<String>) -> ErrorInfo {
        ErrorInfo {
            condition: condition.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.condition(), self.description)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for (wire, condition) in ErrorCondition::ALL.into_iter().enumerate() {
            assert_eq!(i32::from(condition), wire as i32);
            assert_eq!(ErrorCondition::parse(condition.as_str()), Some(condition));
        }
        assert_eq!(ErrorCondition::parse("decode_error"), None);
    }

    #[test]
    fn unknown_wire_value_reads_as_internal_error() {
        let info = ErrorInfo {
            condition: 99,
            description: "from the future".into(),
        };
        assert_eq!(info.condition(), ErrorCondition::InternalError);
        assert_eq!(
            ErrorInfo::new(ErrorCondition::NotFound, "no /queue/x").to_string(),
            "not-found: no /queue/x"
        );
    }
}
