//! Shared by the `native_*` end-to-end tests: a blocking raw native client
//! ([`Raw`]) for frame-level checks and bad input, and helpers to start a
//! broker with the native listener and connect the async client.
#![allow(dead_code)] // each test file uses its own subset

use bytes::BytesMut;
use ferromq_protocol::client::Connection;
use ferromq_protocol::native::{
    Attach, Begin, ErrorCondition, ErrorInfo, Flow, Frame, NativeCodec, Open, Performative,
    Preamble, Role, SettleMode,
};
use ferromq_tests::{Broker, WAIT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A broker process with its directory (config, data), removed on drop.
pub struct NativeBroker {
    pub broker: Broker,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for NativeBroker {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl NativeBroker {
    /// kill -9 and start again on the same directory: what was stored
    /// before the kill is what the restarted broker has.
    pub fn kill9_restart(mut self) -> NativeBroker {
        self.broker.kill9();
        NativeBroker {
            broker: self.broker.restart(),
            dir: self.dir,
        }
    }
}

/// A broker with the native listener on an ephemeral port (STOMP too).
pub fn broker() -> NativeBroker {
    broker_with("", &[])
}

/// A broker with `config` (TOML) and extra arguments, the native and STOMP
/// listeners on ephemeral ports. (The harness's own defaults pass
/// `--native ""`, which clap will not let a second `--native` override.)
pub fn broker_with(config: &str, extra: &[&str]) -> NativeBroker {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ferromq.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.display().to_string();
    // Absolute, so a restarted broker (which runs in the test's directory) finds it.
    let data_arg = dir.path().join("data").display().to_string();
    let mut args = vec![
        "--config",
        config_arg.as_str(),
        "--data-dir",
        data_arg.as_str(),
        "--stomp",
        "127.0.0.1:0",
        "--stomp-tls",
        "",
        "--native",
        "127.0.0.1:0",
        "--websocket",
        "",
        "--websocket-tls",
        "",
        "--admin",
        "",
    ];
    if !extra.contains(&"--native-tls") {
        args.extend(["--native-tls", ""]);
    }
    args.extend(extra);
    let broker = Broker::try_start_exact(&args, dir.path())
        .unwrap_or_else(|f| panic!("ferromq did not start: {:?}\n{}", f.status, f.log));
    NativeBroker { broker, dir }
}

/// The native listener's address.
pub fn native_addr(broker: &Broker) -> SocketAddr {
    broker.listener("native").expect("native listener")
}

/// The `ferromq://` URL of the broker's native listener.
pub fn url(broker: &Broker) -> String {
    format!("ferromq://{}", native_addr(broker))
}

/// Connects the async client.
pub async fn connect(broker: &Broker) -> Connection {
    Connection::connect(&url(broker)).await.expect("connect")
}

/// A raw native connection over a blocking socket.
pub struct Raw {
    pub stream: TcpStream,
    codec: NativeCodec,
    buf: BytesMut,
}

impl Raw {
    /// A TCP connection, nothing sent yet.
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Raw {
            stream,
            codec: NativeCodec::default(),
            buf: BytesMut::new(),
        }
    }

    /// Preamble, Open and Begin on channel 1, answers read.
    pub fn open(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send_bytes(&Preamble::CURRENT.to_bytes());
        assert_eq!(raw.read_exact(8), Preamble::CURRENT.to_bytes());
        raw.send(Frame::new(0, Open::default()));
        let open = raw.recv();
        assert!(
            matches!(open.performative, Some(Performative::Open(_))),
            "{open:?}"
        );
        raw.send(Frame::new(1, Begin::default()));
        let begin = raw.recv();
        assert!(
            matches!(begin.performative, Some(Performative::Begin(_))),
            "{begin:?}"
        );
        raw
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        self.codec.encode(&frame, &mut out).expect("encode");
        self.send_bytes(&out);
    }

    /// Exactly `n` raw bytes (the preamble).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while self.buf.len() < n {
            assert!(Instant::now() < deadline, "timed out reading {n} bytes");
            if self.fill() == Some(0) {
                break;
            }
        }
        self.buf.split_to(n.min(self.buf.len())).to_vec()
    }

    /// Reads more bytes: Some(0) at EOF, None on timeout.
    fn fill(&mut self) -> Option<usize> {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(_) => Some(0),
        }
    }

    /// The next frame within `d`, skipping heart-beats; None on timeout or EOF.
    pub fn recv_within(&mut self, d: Duration) -> Option<Frame> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).expect("decode") {
                if matches!(f.performative, Some(Performative::Heartbeat(_))) {
                    continue;
                }
                return Some(f);
            }
            if Instant::now() >= deadline || self.fill() == Some(0) {
                return None;
            }
        }
    }

    /// The next frame (panics after [`WAIT`]).
    pub fn recv(&mut self) -> Frame {
        self.recv_within(WAIT).expect("no frame from the broker")
    }

    /// Reads until the broker's Close and then the end of the stream;
    /// returns the Close's error.
    pub fn expect_close(&mut self) -> ErrorInfo {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(Instant::now() < deadline, "no Close from the broker");
            let frame = self.recv();
            if let Some(Performative::Close(c)) = frame.performative {
                assert!(self.at_eof(), "socket still open after Close");
                return c.error.expect("Close without an error");
            }
        }
    }

    /// Whether the broker closes the socket (within [`WAIT`]).
    pub fn at_eof(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.fill() == Some(0) {
                return true;
            }
        }
        false
    }

    /// Attaches a link with `role` (ours) and reads the broker's answer.
    pub fn attach(&mut self, handle: u32, role: Role, address: &str, mode: SettleMode) -> Frame {
        self.send(Frame::new(
            1,
            Attach {
                name: format!("link-{handle}"),
                handle,
                role: role.into(),
                address: address.into(),
                settle_mode: mode.into(),
                ..Attach::default()
            },
        ));
        self.recv()
    }

    /// Grants `credit` on a receiving link.
    pub fn flow(&mut self, handle: u32, delivery_count: u32, credit: u32, drain: bool, echo: bool) {
        self.send(Frame::new(
            1,
            Flow {
                handle,
                link_credit: credit,
                delivery_count,
                drain,
                echo,
                ..Flow::default()
            },
        ));
    }
}

/// Asserts that `info` has `condition` and its description mentions `needle`.
pub fn assert_error(info: &ErrorInfo, condition: ErrorCondition, needle: &str) {
    assert_eq!(info.condition(), condition, "{info}");
    assert!(
        info.description.contains(needle),
        "description '{}' should mention '{needle}'",
        info.description
    );
}
