//! One STOMP connection: reads bytes from the socket, decodes frames, feeds
//! them to the [`Session`], and enforces the read-side timeouts (CONNECT must
//! come soon, a started frame must finish, a client must heart-beat). Output
//! goes through the [`Outbox`] to the writer task.

use super::outgoing::{Outbox, Outgoing};
use super::session::{Flow, Session, SessionConfig, StompError};
use super::writer;
use crate::registry::Counted;
use crate::router::Router;
use bytes::BytesMut;
use ferromq_protocol::native::looks_like_native;
use ferromq_protocol::stomp::{Command, Decoder, Limits};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// Settings for a connection's read side.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Frame limits.
    pub limits: Limits,
    /// CONNECT must arrive within this.
    pub connect_timeout: Duration,
    /// A frame, once started, must complete within this.
    pub frame_timeout: Duration,
    /// A client silent for `grace` × its heart-beat interval is dropped.
    pub heartbeat_grace: f64,
    /// Replies queued before the session stops reading.
    pub reply_limit: usize,
    /// Session settings.
    pub session: Arc<SessionConfig>,
}

/// Serves one connection until the client leaves, breaks the protocol, or
/// the broker shuts down.
// The connection's origin (peer, listener, certificate user) and the
// broker's shared parts (settings, router, shutdown) are each one argument:
// bundling them would only move the list into a struct built once per call.
#[allow(clippy::too_many_arguments)]
pub async fn serve<R, W>(
    reader: R,
    writer_half: W,
    peer: String,
    listener: crate::server::ListenerKind,
    certificate_user: Option<Arc<str>>,
    config: Arc<ConnectionConfig>,
    router: Arc<Router>,
    shutdown: CancellationToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = router.connection_id();
    // Listed by the management API until this function returns; its byte
    // counters see everything read and written.
    let registration = router.connections().register(id, "stomp", &peer);
    let mut reader = Counted::new(reader, registration.info());
    let writer_half = Counted::new(writer_half, registration.info());
    let outbox = Arc::new(Outbox::new(config.reply_limit));
    let writer = tokio::spawn(writer::run(
        writer_half,
        outbox.clone(),
        router.clone(),
        registration.info().clone(),
        peer.clone(),
    ));
    let mut session = Session::new(
        id,
        peer.clone(),
        config.session.clone(),
        router,
        outbox.clone(),
    );
    session.set_certificate_user(certificate_user);
    session.set_listener(listener);
    let mut decoder = Decoder::new(config.limits);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Both timeouts bound a whole span (accept to CONNECT, first byte to
    // last of a frame), not each read, so a client trickling a byte at a
    // time cannot hold a connection open.
    let accepted = Instant::now();
    let mut frame_started: Option<Instant> = None;
    debug!(conn = id, %peer, "connection accepted");

    let reason: Result<&str, StompError> = loop {
        // Decode everything buffered before reading again.
        if session.version().is_none() && looks_like_native(&buf) {
            break Err(StompError::new(
                "this is a STOMP port: ferromq native protocol clients connect to the native port (default 61620)",
            ));
        }
        let decoded = loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    frame_started = None;
                    if frame.command == Command::Send {
                        registration.info().count_message_in();
                    }
                    // Handling may wait (reply room, producer flow control);
                    // shutdown and an administrator's close must still get
                    // through at once. Cancelling there is safe: those waits
                    // come after the frame took effect (or, for the room
                    // wait, before it started), and the connection ends.
                    let handled = tokio::select! {
                        r = async {
                            outbox.wait_for_room().await;
                            session.handle(frame).await
                        } => r,
                        _ = shutdown.cancelled() => Err(StompError::new("broker shutting down")),
                        why = registration.info().close_requested() => Err(StompError::new(
                            format!("connection closed by an administrator: {why}"),
                        )),
                    };
                    match handled {
                        Ok(Flow::Continue) => {
                            if let Some(v) = session.version() {
                                decoder.set_version(v);
                            }
                        }
                        Ok(Flow::Disconnect) => break Some(Ok("client disconnected")),
                        Err(e) => break Some(Err(e)),
                    }
                }
                Ok(None) => break None,
                Err(e) => break Some(Err(StompError::new(format!("malformed frame: {e}")))),
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
            if let Some(user) = session.user() {
                registration.info().set_user(user);
            }
        }
        let deadline = read_deadline(
            &config,
            &session,
            accepted.elapsed(),
            frame_started.map(|t| t.elapsed()),
        );
        match decoder.bytes_wanted(buf.len()) {
            // A body of known length: room for all of it at once (no
            // regrowth copying what arrived, no allocation twice its size
            // held by the message). Memory: at most max_frame_size per
            // connection, as the frame itself; a peer that stops sending
            // is cut off by the frame timeout (read_deadline).
            Some(wanted) if wanted > 64 * 1024 => buf.reserve(wanted),
            _ if buf.capacity() - buf.len() < 8 * 1024 => buf.reserve(64 * 1024),
            _ => {}
        }
        let read = tokio::select! {
            r = tokio::time::timeout(deadline, reader.read_buf(&mut buf)) => r,
            _ = shutdown.cancelled() => break Err(StompError::new("broker shutting down")),
            why = registration.info().close_requested() => {
                break Err(StompError::new(format!("connection closed by an administrator: {why}")))
            }
        };
        match read {
            Ok(Ok(0)) => break Ok("peer closed the connection"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                // A transport may refuse input as a protocol error (the
                // WebSocket layer does for an oversized message): that gets
                // its ERROR frame like any other.
                if let Some(refusal) = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<StompError>())
                {
                    break Err(refusal.clone());
                }
                debug!(conn = id, %peer, error = %e, "read failed");
                break Ok("read error");
            }
            Err(_) => break Err(timeout_error(&session, !buf.is_empty())),
        }
    };

    match &reason {
        Ok(why) => {
            info!(conn = id, %peer, user = %session.user().unwrap_or("-"), reason = why, "stomp connection closed")
        }
        Err(e) => {
            info!(conn = id, %peer, user = %session.user().unwrap_or("-"), error = %e.message, "stomp connection closed with error");
            outbox.push(Outgoing::Frame(e.to_frame()));
        }
    }
    // Close the outbox so deliveries still queued are not written, let the
    // writer finish (settling what it wrote), then return everything not
    // acknowledged to its queue.
    outbox.close_with(None);
    Outbox::finish_writer(writer, WRITER_DRAIN).await;
    session.close();
}

