//! STOMP 1.0, 1.1 and 1.2 (<https://stomp.github.io/>).
//!
//! - [`frame`]: the [`Frame`], its [`Command`] and [`Headers`].
//! - [`decode`]: [`Decoder`], an incremental parser over a byte buffer with hard
//!   [`Limits`]; a partial frame yields `Ok(None)`, never an error.
//! - [`encode`]: writing frames (and the broker's hot-path MESSAGE frames) with the
//!   escaping rules of the negotiated [`Version`], each ended by [`FRAME_END`]
//!   (NUL and LF).

pub mod decode;
pub mod encode;
pub mod frame;

pub use crate::headers::Headers;
pub use decode::{Decoder, FrameError, Limits};
pub use encode::{encode_frame, FrameWriter, FRAME_END};
pub use frame::{Command, Frame};

use std::fmt;

/// A STOMP protocol version. Ordered, so `Version::V1_1 <= v` reads naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// STOMP 1.0: no header escaping, no NACK, optional subscription ids.
    V1_0,
    /// STOMP 1.1: header escaping (`\\ \n \c`), NACK, heart-beats, required ids.
    V1_1,
    /// STOMP 1.2: adds `\r` escaping, CRLF line endings and the `ack` header.
    V1_2,
}

impl Version {
    /// Every version this implementation speaks, lowest first.
    pub const ALL: [Version; 3] = [Version::V1_0, Version::V1_1, Version::V1_2];

    /// The version as written in `accept-version` / `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses `"1.0"`, `"1.1"` or `"1.2"`.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// Picks the highest version both sides speak from a CONNECT's
    /// `accept-version` header; a missing header means 1.0 (the spec's rule).
    /// Returns `None` when the client offers only versions we do not speak.
    pub fn negotiate(accept_version: Option<&str>) -> Option<Version> {
        match accept_version {
            None => Some(Version::V1_0),
            Some(list) => list.split(',').filter_map(Version::parse).max(),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common() {
        assert_eq!(Version::negotiate(None), Some(Version::V1_0));
        assert_eq!(Version::negotiate(Some("1.0,1.1,1.2")), Some(Version::V1_2));
        assert_eq!(Version::negotiate(Some("1.1")), Some(Version::V1_1));
        assert_eq!(Version::negotiate(Some("1.1,2.0")), Some(Version::V1_1));
        assert_eq!(Version::negotiate(Some("2.0")), None);
    }
}
