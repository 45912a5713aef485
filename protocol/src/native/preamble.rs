//! The connection preamble: eight bytes each side sends before any frame, so that
//! a server can tell a native client from STOMP, HTTP or noise and both sides
//! agree on the protocol version.
//!
//! Layout: the magic `b"FMQ\0"`, then the version as `major, minor, patch`, then
//! one reserved zero byte. A client sends its preamble; a server that speaks the
//! client's major version answers with its own and frames follow. Otherwise the
//! server answers with its own preamble (so the client learns what the server
//! speaks) and closes the socket.

use std::fmt;

/// The first four bytes of every native connection.
pub const MAGIC: [u8; 4] = *b"FMQ\0";

/// A native protocol version. Versions with the same major number interoperate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    /// Incompatible changes.
    pub major: u8,
    /// Compatible additions.
    pub minor: u8,
    /// Fixes.
    pub patch: u8,
}

impl ProtocolVersion {
    /// The version this crate implements.
    pub const CURRENT: ProtocolVersion = ProtocolVersion {
        major: 1,
        minor: 0,
        patch: 0,
    };

    /// Whether a peer at this version can talk to [`ProtocolVersion::CURRENT`].
    pub fn is_compatible(self) -> bool {
        self.major == ProtocolVersion::CURRENT.major
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// What the first bytes of a connection say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreambleCheck {
    /// Fewer than [`Preamble::LEN`] bytes, all consistent with a preamble so far.
    NeedMore,
    /// A native preamble of a version we speak: answer with ours and read frames.
    Ok(ProtocolVersion),
    /// A native preamble of a version we do not speak (or with a non-zero reserved
    /// byte): answer with ours and close.
    Unsupported(ProtocolVersion),
    /// Not the native protocol at all (STOMP, HTTP, noise): close with a message.
    NotNative,
}

/// The eight-byte connection preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    /// The version it announces.
    pub version: ProtocolVersion,
}

impl Preamble {
    /// Length of a preamble in bytes.
    pub const LEN: usize = 8;

    /// The preamble of [`ProtocolVersion::CURRENT`].
    pub const CURRENT: Preamble = Preamble {
        version: ProtocolVersion::CURRENT,
    };

    /// The preamble's wire bytes.
    pub fn to_bytes(self) -> [u8; Preamble::LEN] {
        let v = self.version;
        [
            MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], v.major, v.minor, v.patch, 0,
        ]
    }

    /// Examines the first bytes a peer sent. Only the first [`Preamble::LEN`]
    /// bytes are looked at; frames may follow them in the same buffer.
    pub fn parse(buf: &[u8]) -> PreambleCheck {
        let magic_seen = buf.len().min(MAGIC.len());
        if buf[..magic_seen] != MAGIC[..magic_seen] {
            return PreambleCheck::NotNative;
        }
        let Some(&[_, _, _, _, major, minor, patch, reserved]) = buf.get(..Preamble::LEN) else {
            return PreambleCheck::NeedMore;
        };
        let version = ProtocolVersion {
            major,
            minor,
            patch,
        };
        if reserved == 0 && version.is_compatible() {
            PreambleCheck::Ok(version)
        } else {
            PreambleCheck::Unsupported(version)
        }
    }
}

/// Whether a connection's first bytes are a native preamble (its magic).
///
/// For the STOMP listener: no STOMP command starts with `F`, so once four bytes
/// have arrived this tells a native client pointed at the STOMP port, which then
/// gets a STOMP ERROR saying so instead of a silent wait for a newline. Returns
/// false while fewer than four bytes are buffered.
pub fn looks_like_native(buf: &[u8]) -> bool {
    buf.starts_with(&MAGIC)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn current_preamble_bytes() {
        assert_eq!(Preamble::CURRENT.to_bytes(), *b"FMQ\0\x01\x00\x00\x00");
        assert_eq!(ProtocolVersion::CURRENT.to_string(), "1.0.0");
    }

    #[test]
    fn every_prefix_of_a_preamble_needs_more() {
        let bytes = Preamble::CURRENT.to_bytes();
        for len in 0..Preamble::LEN {
            assert_eq!(Preamble::parse(&bytes[..len]), PreambleCheck::NeedMore);
        }
        assert_eq!(
            Preamble::parse(&bytes),
            PreambleCheck::Ok(ProtocolVersion::CURRENT)
        );
    }
}
