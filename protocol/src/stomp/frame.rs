//! The STOMP frame: a command, ordered headers and a body.

use crate::headers::Headers;
use bytes::Bytes;
use std::fmt;

/// Every STOMP command of versions 1.0 to 1.2, client and server side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Client: open a session (`STOMP` is the 1.1+ synonym, see [`Command::Stomp`]).
    Connect,
    /// Client: 1.1+ spelling of CONNECT.
    Stomp,
    /// Server: the session is open.
    Connected,
    /// Client: publish a message.
    Send,
    /// Client: start consuming from a destination.
    Subscribe,
    /// Client: stop consuming.
    Unsubscribe,
    /// Client: acknowledge a message.
    Ack,
    /// Client: reject a message (1.1+).
    Nack,
    /// Client: start a transaction.
    Begin,
    /// Client: commit a transaction.
    Commit,
    /// Client: roll a transaction back.
    Abort,
    /// Client: close the session.
    Disconnect,
    /// Server: a delivered message.
    Message,
    /// Server: confirms a frame that carried `receipt`.
    Receipt,
    /// Server: something went wrong; the connection closes after it.
    Error,
}

impl Command {
    /// The command as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Connected => "CONNECTED",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// Parses a command line. ActiveMQ's legacy abbreviations `SUB`/`UNSUB` are
    /// accepted because some old clients still send them.
    pub fn parse(s: &[u8]) -> Option<Command> {
        Some(match s {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"CONNECTED" => Command::Connected,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" | b"SUB" => Command::Subscribe,
            b"UNSUBSCRIBE" | b"UNSUB" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// CONNECT, STOMP and CONNECTED never escape their headers (the 1.1/1.2 rule
    /// keeps them readable by 1.0 peers before a version is agreed).
    pub fn escapes_headers(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One STOMP frame. The body is a [`Bytes`] slice of the read buffer when
/// decoded, so it can be shared by every subscriber without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command line.
    pub command: Command,
    /// Headers in wire order.
    pub headers: Headers,
    /// The body (may contain NULs when `content-length` was given).
    pub body: Bytes,
}

impl Frame {
    /// A frame with no headers and an empty body.
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Builder: adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Frame {
        self.headers.push(name, value);
        self
    }

    /// Builder: sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// Shorthand for `self.headers.get(name)`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}
