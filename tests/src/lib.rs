//! Harness for end-to-end tests: starts the real `ferromq` binary on
//! ephemeral loopback ports and speaks raw STOMP to it over blocking sockets.
//!
//! - [`Broker`]: a broker process with its own data directory; learns its
//!   bound ports from the "listener ready" log lines.
//! - [`Client`]: a raw STOMP connection with frame-level send and receive.
//! - [`conn`]: a STOMP connection whose every failure is an `Err`, for
//!   tests that kill brokers under their clients.
//! - [`cluster`]: a three-node cluster of `ferromq` processes.
//! - [`chaos`]: persistent load on a cluster and the checks of what its
//!   clients saw.
//! - [`proxy`]: a TCP proxy a test cuts, blackholes, delays and heals.
//! - [`pki`]: a CA and server certificate for the TLS listeners.
//! - [`ws`]: a STOMP client over WebSocket (async, tokio-tungstenite).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness: a panic is a test failure

pub mod chaos;
pub mod cluster;
pub mod conn;
pub mod pki;
pub mod proxy;
pub mod ws;

use bytes::BytesMut;
use ferromq_protocol::stomp::{encode_frame, Command, Decoder, Frame, Limits, Version};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for something the broker should do promptly.
pub const WAIT: Duration = Duration::from_secs(10);

