//! Writing STOMP frames into a byte buffer.
//!
//! [`FrameWriter`] writes a frame header by header straight into the output buffer,
//! which lets the broker build MESSAGE frames without first assembling a
//! [`Frame`]; [`encode_frame`] writes a whole [`Frame`].

use super::frame::{Command, Frame};
use super::Version;
use bytes::{BufMut, BytesMut};

/// What ends every frame written: NUL, then one LF. STOMP 1.2 allows any
/// number of EOLs after the NUL (every reader skips them as heart-beats),
/// and ActiveMQ and RabbitMQ always write one. Some clients rely on it:
/// PHP's `stomp` extension, after a `content-length` body, reads exactly two
/// more bytes and expects NUL and LF, so a frame ended by NUL alone makes it
/// take the first byte of the next frame and lose its place in the stream.
/// The same bytes go over TCP, TLS and WebSocket (one encoder for all
/// three; stomp.js skips the LF after the NUL, see `broker::websocket`).
pub const FRAME_END: &[u8] = b"\0\n";

/// Writes one frame into a buffer: [`FrameWriter::begin`], any number of
/// [`FrameWriter::header`] calls, then [`FrameWriter::finish`] with the body.
pub struct FrameWriter<'a> {
    buf: &'a mut BytesMut,
    escape: Escape,
}

#[derive(Clone, Copy)]
enum Escape {
    /// 1.0, or CONNECT/CONNECTED: no escape sequences exist, so a newline in a
    /// value (which would end the header) becomes a space.
    None,
    /// 1.1: `\\`, `\n`, `\c`.
    V1_1,
    /// 1.2: 1.1 plus `\r`.
    V1_2,
}

impl<'a> FrameWriter<'a> {
    /// Writes the command line.
    pub fn begin(buf: &'a mut BytesMut, command: Command, version: Version) -> FrameWriter<'a> {
        let escape = match version {
            _ if !command.escapes_headers() => Escape::None,
            Version::V1_0 => Escape::None,
            Version::V1_1 => Escape::V1_1,
            Version::V1_2 => Escape::V1_2,
        };
        buf.put_slice(command.as_str().as_bytes());
        buf.put_u8(b'\n');
        FrameWriter { buf, escape }
    }

    /// Writes one `name:value` line, escaped for the version.
    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.put_escaped(name);
        self.buf.put_u8(b':');
        self.put_escaped(value);
        self.buf.put_u8(b'\n');
        self
    }

    /// Writes a header whose value is an integer, without allocating.
    pub fn header_u64(&mut self, name: &str, value: u64) -> &mut Self {
        self.put_escaped(name);
        self.buf.put_u8(b':');
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut v = value;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.buf.put_slice(&digits[i..]);
        self.buf.put_u8(b'\n');
        self
    }

    /// Writes `content-length` (when the body is not empty), the blank line, the
    /// body and the [`FRAME_END`] terminator.
    pub fn finish(mut self, body: &[u8]) {
        if !body.is_empty() {
            self.header_u64("content-length", body.len() as u64);
        }
        self.buf.put_u8(b'\n');
        self.buf.put_slice(body);
        self.buf.put_slice(FRAME_END);
    }

    /// [`FrameWriter::finish`] without the body: writes `content-length`
    /// (when `body_len` is not 0) and the blank line. The caller then sends
    /// the `body_len` bytes of the body and [`FRAME_END`] itself, so a large
    /// body can go to the socket without being copied into `buf`.
    pub fn finish_head(mut self, body_len: usize) {
        if body_len != 0 {
            self.header_u64("content-length", body_len as u64);
        }
        self.buf.put_u8(b'\n');
    }

    fn put_escaped(&mut self, text: &str) {
        let special = |b: u8| matches!(b, b'\\' | b'\n' | b':' | b'\r');
        if !text.bytes().any(special) {
            self.buf.put_slice(text.as_bytes());
            return;
        }
        for b in text.bytes() {
            match (self.escape, b) {
                (Escape::None, b'\n') => self.buf.put_u8(b' '),
                (Escape::None, b) => self.buf.put_u8(b),
                (_, b'\\') => self.buf.put_slice(b"\\\\"),
                (_, b'\n') => self.buf.put_slice(b"\\n"),
                (_, b':') => self.buf.put_slice(b"\\c"),
                (Escape::V1_2, b'\r') => self.buf.put_slice(b"\\r"),
                (_, b) => self.buf.put_u8(b),
            }
        }
    }
}

/// Writes a whole frame. A `content-length` header in `frame.headers` is
/// ignored in favour of the body's real length.
pub fn encode_frame(frame: &Frame, version: Version, buf: &mut BytesMut) {
    buf.reserve(64 + frame.body.len());
    let mut w = FrameWriter::begin(buf, frame.command, version);
    for (name, value) in frame.headers.iter() {
        if name != "content-length" {
            w.header(name, value);
        }
    }
    w.finish(&frame.body);
}
