//! The STOMP frame: a command, ordered headers and a body.

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

/// Ordered frame headers. Repeated names are kept; lookups return the first
/// occurrence, as the 1.1/1.2 specs require.
///
/// Names and values are stored unescaped in one `String` with an index of ranges,
/// so a decoded frame costs two allocations however many headers it has.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// `(name_start, name_end, value_end)`; the value starts at `name_end`.
    entries: Vec<(u32, u32, u32)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a header, keeping any earlier one of the same name.
    pub fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        // Frames are bounded far below 4 GiB by `Limits`, so offsets fit in u32.
        self.entries
            .push((start as u32, name_end as u32, self.text.len() as u32));
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All headers in wire order, repeats included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(move |&(s, n, e)| {
            (
                &self.text[s as usize..n as usize],
                &self.text[n as usize..e as usize],
            )
        })
    }

    /// Number of header lines, repeats included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.push(n, v);
        }
        h
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