/// Path of the `ferromq` binary: `$FERROMQ_BIN`, else the one cargo built
/// next to this test executable (`target/<profile>/ferromq`).
pub fn ferromq_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FERROMQ_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test> -> target/debug/ferromq
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ferromq");
    // `cargo test -p ferromq-tests` does not build another package's binary,
    // and a stale one would test old code: build it once per test process.
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        if let Some(cargo) = std::env::var_os("CARGO") {
            let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug");
            let mut cmd = Process::new(cargo);
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "ferromq-broker",
                "--bin",
                "ferromq",
            ]);
            if profile == "release" {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build");
            assert!(status.success(), "building ferromq failed");
        }
    });
    assert!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p ferromq-broker` (or set FERROMQ_BIN)",
        bin.display()
    );
    bin
}

/// A running broker process. Killed when dropped.
pub struct Broker {
    child: Option<Child>,
    /// The STOMP listener.
    pub stomp: SocketAddr,
    /// The STOMP+TLS listener, when configured.
    pub stomp_tls: Option<SocketAddr>,
    /// Every other listener by name (`native`, `admin`, ...).
    pub listeners: Vec<(String, SocketAddr)>,
    log: Arc<Mutex<String>>,
    /// The data directory (kept for restarts).
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
}

/// A broker process that exited (or hung) instead of starting.
#[derive(Debug)]
pub struct StartFailure {
    /// Its exit status (`None`: it hung and was killed).
    pub status: Option<ExitStatus>,
    /// Everything it wrote to stderr.
    pub log: String,
}

/// Arguments that put every listener on an ephemeral loopback port (or off).
fn default_args() -> Vec<String> {
    [
        "--stomp",
        "127.0.0.1:0",
        "--stomp-tls",
        "",
        "--native",
        "",
        "--native-tls",
        "",
        "--websocket",
        "",
        "--websocket-tls",
        "",
        "--admin",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Broker {
    /// A broker with embedded defaults, STOMP on an ephemeral port.
    pub fn start() -> Broker {
        Broker::start_with(None, &[])
    }

    /// A broker with `config` (TOML text, written to a file) and extra
    /// command-line arguments (which override the defaults above).
    pub fn start_with(config: Option<&str>, extra: &[&str]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut args = default_args();
        if let Some(text) = config {
            let path = tmp.path().join("ferromq.toml");
            std::fs::write(&path, text).expect("write config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        args.push("--data-dir".into());
        args.push(data_dir.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Broker::spawn(args, data_dir, Some(tmp))
    }

    /// Like [`Broker::start_with`], with extra environment variables for
    /// the process (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(config: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Broker {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut args = default_args();
        if let Some(text) = config {
            let path = tmp.path().join("ferromq.toml");
            std::fs::write(&path, text).expect("write config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        args.push("--data-dir".into());
        args.push(data_dir.display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        Broker::try_spawn_env(args, data_dir, Some(tmp), None, env).unwrap_or_else(|f| {
            panic!(
                "ferromq did not start (exit {:?}); log:\n{}",
                f.status, f.log
            )
        })
    }

    fn spawn(args: Vec<String>, data_dir: PathBuf, tmp: Option<tempfile::TempDir>) -> Broker {
        Broker::try_spawn(args, data_dir, tmp, None).unwrap_or_else(|f| {
            panic!(
                "ferromq did not start (exit {:?}); log:\n{}",
                f.status, f.log
            )
        })
    }

    /// Runs `ferromq` with exactly `args` (no defaults added) in directory
    /// `cwd`, waiting until it has started or has exited.
    pub fn try_start_exact(args: &[&str], cwd: &Path) -> Result<Broker, StartFailure> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Broker::try_spawn(args, cwd.join("data"), None, Some(cwd))
    }

    fn try_spawn(
        args: Vec<String>,
        data_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        cwd: Option<&Path>,
    ) -> Result<Broker, StartFailure> {
        Broker::try_spawn_env(args, data_dir, tmp, cwd, &[])
    }

    fn try_spawn_env(
        args: Vec<String>,
        data_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        cwd: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Result<Broker, StartFailure> {
        let mut process = Process::new(ferromq_bin());
        process.envs(env.iter().copied());
        if let Some(dir) = cwd {
            process.current_dir(dir);
        }
        let mut child = process
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("FERROMQ_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ferromq");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("FERROMQ_TEST_ECHO").is_some() {
                    eprintln!("[ferromq] {line}");
                }
                if let Some(l) = parse_listener(&line) {
                    let _ = tx.send(Some(l));
                }
                if line.contains("ferromq started") {
                    let _ = tx.send(None);
                }
                let mut g = log2.lock().unwrap();
                g.push_str(&line);
                g.push('\n');
            }
        });
        let mut listeners = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Some(l)) => listeners.push(l),
                Ok(None) => break,
                Err(_) => {
                    // Either the log closed (the process is exiting) or
                    // it hung: give it a moment to exit, then kill it.
                    let stop = Instant::now() + Duration::from_secs(2);
                    let mut status = child.try_wait().ok().flatten();
                    while status.is_none() && Instant::now() < stop {
                        std::thread::sleep(Duration::from_millis(20));
                        status = child.try_wait().ok().flatten();
                    }
                    if status.is_none() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    let log = log.lock().unwrap().clone();
                    return Err(StartFailure { status, log });
                }
            }
        }
        let find = |name: &str| listeners.iter().find(|(n, _)| n == name).map(|(_, a)| *a);
        Ok(Broker {
            stomp: find("stomp").unwrap_or_else(|| "127.0.0.1:1".parse().unwrap()),
            stomp_tls: find("stomp+tls"),
            listeners: listeners.clone(),
            child: Some(child),
            log,
            data_dir,
            _tmp: tmp,
            args,
        })
    }

    /// Everything the broker logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to [`WAIT`]) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory of the broker process in KiB (`VmRSS` in
    /// `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("broker not running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// The address of listener `name` (`stomp`, `stomp+tls`, `native`, ...).
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("broker already stopped");
        let _ = Process::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "ferromq did not exit within {WAIT:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a new process with the same arguments and data directory
    /// (ports are re-chosen). The old one must be stopped.
    pub fn restart(mut self) -> Broker {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        let tmp = self._tmp.take();
        Broker::spawn(self.args.clone(), self.data_dir.clone(), tmp)
    }

    /// A STOMP 1.2 session plus a second handle on its socket for writing
    /// from another thread (e.g. a producer that may block on flow control
    /// while the test reads receipts).
    pub fn client_with_writer(&self) -> (Client, FrameSender) {
        let stream = TcpStream::connect(self.stomp).expect("connect");
        stream.set_nodelay(true).ok();
        let writer = stream.try_clone().expect("clone socket");
        let mut c = Client::over(Box::new(stream));
        let f = c.handshake(
            Command::Connect,
            &[("accept-version", "1.2"), ("host", "/")],
        );
        assert_eq!(f.command, Command::Connected, "{f:?}");
        (
            c,
            FrameSender {
                stream: writer,
                version: Version::V1_2,
            },
        )
    }

    /// The config file given with `--config`, if any (tests rewrite it
    /// before sending SIGHUP).
    pub fn config_file(&self) -> Option<PathBuf> {
        let at = self.args.iter().position(|a| a == "--config")?;
        self.args.get(at + 1).map(PathBuf::from)
    }

    /// Sends SIGHUP (reload).
    pub fn sighup(&self) {
        let pid = self.pid().expect("broker not running");
        let status = Process::new("kill")
            .arg("-HUP")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// The admin HTTP listener (start with `--admin 127.0.0.1:0`).
    pub fn admin(&self) -> SocketAddr {
        self.listener("admin")
            .expect("no admin listener: start the broker with --admin 127.0.0.1:0")
    }

    /// A STOMP 1.2 CONNECT with `login`/`passcode` (either may be absent);
    /// returns the client and the broker's answer (CONNECTED or ERROR).
    pub fn connect_as(&self, login: Option<&str>, passcode: Option<&str>) -> (Client, Frame) {
        let mut c = self.raw();
        let mut headers = vec![("accept-version", "1.2"), ("host", "/")];
        if let Some(l) = login {
            headers.push(("login", l));
        }
        if let Some(p) = passcode {
            headers.push(("passcode", p));
        }
        let reply = c.handshake(Command::Connect, &headers);
        (c, reply)
    }

    /// A STOMP 1.2 session as `login`, failing the test if refused.
    pub fn client_as(&self, login: &str, passcode: &str) -> Client {
        let (c, reply) = self.connect_as(Some(login), Some(passcode));
        assert_eq!(reply.command, Command::Connected, "{reply:?}");
        c
    }

    /// A STOMP 1.2 session with a `client-id` (durable subscriptions are
    /// named within one).
    pub fn client_with_id(&self, client_id: &str) -> Client {
        let mut c = self.raw();
        let reply = c.handshake(
            Command::Connect,
            &[
                ("accept-version", "1.2"),
                ("host", "/"),
                ("client-id", client_id),
            ],
        );
        assert_eq!(reply.command, Command::Connected, "{reply:?}");
        c
    }

    /// A raw connection to the STOMP port, nothing sent yet.
    pub fn raw(&self) -> Client {
        Client::connect(self.stomp)
    }

    /// A STOMP 1.2 session (CONNECT sent, CONNECTED received).
    pub fn client(&self) -> Client {
        let mut c = self.raw();
        c.send(
            Frame::new(Command::Connect)
                .header("accept-version", "1.2")
                .header("host", "/"),
        );
        let f = c.recv();
        assert_eq!(f.command, Command::Connected, "{f:?}");
        c.version = Version::V1_2;
        c.decoder.set_version(Version::V1_2);
        c
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
        // "No panics": a panic in any broker task fails the test that caused
        // it (unless the test is already failing).
        if !std::thread::panicking() {
            let log = self.log();
            if let Some(at) = log.find("panicked at") {
                let from = log[..at].rfind('\n').map_or(0, |i| i + 1);
                let excerpt: String = log[from..].chars().take(2000).collect();
                panic!("the broker panicked:\n{excerpt}");
            }
        }
    }
}

/// Parses `listener ready listener="stomp" addr=127.0.0.1:1234`.
fn parse_listener(line: &str) -> Option<(String, SocketAddr)> {
    if !line.contains("listener ready") {
        return None;
    }
    let name = line
        .split("listener=\"")
        .nth(1)?
        .split('"')
        .next()?
        .to_string();
    let addr = line
        .split("addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((name, addr))
}

/// A byte stream a [`Client`] can run over: plain TCP, or TLS set up by a
/// test (which keeps this crate free of a TLS dependency).
pub trait Transport: Read + Write + Send {
    /// Bounds the next blocking read (`None`: wait forever).
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()>;
}

impl Transport for TcpStream {
    fn set_read_timeout(&self, d: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, d)
    }
}

/// The writing half of a [`Broker::client_with_writer`] connection.
pub struct FrameSender {
    stream: TcpStream,
    version: Version,
}

impl FrameSender {
    /// Writes a frame; blocks while the broker is not reading.
    pub fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        encode_frame(frame, self.version, &mut b);
        self.stream.write_all(&b)
    }

    /// Writes raw bytes; blocks while the broker is not reading.
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }
}

