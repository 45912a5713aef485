//! The [`Frame`]: a channel number and exactly one [`Performative`]. This is the
//! unit the codec reads and writes; on the wire each frame is a 4-byte big-endian
//! length followed by the prost encoding of this message.

use super::condition::{ErrorCondition, ErrorInfo};
use super::performative::{
    Attach, Begin, Close, Declare, Detach, Discharge, End, Flow, Heartbeat, Open,
};
use super::transfer::{Disposition, Transfer};

/// One frame: the channel (session) it belongs to and its performative.
///
/// `performative` is an `Option` only because that is how prost models a oneof;
/// [`super::NativeCodec::decode`] never returns a frame without one.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Frame {
    /// The session's channel; connection-level performatives use channel 0.
    #[prost(uint32, tag = "1")]
    pub channel: u32,
    /// What the frame does.
    #[prost(
        oneof = "Performative",
        tags = "2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13"
    )]
    pub performative: Option<Performative>,
}

/// Everything a frame can carry, named after AMQP 1.0's performatives.
#[derive(Clone, PartialEq, Eq, prost::Oneof)]
pub enum Performative {
    /// Opens the connection.
    #[prost(message, tag = "2")]
    Open(Open),
    /// Opens a session.
    #[prost(message, tag = "3")]
    Begin(Begin),
    /// Ends a session.
    #[prost(message, tag = "4")]
    End(End),
    /// Attaches a link.
    #[prost(message, tag = "5")]
    Attach(Attach),
    /// Detaches or closes a link.
    #[prost(message, tag = "6")]
    Detach(Detach),
    /// Link credit and state.
    #[prost(message, tag = "7")]
    Flow(Flow),
    /// A message or a piece of one.
    #[prost(message, tag = "8")]
    Transfer(Transfer),
    /// Settlement and outcome of deliveries.
    #[prost(message, tag = "9")]
    Disposition(Disposition),
    /// Closes the connection.
    #[prost(message, tag = "10")]
    Close(Close),
    /// Starts a transaction.
    #[prost(message, tag = "11")]
    Declare(Declare),
    /// Commits or rolls back a transaction.
    #[prost(message, tag = "12")]
    Discharge(Discharge),
    /// Keeps an idle connection alive.
    #[prost(message, tag = "13")]
    Heartbeat(Heartbeat),
}

impl Performative {
    /// The performative's lower-case name, for logs and error descriptions.
    pub fn name(&self) -> &'static str {
        match self {
            Performative::Open(_) => "open",
            Performative::Begin(_) => "begin",
            Performative::End(_) => "end",
            Performative::Attach(_) => "attach",
            Performative::Detach(_) => "detach",
            Performative::Flow(_) => "flow",
            Performative::Transfer(_) => "transfer",
            Performative::Disposition(_) => "disposition",
            Performative::Close(_) => "close",
            Performative::Declare(_) => "declare",
            Performative::Discharge(_) => "discharge",
            Performative::Heartbeat(_) => "heartbeat",
        }
    }

    /// The error report a Close, End, Detach or a Declare/Discharge reply carries, if any.
    pub fn error(&self) -> Option<&ErrorInfo> {
        match self {
            Performative::Close(c) => c.error.as_ref(),
            Performative::End(e) => e.error.as_ref(),
            Performative::Detach(d) => d.error.as_ref(),
            Performative::Declare(d) => d.error.as_ref(),
            Performative::Discharge(d) => d.error.as_ref(),
            _ => None,
        }
    }
}

impl Frame {
    /// A frame carrying `performative` on `channel`.
    pub fn new(channel: u32, performative: impl Into<Performative>) -> Frame {
        Frame {
            channel,
            performative: Some(performative.into()),
        }
    }

    /// A heart-beat frame (channel 0).
    pub fn heartbeat() -> Frame {
        Frame::new(0, Heartbeat {})
    }

    /// A Close frame (channel 0) reporting `condition`.
    pub fn close_with(condition: ErrorCondition, description: impl Into<String>) -> Frame {
        Frame::new(0, Close::with_error(condition, description))
    }

    /// The performative's name, or `"none"` for a frame without one.
    pub fn performative_name(&self) -> &'static str {
        self.performative
            .as_ref()
            .map_or("none", Performative::name)
    }
}

macro_rules! performative_from {
    ($($variant:ident),* $(,)?) => {
        $(
            impl From<$variant> for Performative {
                fn from(body: $variant) -> Performative {
                    Performative::$variant(body)
                }
            }
        )*
    };
}

performative_from!(
    Open,
    Begin,
    End,
    Attach,
    Detach,
    Flow,
    Transfer,
    Disposition,
    Close,
    Declare,
    Discharge,
    Heartbeat,
);

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_variant() {
        assert_eq!(Frame::heartbeat().performative_name(), "heartbeat");
        assert_eq!(Frame::new(3, Flow::default()).performative_name(), "flow");
        assert_eq!(Frame::default().performative_name(), "none");
        let close = Frame::close_with(ErrorCondition::NotAllowed, "no");
        assert_eq!(close.performative_name(), "close");
        let err = close.performative.as_ref().and_then(Performative::error);
        assert_eq!(err.map(|e| e.condition()), Some(ErrorCondition::NotAllowed));
    }
}
