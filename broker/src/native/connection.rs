//! One native connection's socket: the preamble exchange, then batched reads
//! decoded into frames for the [`Connection`] state machine, with the
//! read-side deadlines (preamble and Open soon after accept, a started frame
//! finished in time, the idle timeout) and shutdown. Output goes through the
//! [`Outbox`] to the writer task.

use super::book::DeliveryBook;
use super::outgoing::{Outbox, Outgoing};
use super::session::{Connection, Step};
use super::{writer, Failure, NativeSettings};
use crate::registry::Counted;
use crate::router::Router;
use bytes::BytesMut;
use ferromq_protocol::native::inbound::InboundTransfer;
use ferromq_protocol::native::view::complete_frame_len;
use ferromq_protocol::native::{ErrorCondition, Frame, NativeCodec, Preamble, PreambleCheck};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// How a connection ended.
type Ending = Result<&'static str, Failure>;

/// Serves one native connection until the client closes it, breaks the
/// protocol, falls silent, or the broker shuts down.
// The connection's origin (peer, listener, certificate user) and the
// broker's shared parts (settings, router, shutdown) are each one argument:
// bundling them would only move the list into a struct built once per call.
#[allow(clippy::too_many_arguments)]
pub async fn serve<R, W>(
    mut reader: R,
    mut writer_half: W,
    peer: String,
    listener: crate::server::ListenerKind,
    certificate_user: Option<Arc<str>>,
    settings: Arc<NativeSettings>,
    router: Arc<Router>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let accepted = Instant::now();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    if !exchange_preamble(
        &mut reader,
        &mut writer_half,
        &mut buf,
        &peer,
        &settings,
        &shutdown,
    )
    .await
    {
        let _ = writer_half.shutdown().await;
        return;
    }
    let id = router.connection_id();
    // Listed by the management API until this function returns (the
    // preamble bytes before it are not counted).
    let registration = router.connections().register(id, "native", &peer);
    let mut reader = Counted::new(reader, registration.info());
    let writer_half = Counted::new(writer_half, registration.info());
    let outbox = Arc::new(Outbox::new(settings.reply_limit));
    let book = Arc::new(DeliveryBook::default());
    let writer = tokio::spawn(writer::run(
        writer_half,
        outbox.clone(),
        router.clone(),
        book.clone(),
        registration.info().clone(),
        peer.clone(),
    ));
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel();
    let mut conn = Connection::new(
        registration.info().clone(),
        settings.clone(),
        router,
        outbox.clone(),
        book,
        wake_tx,
    );
    conn.set_certificate_user(certificate_user);
    conn.set_listener(listener);
    // Before the Opens the limit is the protocol's default; after, ours.
    let mut codec = NativeCodec::default();
    let mut frame_started: Option<Instant> = None;
    debug!(conn = id, %peer, "native connection accepted");

    let ending: Ending = loop {
        let decoded = loop {
            // The hot path: a whole producer transfer is read in place
            // (`native::inbound`), without decoding it into a Frame; any
            // other frame (or one the strict reader leaves alone) is decoded
            // as usual, with the same results and errors.
            let whole = if conn.is_open() {
                complete_frame_len(&buf, codec.max_inbound_frame_size()).unwrap_or(None)
            } else {
                None
            };
            if let Some(len) = whole {
                let bytes = buf.split_to(len).freeze();
                frame_started = None;
                // Shutdown is noticed at the next read, not per frame: the
                // token's state sits behind a mutex every connection shares.
                let parsed = InboundTransfer::parse(&bytes);
                // The fast path, taken while replies have room: handled
                // at once, without building (and moving) the futures that
                // waiting for room or for shutdown would need.
                let fast = match &parsed {
                    Some(t) if outbox.has_room() => conn.inbound_transfer(t, &bytes),
                    _ => None,
                };
                let handled = match (fast, parsed) {
                    (Some(r), _) => r,
                    (None, Some(t)) => tokio::select! {
                        r = async {
                            outbox.wait_for_room().await;
                            match conn.inbound_transfer(&t, &bytes) {
                                Some(r) => r,
                                None => conn.handle(codec.decode_whole(bytes.clone())?).await,
                            }
                        } => r,
                        _ = shutdown.cancelled() => Err(shutting_down()),
                    },
                    (None, None) => match codec.decode_whole(bytes) {
                        Ok(frame) => tokio::select! {
                            r = async {
                                outbox.wait_for_room().await;
                                conn.handle(frame).await
                            } => r,
                            _ = shutdown.cancelled() => Err(shutting_down()),
                        },
                        Err(e) => Err(Failure::from(e)),
                    },
                };
                match handled {
                    Ok(Step::Continue) => continue,
                    Ok(Step::Closed) => break Some(Ok("client closed the connection")),
                    Err(e) => break Some(Err(e)),
                }
            }
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    frame_started = None;
                    let was_open = conn.is_open();
                    let handled = tokio::select! {
                        r = async {
                            outbox.wait_for_room().await;
                            conn.handle(frame).await
                        } => r,
                        _ = shutdown.cancelled() => Err(shutting_down()),
                    };
                    if !was_open && conn.is_open() {
                        codec.set_max_inbound_frame_size(settings.max_frame_size);
                    }
                    match handled {
                        Ok(Step::Continue) => {}
                        Ok(Step::Closed) => break Some(Ok("client closed the connection")),
                        Err(e) => break Some(Err(e)),
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(Err(Failure::from(e))),
            }
        };
        if let Some(end) = decoded {
            break end;
        }
        if buf.is_empty() {
            frame_started = None;
        } else if frame_started.is_none() {
            frame_started = Some(Instant::now());
        }
        if !registration.info().has_user() {
            if let Some(user) = conn.user() {
                registration.info().set_user(user);
            }
        }
        let deadline = read_deadline(&settings, conn.is_open(), accepted, frame_started);
        if buf.capacity() - buf.len() < 8 * 1024 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            r = tokio::time::timeout(deadline, reader.read_buf(&mut buf)) => r,
            Some((channel, handle)) = wake_rx.recv() => {
                conn.wake(channel, handle);
                continue;
            }
            _ = shutdown.cancelled() => break Err(shutting_down()),
            why = registration.info().close_requested() => break Err(Failure::new(
                ErrorCondition::NotAllowed,
                format!("connection closed by an administrator: {why}"),
            )),
        };
        match read {
            Ok(Ok(0)) => break Ok("peer closed the connection"),
            Ok(Ok(_)) => conn.mark_read(),
            Ok(Err(e)) => {
                debug!(conn = id, %peer, error = %e, "native read failed");
                break Ok("read error");
            }
            Err(_) => break Err(timeout_failure(conn.is_open(), frame_started.is_some())),
        }
    };

    match &ending {
        Ok(why) => info!(conn = id, %peer, reason = why, "native connection closed"),
        Err(e) => {
            info!(conn = id, %peer, condition = %e.condition, error = %e.description, "native connection closed with error");
            outbox.close_with(Some(Outgoing::Frame(Frame::close_with(
                e.condition,
                e.description.clone(),
            ))));
        }
    }
    // Close the outbox so deliveries still queued are not written, let the
    // writer finish (settling what it wrote), then return everything not
    // settled to its queue.
    outbox.close_with(None);
    Outbox::finish_writer(writer, crate::stomp::connection::WRITER_DRAIN).await;
    conn.close();
}

