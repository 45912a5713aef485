//! [`Connection`]: connects (TCP or TLS), exchanges preambles, Opens and one
//! session, then runs two tasks: a writer that batches queued frames into
//! one write (and heart-beats when idle) and the [`super::reader`] that
//! routes the broker's frames to links and waiters.

use super::error::ClientError;
use super::link::{Outcome, Receiver, ReceiverOptions, Sender};
use super::reader::{self, ReceiverRoute, SenderFlow, State};
use super::transaction::Transaction;
use super::url::{Endpoint, Scheme};
use crate::native::{
    split_transfer, Attach, Begin, Close, Declare, Detach, Flow, Frame, NativeCodec, Open,
    Performative, PlainCredentials, Preamble, PreambleCheck, Reassembler, Role, SettleMode,
};
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Notify};

/// The session channel the client uses.
pub(super) const CHANNEL: u32 = 1;

/// Largest credit window of a receiver.
pub const MAX_WINDOW: u32 = 65_536;

/// Frames queued for the writer before `send` waits.
const OUT_QUEUE: usize = 4096;

/// Connection settings beyond the URL.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// PLAIN credentials `(username, password)`.
    pub credentials: Option<(String, String)>,
    /// The client's container id (for durable subscriptions); empty = none.
    pub container_id: String,
    /// Largest frame the client accepts; 0 = the protocol default (1 MiB).
    pub max_frame_size: u32,
    /// Close the connection when the broker is silent this long (the broker
    /// then heart-beats at half of it); `None` = never.
    pub idle_timeout: Option<Duration>,
    /// TLS settings for `ferromq+tls://` (required there): a rustls client
    /// configuration trusting the broker's certificate.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What the connection's tasks and handles share.
pub(super) struct Shared {
    pub(super) out: mpsc::Sender<Frame>,
    pub(super) state: Mutex<State>,
    pub(super) peer: String,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame for the writer.
    pub(super) async fn send(&self, frame: Frame) -> Result<(), ClientError> {
        if let Some(e) = &self.lock().closed {
            return Err(e.clone());
        }
        self.out.send(frame).await.map_err(|_| self.closed_error())
    }

    /// Why the connection is gone.
    pub(super) fn closed_error(&self) -> ClientError {
        self.lock()
            .closed
            .clone()
            .unwrap_or(ClientError::Closed(None))
    }
}