/// A blocking raw STOMP connection.
pub struct Client {
    stream: Box<dyn Transport>,
    decoder: Decoder,
    buf: BytesMut,
    /// Version used to encode frames we send.
    pub version: Version,
}

impl Client {
    /// Opens a TCP connection.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).ok();
        Client::over(Box::new(stream))
    }

    /// A client over an already connected transport (e.g. TLS).
    pub fn over(stream: Box<dyn Transport>) -> Client {
        Client {
            stream,
            decoder: Decoder::new(Limits {
                max_frame_size: 64 << 20,
                ..Limits::default()
            }),
            buf: BytesMut::new(),
            version: Version::V1_0,
        }
    }

    /// Sets the version used for escaping in both directions.
    pub fn set_version(&mut self, v: Version) {
        self.version = v;
        self.decoder.set_version(v);
    }

    /// Sends CONNECT with `headers` (STOMP 1.0 encoding, as CONNECT is never
    /// escaped) and returns the broker's answer. On CONNECTED, switches this
    /// client to the negotiated version.
    pub fn handshake(&mut self, command: Command, headers: &[(&str, &str)]) -> Frame {
        let mut f = Frame::new(command);
        for (k, v) in headers {
            f = f.header(k, v);
        }
        self.send(f);
        let reply = self.recv();
        if reply.command == Command::Connected {
            let v = reply
                .get("version")
                .and_then(Version::parse)
                .unwrap_or(Version::V1_0);
            self.set_version(v);
        }
        reply
    }

    /// Everything the broker writes within `d` (buffered bytes the decoder
    /// has not consumed first), without decoding: for heart-beat checks.
    pub fn read_raw_for(&mut self, d: Duration) -> Vec<u8> {
        let mut out = self.buf.split().to_vec();
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            self.stream.set_read_timeout(Some(left)).ok();
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return out
                }
                Err(_) => return out,
            }
        }
    }

    /// Receives `n` MESSAGE frames (failing on anything else).
    pub fn recv_messages(&mut self, n: usize) -> Vec<Frame> {
        (0..n)
            .map(|_| {
                let f = self.recv();
                assert_eq!(f.command, Command::Message, "{f:?}");
                f
            })
            .collect()
    }

    /// Sends a frame carrying `receipt` and waits for that RECEIPT.
    pub fn send_with_receipt(&mut self, frame: Frame, receipt: &str) {
        self.send(frame.header("receipt", receipt));
        let r = self.recv();
        assert_eq!(r.command, Command::Receipt, "{r:?}");
        assert_eq!(r.get("receipt-id"), Some(receipt), "{r:?}");
    }

    /// Sends a frame carrying `receipt`, waits for that RECEIPT and returns
    /// the frames (deliveries) that arrived before it.
    pub fn send_collect(&mut self, frame: Frame, receipt: &str) -> Vec<Frame> {
        self.send(frame.header("receipt", receipt));
        let mut before = Vec::new();
        loop {
            let f = self.recv();
            if f.command == Command::Receipt && f.get("receipt-id") == Some(receipt) {
                return before;
            }
            assert_ne!(f.command, Command::Error, "{f:?}");
            before.push(f);
        }
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes a frame.
    pub fn send(&mut self, frame: Frame) {
        let mut b = BytesMut::new();
        encode_frame(&frame, self.version, &mut b);
        self.send_raw(&b);
    }

    /// Receives a frame within `d`, or `None` on timeout. Panics on EOF.
    pub fn recv_within(&mut self, d: Duration) -> Option<Frame> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(f) = self
                .decoder
                .decode(&mut self.buf)
                .expect("broker sent a malformed frame")
            {
                return Some(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).ok();
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("connection closed while waiting for a frame"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Receives a frame, failing the test after [`WAIT`].
    pub fn recv(&mut self) -> Frame {
        self.recv_within(WAIT)
            .expect("no frame from the broker in time")
    }

    /// Receives frames until one has `command`, returning it.
    pub fn recv_command(&mut self, command: Command) -> Frame {
        loop {
            let f = self.recv();
            if f.command == command {
                return f;
            }
        }
    }

    /// Asserts nothing arrives within `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        if let Some(f) = self.recv_within(d) {
            panic!("expected no frame, got {f:?}");
        }
    }

    /// Reads until the broker closes the connection; returns the frames that
    /// came first. Fails after [`WAIT`].
    pub fn recv_until_closed(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            while let Ok(Some(f)) = self.decoder.decode(&mut self.buf) {
                frames.push(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "connection not closed in time; got {frames:?}"
            );
            self.stream.set_read_timeout(Some(left)).ok();
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return frames,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return frames, // reset counts as closed
            }
        }
    }

    /// Expects one ERROR frame and then the close; returns the ERROR.
    pub fn expect_error(&mut self) -> Frame {
        let frames = self.recv_until_closed();
        let errors: Vec<_> = frames
            .iter()
            .filter(|f| f.command == Command::Error)
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one ERROR, got {frames:?}"
        );
        assert!(
            errors[0].get("message").is_some(),
            "ERROR without message header"
        );
        errors[0].clone()
    }

    /// Subscribes and waits for the receipt.
    pub fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        self.send(
            Frame::new(Command::Subscribe)
                .header("id", id)
                .header("destination", destination)
                .header("ack", ack)
                .header("receipt", &format!("sub-{id}")),
        );
        let r = self.recv_command(Command::Receipt);
        assert_eq!(r.get("receipt-id"), Some(format!("sub-{id}").as_str()));
    }

    /// Sends a message and waits for its receipt.
    pub fn send_message(&mut self, destination: &str, body: &str, headers: &[(&str, &str)]) {
        let mut f = Frame::new(Command::Send)
            .header("destination", destination)
            .header("receipt", "send")
            .body(body.to_string());
        for (k, v) in headers {
            f = f.header(k, v);
        }
        self.send(f);
        let r = self.recv();
        assert_eq!(r.command, Command::Receipt, "{r:?}");
    }
}