/// Reads the client's preamble and answers it. `false`: the connection must
/// close (another protocol, another major version, timeout, shutdown).
async fn exchange_preamble<R, W>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut BytesMut,
    peer: &str,
    settings: &NativeSettings,
    shutdown: &CancellationToken,
) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = Instant::now() + settings.connect_timeout;
    loop {
        match Preamble::parse(buf) {
            PreambleCheck::Ok(_) => {
                let _ = buf.split_to(Preamble::LEN);
                return writer
                    .write_all(&Preamble::CURRENT.to_bytes())
                    .await
                    .is_ok();
            }
            PreambleCheck::Unsupported(version) => {
                info!(%peer, %version, "native connection refused: unsupported protocol version");
                let _ = writer.write_all(&Preamble::CURRENT.to_bytes()).await;
                return false;
            }
            PreambleCheck::NotNative => {
                let seen: String = buf
                    .iter()
                    .take(16)
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                info!(%peer, start = %seen, "native connection refused: not the ferromq native protocol (is this a STOMP or HTTP client?)");
                return false;
            }
            PreambleCheck::NeedMore => {}
        }
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, reader.read_buf(buf)) => r,
            _ = shutdown.cancelled() => return false,
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(_) => return false,
            Err(_) => {
                info!(%peer, "native connection closed: no preamble in time");
                return false;
            }
        }
    }
}

/// How long to wait for the next bytes.
fn read_deadline(
    settings: &NativeSettings,
    open: bool,
    accepted: Instant,
    frame_started: Option<Instant>,
) -> Duration {
    if !open {
        return settings.connect_timeout.saturating_sub(accepted.elapsed());
    }
    let idle = settings.idle_timeout;
    match frame_started {
        Some(t) => idle.min(settings.frame_timeout.saturating_sub(t.elapsed())),
        None => idle,
    }
}

fn timeout_failure(open: bool, mid_frame: bool) -> Failure {
    let description = if !open {
        "no Open frame received in time"
    } else if mid_frame {
        "incomplete frame: the rest did not arrive in time"
    } else {
        "idle timeout: nothing received within the broker's idle timeout"
    };
    Failure::new(ErrorCondition::ResourceLimitExceeded, description)
}

fn shutting_down() -> Failure {
    Failure::new(ErrorCondition::InternalError, "broker shutting down")
}
