//! Incremental STOMP frame decoding.
//!
//! [`Decoder::decode`] looks at the front of a read buffer and either removes one
//! whole frame from it, reports that more bytes are needed (`Ok(None)`), or fails
//! with a [`FrameError`] that the caller turns into an ERROR frame. End-of-line
//! bytes between frames are heart-beats and are skipped.
//!
//! The decoder remembers how far it has already looked, so a large body arriving
//! in many reads is not rescanned from the start each time.

use super::frame::{Command, Frame};
use super::Version;
use crate::headers::Headers;
use bytes::{Buf, BytesMut};
use thiserror::Error;

/// Hard limits on what one frame may contain. Each is a broker config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame (command line, headers and body) in bytes.
    pub max_frame_size: usize,
    /// Most header lines in one frame.
    pub max_headers: usize,
    /// Longest single header line (or command line) in bytes.
    pub max_header_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 16 * 1024 * 1024,
            max_headers: 1000,
            max_header_line: 64 * 1024,
        }
    }
}

/// Why a byte stream is not valid STOMP. Every variant ends the connection.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The command line is not a STOMP command.
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    /// The frame is larger than `max_frame_size`.
    #[error("frame larger than the limit of {limit} bytes")]
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// More header lines than `max_headers`.
    #[error("more than {limit} headers in one frame")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A header or command line longer than `max_header_line`.
    #[error("header line longer than the limit of {limit} bytes")]
    HeaderLineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// A header line without a `:`.
    #[error("malformed header line '{0}': expected name:value")]
    MalformedHeader(String),
    /// A backslash escape the negotiated version does not define.
    #[error("invalid escape sequence '\\{0}' in header")]
    InvalidEscape(char),
    /// Header text that is not UTF-8.
    #[error("header is not valid UTF-8")]
    InvalidUtf8,
    /// `content-length` that is not a non-negative integer.
    #[error("invalid content-length '{0}'")]
    BadContentLength(String),
    /// A `content-length` body not followed by the NUL terminator.
    #[error("frame body is not terminated by NUL after content-length bytes")]
    MissingNul,
}

/// Progress through the frame at the front of the buffer, kept between calls.
#[derive(Debug, Clone, Copy, Default)]
enum Progress {
    /// Nothing parsed yet; `scanned` bytes of the head are known not to contain
    /// the blank line that ends the headers.
    #[default]
    Head,
    /// Headers are complete and carried a content-length: the frame is whole
    /// once `total` bytes are buffered.
    Sized { total: usize },
    /// Headers are complete, no content-length: the body ends at the first NUL
    /// at or after `body_start`; `scanned` bytes of it contain no NUL.
    Unsized { body_start: usize, scanned: usize },
}

/// An incremental STOMP decoder for one connection.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    progress: Progress,
    /// Bytes of the current head already searched for its terminating blank line.
    head_scanned: usize,
}