/// How long a closing connection waits for its writer to finish.
pub const WRITER_DRAIN: Duration = Duration::from_secs(2);

/// How long to wait for the next bytes, given the time since the accept and
/// the age of the frame in progress (if one is).
fn read_deadline(
    config: &ConnectionConfig,
    session: &Session,
    since_accept: Duration,
    frame_age: Option<Duration>,
) -> Duration {
    if session.version().is_none() {
        return config.connect_timeout.saturating_sub(since_accept);
    }
    let heartbeat = session
        .heartbeat()
        .receive
        .map(|d| d.mul_f64(config.heartbeat_grace.max(1.0)));
    let frame_left = frame_age.map(|age| config.frame_timeout.saturating_sub(age));
    match (heartbeat, frame_left) {
        (Some(h), Some(f)) => h.min(f),
        (Some(h), None) => h,
        (None, Some(f)) => f,
        // No heart-beats agreed and nothing pending: wait as long as it takes.
        (None, None) => Duration::from_secs(365 * 24 * 3600),
    }
}

fn timeout_error(session: &Session, mid_frame: bool) -> StompError {
    if session.version().is_none() {
        StompError::new("no CONNECT frame received in time")
    } else if mid_frame && session.heartbeat().receive.is_none() {
        StompError::new("incomplete frame: the rest did not arrive in time")
    } else {
        StompError::new(
            "heart-beat timeout: nothing received from the client within the agreed interval",
        )
    }
}
