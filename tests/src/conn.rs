//! [`Conn`]: a blocking STOMP 1.2 connection whose every failure is an
//! `Err`, for the tests that kill, stop and partition brokers under their
//! clients on purpose (the crash and cluster tests). [`crate::Client`]
//! panics instead, which suits tests where a failure is a bug.

use bytes::BytesMut;
use ferromq_protocol::stomp::{encode_frame, Command, Decoder, Frame, Limits, Version};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long [`Conn::with_receipt`] waits for its receipt.
const RECEIPT_WAIT: Duration = Duration::from_secs(20);

/// A STOMP 1.2 connection whose every failure is an `Err`.
pub struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    /// Connects; `Err` unless the broker answers CONNECTED (an ERROR's
    /// headers are in the error's text).
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        match Conn::open_or_refusal(addr)? {
            Ok(conn) => Ok(conn),
            Err(error) => Err(std::io::Error::other(format!("refused: {error:?}"))),
        }
    }

    /// Connects; the ERROR frame of a refusal (e.g. `not the leader`) is
    /// returned as `Ok(Err(frame))`, anything else but CONNECTED is `Err`.
    pub fn open_or_refusal(addr: SocketAddr) -> std::io::Result<Result<Conn, Frame>> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            decoder: Decoder::new(Limits::default()),
            buf: BytesMut::new(),
        };
        c.send(
            &Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "/"),
        )?;
        match c.recv(Duration::from_secs(10))? {
            Some(f) if f.command == Command::Connected => {
                c.decoder.set_version(Version::V1_2);
                Ok(Ok(c))
            }
            Some(f) if f.command == Command::Error => Ok(Err(f)),
            other => Err(std::io::Error::other(format!("no CONNECTED: {other:?}"))),
        }
    }

    /// Writes one frame.
    pub fn send(&mut self, f: &Frame) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        encode_frame(f, Version::V1_2, &mut b);
        self.stream.write_all(&b)
    }

    /// The next frame, `None` after `wait` without one; `Err` when the
    /// connection closed or broke.
    pub fn recv(&mut self, wait: Duration) -> std::io::Result<Option<Frame>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(|e| std::io::Error::other(format!("{e:?}")))?
            {
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `frame` with a receipt and waits for it; the frames that
    /// arrive meanwhile are returned. `Err` on an ERROR, a close, or no
    /// receipt within 20 s.
    pub fn with_receipt(&mut self, frame: Frame, receipt: &str) -> std::io::Result<Vec<Frame>> {
        self.send(&frame.header("receipt", receipt))?;
        let mut before = Vec::new();
        let deadline = Instant::now() + RECEIPT_WAIT;
        while Instant::now() < deadline {
            match self.recv(Duration::from_millis(200))? {
                Some(f)
                    if f.command == Command::Receipt && f.get("receipt-id") == Some(receipt) =>
                {
                    return Ok(before)
                }
                Some(f) if f.command == Command::Error => {
                    return Err(std::io::Error::other(format!("ERROR: {f:?}")))
                }
                Some(f) => before.push(f),
                None => {}
            }
        }
        Err(std::io::Error::other(format!("no receipt {receipt}")))
    }
}

/// The frames of transaction `tx{n}`: BEGIN, `size` persistent SENDs of
/// `t{n}-{i}` to `destination`, and a COMMIT with receipt `tx{n}`.
pub fn transaction(n: u64, size: usize, destination: &str) -> Vec<Frame> {
    let tx = format!("tx{n}");
    let mut frames = vec![Frame::new(Command::Begin).header("transaction", &tx)];
    for i in 0..size {
        frames.push(
            Frame::new(Command::Send)
                .header("destination", destination)
                .header("persistent", "true")
                .header("transaction", &tx)
                .body(format!("t{n}-{i}")),
        );
    }
    frames.push(
        Frame::new(Command::Commit)
            .header("transaction", &tx)
            .header("receipt", &tx),
    );
    frames
}

/// A frame's body as text.
pub fn body_of(f: &Frame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}