/// A connection to a ferromq broker over the native protocol.
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    /// Connects to `url` with default options.
    pub async fn connect(url: &str) -> Result<Connection, ClientError> {
        Connection::connect_with(url, ConnectOptions::default()).await
    }

    /// Connects to `url` (`ferromq://host:port` or `ferromq+tls://host:port`).
    pub async fn connect_with(
        url: &str,
        options: ConnectOptions,
    ) -> Result<Connection, ClientError> {
        let endpoint = Endpoint::parse(url)?;
        let peer = format!("{}:{}", endpoint.host, endpoint.port);
        let io = |e: std::io::Error| ClientError::Io {
            peer: peer.clone(),
            reason: e.to_string(),
        };
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn Stream> = match endpoint.scheme {
            Scheme::Plain => Box::new(tcp),
            Scheme::Tls => {
                let config = options.tls.clone().ok_or_else(|| {
                    ClientError::Tls("ferromq+tls:// needs ConnectOptions::tls (a rustls ClientConfig trusting the broker)".into())
                })?;
                let name = rustls_pki_types::ServerName::try_from(endpoint.host.clone())
                    .map_err(|e| ClientError::Tls(format!("server name {}: {e}", endpoint.host)))?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                Box::new(tls)
            }
        };
        let codec_limit = if options.max_frame_size == 0 {
            crate::native::DEFAULT_MAX_FRAME_SIZE
        } else {
            options.max_frame_size
        };
        let open = Open {
            container_id: options.container_id.clone(),
            max_frame_size: options.max_frame_size,
            idle_timeout_ms: options
                .idle_timeout
                .map_or(0, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            credentials: options.credentials.as_ref().map(|(username, password)| {
                PlainCredentials {
                    username: username.clone(),
                    password: password.clone(),
                }
            }),
            ..Open::default()
        };
        let mut codec = NativeCodec::default();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(&Preamble::CURRENT.to_bytes());
        codec.encode(&Frame::new(0, open), &mut buf)?;
        codec.encode(&Frame::new(CHANNEL, Begin::default()), &mut buf)?;
        stream.write_all(&buf).await.map_err(io)?;
        buf.clear();
        // The broker's preamble, Open and Begin.
        while buf.len() < Preamble::LEN {
            if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
                return Err(ClientError::Preamble(buf.to_vec()));
            }
        }
        if !matches!(Preamble::parse(&buf), PreambleCheck::Ok(_)) {
            return Err(ClientError::Preamble(buf[..Preamble::LEN].to_vec()));
        }
        let _ = buf.split_to(Preamble::LEN);
        let mut broker_open = None;
        let mut begun = false;
        while broker_open.is_none() || !begun {
            let Some(frame) = codec.decode(&mut buf)? else {
                if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
                    return Err(ClientError::Closed(None));
                }
                continue;
            };
            match frame.performative {
                Some(Performative::Open(o)) => broker_open = Some(o),
                Some(Performative::Begin(_)) => begun = true,
                Some(Performative::Close(c)) => return Err(ClientError::Closed(c.error)),
                Some(Performative::Heartbeat(_)) => {}
                other => {
                    return Err(ClientError::Unexpected(format!(
                        "{} while opening the connection",
                        other.map_or("none", |p| p.name())
                    )))
                }
            }
        }
        let broker_open = broker_open.unwrap_or_default();
        codec.set_max_inbound_frame_size(codec_limit);
        codec.set_max_outbound_frame_size(broker_open.effective_max_frame_size());
        // Heart-beat at half the broker's idle timeout.
        let heartbeat = (broker_open.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(u64::from(broker_open.idle_timeout_ms) / 2));
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let shared = Arc::new(Shared {
            out,
            state: Mutex::new(State::default()),
            peer: peer.clone(),
        });
        let (read_half, write_half) = tokio::io::split(stream);
        tokio::spawn(write_loop(
            write_half,
            out_rx,
            codec,
            heartbeat,
            shared.clone(),
        ));
        tokio::spawn(reader::run(
            read_half,
            buf,
            codec,
            options.idle_timeout,
            shared.clone(),
        ));
        Ok(Connection { shared })
    }

    /// Opens a sender link to `address` (`/queue/…`, `/topic/…`).
    pub async fn open_sender(
        &self,
        address: &str,
        mode: SettleMode,
    ) -> Result<Sender, ClientError> {
        let (handle, done) = {
            let mut st = self.shared.lock();
            let handle = st.next_handle();
            let (tx, rx) = oneshot::channel();
            st.attaching.insert(handle, tx);
            st.senders.insert(
                handle,
                SenderFlow {
                    delivery_count: 0,
                    credit: 0,
                    notify: Arc::new(Notify::new()),
                },
            );
            (handle, rx)
        };
        let attach = Attach {
            name: format!("sender-{handle}"),
            handle,
            role: Role::Sender.into(),
            address: address.to_string(),
            settle_mode: mode.into(),
            ..Attach::default()
        };
        self.shared.send(Frame::new(CHANNEL, attach)).await?;
        self.attached(handle, done).await?;
        Ok(Sender::new(self.shared.clone(), handle, mode))
    }

    /// Opens a receiver link from `address`, granting `options.credit`.
    pub async fn open_receiver(
        &self,
        address: &str,
        options: ReceiverOptions,
    ) -> Result<Receiver, ClientError> {
        let window = options.credit.clamp(1, MAX_WINDOW);
        let (rx, handle, done) = {
            let mut st = self.shared.lock();
            let handle = st.next_handle();
            let (tx, done) = oneshot::channel();
            st.attaching.insert(handle, tx);
            // The broker sends at most the window of unconsumed transfers,
            // and a window is at most MAX_WINDOW (tokio allocates the
            // channel's slots as they fill, not up front).
            let (deliveries, rx) = mpsc::channel(MAX_WINDOW as usize);
            st.receivers.insert(
                handle,
                ReceiverRoute {
                    deliveries,
                    reassembler: Reassembler::new(usize::MAX),
                    drained: None,
                },
            );
            (rx, handle, done)
        };
        let attach = Attach {
            name: options
                .name
                .clone()
                .unwrap_or_else(|| format!("receiver-{handle}")),
            handle,
            role: Role::Receiver.into(),
            address: address.to_string(),
            settle_mode: options.settle_mode.into(),
            selector: options.selector.clone(),
            durable_subscription: options.durable_subscription.clone(),
            ..Attach::default()
        };
        self.shared.send(Frame::new(CHANNEL, attach)).await?;
        self.attached(handle, done).await?;
        let flow = Flow {
            handle,
            link_credit: window,
            ..Flow::default()
        };
        self.shared.send(Frame::new(CHANNEL, flow)).await?;
        Ok(Receiver::new(
            self.shared.clone(),
            handle,
            rx,
            window,
            options.settle_mode,
        ))
    }

    async fn attached(
        &self,
        handle: u32,
        done: oneshot::Receiver<Result<(), ClientError>>,
    ) -> Result<(), ClientError> {
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let mut st = self.shared.lock();
                st.senders.remove(&handle);
                st.receivers.remove(&handle);
                Err(e)
            }
            Err(_) => Err(self.shared.closed_error()),
        }
    }

    /// Starts a transaction.
    pub async fn declare(&self) -> Result<Transaction, ClientError> {
        let (txn_id, done) = {
            let mut st = self.shared.lock();
            st.next_txn += 1;
            let id = format!("txn-{}", st.next_txn);
            let (tx, rx) = oneshot::channel();
            st.txns.insert(id.clone(), tx);
            (id, rx)
        };
        let declare = Declare {
            txn_id: txn_id.clone(),
            error: None,
        };
        self.shared.send(Frame::new(CHANNEL, declare)).await?;
        match done.await {
            Ok(Ok(())) => Ok(Transaction::new(self.shared.clone(), txn_id)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.shared.closed_error()),
        }
    }

    /// Closes the connection and waits for the broker's Close.
    pub async fn close(self) -> Result<(), ClientError> {
        let done = {
            let (tx, rx) = oneshot::channel();
            self.shared.lock().close_ack = Some(tx);
            rx
        };
        self.shared.send(Frame::new(0, Close::default())).await?;
        let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
        Ok(())
    }

    /// Detaches link `handle` (used by [`Sender::close`] and [`Receiver::close`]).
    pub(super) async fn detach(shared: &Shared, handle: u32) -> Result<(), ClientError> {
        let done = {
            let (tx, rx) = oneshot::channel();
            shared.lock().detaching.insert(handle, tx);
            rx
        };
        shared
            .send(Frame::new(
                CHANNEL,
                Detach {
                    handle,
                    closed: true,
                    error: None,
                },
            ))
            .await?;
        let _ = done.await;
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Best effort: tell the broker; the writer ends when every handle is gone.
        let _ = self.shared.out.try_send(Frame::new(0, Close::default()));
    }
}