impl Decoder {
    /// A decoder for a new connection. Until [`Decoder::set_version`] is called it
    /// decodes as STOMP 1.0 (no escaping), which is right for CONNECT.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            version: Version::V1_0,
            progress: Progress::Head,
            head_scanned: 0,
        }
    }

    /// Sets the negotiated version, which decides header unescaping.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// How many more bytes the frame at the front needs, once its head is
    /// complete and carried a `content-length` (`buffered`: the bytes in the
    /// read buffer now). The caller reserves them in one step, so a large
    /// body is read into one allocation of its size instead of one that
    /// doubles (and copies what it holds) every time it fills. At most
    /// `max_frame_size`: the head was checked against it.
    pub fn bytes_wanted(&self, buffered: usize) -> Option<usize> {
        match self.progress {
            Progress::Sized { total } => Some(total.saturating_sub(buffered)),
            _ => None,
        }
    }

    /// Removes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only heart-beat EOLs or part of a
    /// frame; call again after reading more bytes into the same buffer.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if matches!(self.progress, Progress::Head) {
            skip_heartbeats(buf);
        }
        loop {
            match self.progress {
                Progress::Head => {
                    if self.head_scanned == 0 {
                        check_command_line(buf, self.limits)?;
                    }
                    let Some(head_len) = self.find_head_end(buf)? else {
                        return Ok(None);
                    };
                    // Parse the headers only for their content-length here; the
                    // frame is built once the body is complete too.
                    let content_length = content_length_of(&buf[..head_len])?;
                    self.progress = match content_length {
                        Some(len) => {
                            let total = head_len + len + 1;
                            if total - 1 > self.limits.max_frame_size {
                                return Err(FrameError::FrameTooLarge {
                                    limit: self.limits.max_frame_size,
                                });
                            }
                            Progress::Sized { total }
                        }
                        None => Progress::Unsized {
                            body_start: head_len,
                            scanned: 0,
                        },
                    };
                }
                Progress::Sized { total } => {
                    if buf.len() < total {
                        return Ok(None);
                    }
                    if buf[total - 1] != 0 {
                        return Err(FrameError::MissingNul);
                    }
                    let head_len = self.head_len_of(buf)?;
                    return self
                        .take(buf, head_len, total - 1 - head_len, total)
                        .map(Some);
                }
                Progress::Unsized {
                    body_start,
                    scanned,
                } => {
                    let from = body_start + scanned;
                    match memchr::memchr(0, &buf[from..]) {
                        Some(i) => {
                            let body_len = scanned + i;
                            if body_start + body_len > self.limits.max_frame_size {
                                return Err(FrameError::FrameTooLarge {
                                    limit: self.limits.max_frame_size,
                                });
                            }
                            return self
                                .take(buf, body_start, body_len, body_start + body_len + 1)
                                .map(Some);
                        }
                        None => {
                            if buf.len() > self.limits.max_frame_size {
                                return Err(FrameError::FrameTooLarge {
                                    limit: self.limits.max_frame_size,
                                });
                            }
                            self.progress = Progress::Unsized {
                                body_start,
                                scanned: buf.len() - body_start,
                            };
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// Finds the end of the head (command line + headers + blank line), enforcing
    /// the line and frame limits on what is buffered so far.
    fn find_head_end(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        // Resume one byte early so a "\n\n" straddling two reads is seen.
        let mut pos = self.head_scanned.saturating_sub(1);
        let mut line_start = pos;
        // Find the start of the line containing `pos`.
        while line_start > 0 && buf[line_start - 1] != b'\n' {
            line_start -= 1;
        }
        while let Some(i) = memchr::memchr(b'\n', &buf[pos..]) {
            let nl = pos + i;
            let line = &buf[line_start..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > self.limits.max_header_line {
                return Err(FrameError::HeaderLineTooLong {
                    limit: self.limits.max_header_line,
                });
            }
            if line.is_empty() && line_start > 0 {
                self.head_scanned = 0;
                return Ok(Some(nl + 1));
            }
            pos = nl + 1;
            line_start = pos;
        }
        if buf.len() - line_start > self.limits.max_header_line {
            return Err(FrameError::HeaderLineTooLong {
                limit: self.limits.max_header_line,
            });
        }
        if buf.len() > self.limits.max_frame_size {
            return Err(FrameError::FrameTooLarge {
                limit: self.limits.max_frame_size,
            });
        }
        self.head_scanned = buf.len();
        Ok(None)
    }

    /// Re-finds the head length of an already-validated head.
    fn head_len_of(&self, buf: &[u8]) -> Result<usize, FrameError> {
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &buf[pos..]) {
            let nl = pos + i;
            let line = &buf[pos..nl];
            if (line.is_empty() || line == b"\r") && pos > 0 {
                return Ok(nl + 1);
            }
            pos = nl + 1;
        }
        // Unreachable for a head `find_head_end` accepted; report, never panic.
        Err(FrameError::MissingNul)
    }

    /// Splits the complete frame off `buf` and parses its head.
    fn take(
        &mut self,
        buf: &mut BytesMut,
        head_len: usize,
        body_len: usize,
        total: usize,
    ) -> Result<Frame, FrameError> {
        self.progress = Progress::Head;
        self.head_scanned = 0;
        let mut whole = buf.split_to(total);
        let head = whole.split_to(head_len);
        whole.truncate(body_len);
        let body = whole.freeze();
        let (command, headers) = parse_head(&head, self.version, self.limits)?;
        // EOLs right after the NUL end this frame (`NULL *(EOL)` in STOMP
        // 1.2; ferromq and ActiveMQ write one): take those already here, so
        // what is left is the next frame or heart-beats (a reader that looks
        // at the raw bytes after a frame sees no terminator LF). Ones not
        // yet received are skipped by the next call like heart-beats.
        skip_heartbeats(buf);
        Ok(Frame {
            command,
            headers,
            body,
        })
    }
}

/// Drops leading `\n` / `\r\n` heart-beats. A lone `\r` at the very end stays
/// (it may be the first half of a `\r\n`).
fn skip_heartbeats(buf: &mut BytesMut) {
    let mut n = 0;
    loop {
        match &buf[n..] {
            [b'\n', ..] => n += 1,
            [b'\r', b'\n', ..] => n += 2,
            _ => break,
        }
    }
    buf.advance(n);
}

/// Rejects a bad command line as soon as it is complete, so a client that
/// sends something else entirely (an HTTP request, say) hears about it at
/// once instead of after a timeout.
fn check_command_line(buf: &[u8], limits: Limits) -> Result<(), FrameError> {
    let window = &buf[..buf.len().min(limits.max_header_line + 2)];
    if let Some(nl) = memchr::memchr(b'\n', window) {
        let line = &buf[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if Command::parse(line).is_none() {
            return Err(FrameError::UnknownCommand(
                String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned(),
            ));
        }
    }
    Ok(())
}

/// Lines of a head without their terminators (the blank line excluded).
fn head_lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// The first `content-length` header's value, if any. Escaping cannot appear in
/// a valid content-length, so the raw bytes are parsed directly.
fn content_length_of(head: &[u8]) -> Result<Option<usize>, FrameError> {
    for line in head_lines(head).skip(1) {
        if let Some(value) = line.strip_prefix(b"content-length:") {
            let text = std::str::from_utf8(value).map_err(|_| FrameError::InvalidUtf8)?;
            let trimmed = text.trim();
            if trimmed.is_empty() {
                // Some 1.0 clients send an empty content-length: treat as absent.
                return Ok(None);
            }
            return trimmed
                .parse::<usize>()
                .map(Some)
                .map_err(|_| FrameError::BadContentLength(text.to_string()));
        }
    }
    Ok(None)
}

/// Parses the command line and headers of a complete head.
fn parse_head(
    head: &[u8],
    version: Version,
    limits: Limits,
) -> Result<(Command, Headers), FrameError> {
    let mut lines = head_lines(head);
    let command_line = lines.next().unwrap_or_default();
    let command = Command::parse(command_line).ok_or_else(|| {
        FrameError::UnknownCommand(
            String::from_utf8_lossy(&command_line[..command_line.len().min(64)]).into_owned(),
        )
    })?;
    let unescape = command.escapes_headers() && version >= Version::V1_1;
    let mut headers = Headers::new();
    let mut name_buf = String::new();
    let mut value_buf = String::new();
    for line in lines {
        if headers.len() >= limits.max_headers {
            return Err(FrameError::TooManyHeaders {
                limit: limits.max_headers,
            });
        }
        let colon = memchr::memchr(b':', line).ok_or_else(|| {
            FrameError::MalformedHeader(
                String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned(),
            )
        })?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if unescape {
            name_buf.clear();
            value_buf.clear();
            unescape_into(name, version, &mut name_buf)?;
            unescape_into(value, version, &mut value_buf)?;
            headers.push(&name_buf, &value_buf);
        } else {
            let name = std::str::from_utf8(name).map_err(|_| FrameError::InvalidUtf8)?;
            let value = std::str::from_utf8(value).map_err(|_| FrameError::InvalidUtf8)?;
            headers.push(name, value);
        }
    }
    Ok((command, headers))
}

/// Undoes 1.1/1.2 header escaping into `out`.
fn unescape_into(raw: &[u8], version: Version, out: &mut String) -> Result<(), FrameError> {
    let text = std::str::from_utf8(raw).map_err(|_| FrameError::InvalidUtf8)?;
    if !text.contains('\\') {
        out.push_str(text);
        return Ok(());
    }
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('r') if version >= Version::V1_2 => out.push('\r'),
            Some(other) => return Err(FrameError::InvalidEscape(other)),
            None => return Err(FrameError::InvalidEscape(' ')),
        }
    }
    Ok(())
}