/// Hashes `password` with `ferromq passwd` (stdin in, PHC string out).
pub fn hash_password(password: &str) -> String {
    let mut child = Process::new(ferromq_bin())
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferromq passwd");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("ferromq passwd");
    assert!(
        out.status.success(),
        "ferromq passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

/// A blocking HTTP/1.1 GET; returns the status and the body. `basic` adds
/// an `Authorization: Basic` header.
pub fn http_get(addr: SocketAddr, path: &str, basic: Option<(&str, &str)>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect admin");
    s.set_read_timeout(Some(WAIT)).ok();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    if let Some((user, password)) = basic {
        request.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(format!("{user}:{password}").as_bytes())
        ));
    }
    request.push_str("Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).expect("write request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Standard base64 with padding (for HTTP Basic credentials).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads a Prometheus sample: the value of the line starting with
/// `series` (a metric name with its labels, e.g.
/// `ferromq_destination_enqueued_total{destination="/queue/a",kind="queue"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `/metrics` on the admin listener `admin` ([`Broker::admin`]; start
/// the broker with `--admin 127.0.0.1:0`) until sample `series` (see
/// [`metric`]) satisfies `want`, for at most [`WAIT`]. Returns the last
/// value read (`None`: the series never appeared); the caller asserts on
/// it, so a test can prove that the event it is about happened.
pub fn wait_for_metric(admin: SocketAddr, series: &str, want: impl Fn(f64) -> bool) -> Option<f64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(admin, "/metrics", None);
        assert_eq!(status, 200, "GET /metrics: {body}");
        let value = metric(&body, series);
        if value.is_some_and(&want) || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn metric_finds_a_labelled_series() {
        let text = "# HELP x y\nx{a=\"1\"} 3\nx{a=\"12\"} 4\nx_total 5\n";
        assert_eq!(metric(text, "x{a=\"1\"}"), Some(3.0));
        assert_eq!(metric(text, "x{a=\"12\"}"), Some(4.0));
        assert_eq!(metric(text, "x"), None);
        assert_eq!(metric(text, "x_total"), Some(5.0));
    }
}