/// Writes queued frames, many per system call, splitting large transfers.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut socket: W,
    mut frames: mpsc::Receiver<Frame>,
    codec: NativeCodec,
    heartbeat: Option<Duration>,
    shared: Arc<Shared>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let limit = codec.max_outbound_frame_size();
    loop {
        let first = match heartbeat {
            Some(every) => match tokio::time::timeout(every, frames.recv()).await {
                Ok(f) => f,
                Err(_) => Some(Frame::heartbeat()),
            },
            None => frames.recv().await,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            if let Err(e) = encode(&codec, frame, limit, &mut buf) {
                reader::fail(&shared, e);
                return;
            }
            if buf.len() < 256 * 1024 {
                next = frames.try_recv().ok();
            }
        }
        if let Err(e) = socket.write_all(&buf).await {
            reader::fail(
                &shared,
                ClientError::Io {
                    peer: shared.peer.clone(),
                    reason: e.to_string(),
                },
            );
            return;
        }
        buf.clear();
    }
    let _ = socket.shutdown().await;
}

fn encode(
    codec: &NativeCodec,
    frame: Frame,
    limit: usize,
    buf: &mut BytesMut,
) -> Result<(), ClientError> {
    match frame.performative {
        Some(Performative::Transfer(t)) => {
            for piece in split_transfer(frame.channel, t, limit)? {
                codec.encode(&piece, buf)?;
            }
            Ok(())
        }
        _ => Ok(codec.encode(&frame, buf)?),
    }
}

/// Outcomes waiting for the broker, by delivery id.
pub(super) type OutcomeWaiters = std::collections::BTreeMap<u64, oneshot::Sender<Outcome>>;

/// Waiters for Declare/Discharge answers, by transaction id.
pub(super) type TxnWaiters = HashMap<String, oneshot::Sender<Result<(), ClientError>>>;
