//! [`MessageStream`]: a WebSocket connection seen as a byte stream, so the
//! STOMP connection code runs over it exactly as over TCP or TLS.
//!
//! Reading yields the payloads of text and binary messages back to back:
//! STOMP frames do not have to line up with messages (a message may carry
//! part of a frame, one frame or several, or heart-beat EOLs). Pings are
//! answered by tungstenite itself; a close message is end of stream.
//!
//! Writing collects bytes until `flush`, which sends them as **one**
//! message: text when the bytes are UTF-8, binary otherwise. stomp.js
//! parses each message on its own (older stomp.js versions cannot join a
//! frame split over two messages), so a message must hold whole frames.
//! The STOMP writer guarantees that: it encodes whole frames into its batch
//! buffer and writes the buffer (`write_all` + `flush`) only between frames,
//! which also bounds what collects here to one batch (`WRITE_CHUNK` plus one
//! frame).
//!
//! Frame ends: a message carries exactly the bytes TCP and TLS get, so each
//! frame ends with NUL and LF (`ferromq_protocol::stomp::FRAME_END`). The
//! message boundary would make the LF unnecessary, but one encoder for every
//! transport is simpler than a per-transport variant, and stomp.js accepts
//! both: `@stomp/stompjs` reads an EOL between frames as a heart-beat, and
//! the older stomp-websocket splits messages on NUL followed by any LFs.

use crate::stomp::session::StompError;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// A WebSocket connection as an `AsyncRead + AsyncWrite` byte stream.
pub struct MessageStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the message being read.
    inbound: Bytes,
    /// The client sent a close message (or the connection ended).
    inbound_closed: bool,
    /// Bytes written since the last flush: the next outbound message.
    outbound: BytesMut,
    /// `stomp.max_frame_size`, which bounds inbound messages (for the
    /// error a larger one gets).
    max_frame_size: usize,
}

impl<S> MessageStream<S> {
    /// Wraps an accepted WebSocket whose inbound message size limit (in its
    /// `WebSocketConfig`) follows `max_frame_size`.
    pub fn new(ws: WebSocketStream<S>, max_frame_size: usize) -> MessageStream<S> {
        MessageStream {
            ws,
            inbound: Bytes::new(),
            inbound_closed: false,
            outbound: BytesMut::new(),
            max_frame_size,
        }
    }
}

/// One outbound message: text if `bytes` are UTF-8 (what stomp.js expects
/// for ordinary frames), binary otherwise (bodies with arbitrary bytes).
fn message_of(bytes: Bytes) -> Message {
    // Cloning `Bytes` is a reference count, not a copy.
    match Utf8Bytes::try_from(bytes.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(bytes),
    }
}

/// A read failure as an I/O error. What the client did wrong (an
/// oversized message, text that is not UTF-8, a WebSocket protocol
/// violation) carries the [`StompError`] the connection sends back as its
/// ERROR frame before closing.
fn read_error(e: WsError, max_frame_size: usize) -> io::Error {
    let refusal = match e {
        WsError::Io(e) => return e,
        WsError::Capacity(_) => StompError::new(format!(
            "WebSocket message larger than stomp.max_frame_size ({max_frame_size} bytes)"
        )),
        WsError::Utf8(_) => StompError::new(
            "WebSocket text message is not valid UTF-8 (send such bodies in binary messages)",
        ),
        WsError::Protocol(e) => StompError::new(format!("WebSocket protocol error: {e}")),
        other => return io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
    };
    io::Error::new(io::ErrorKind::InvalidData, refusal)
}

fn write_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::other(other.to_string()),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MessageStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.inbound.is_empty() {
                let n = this.inbound.len().min(buf.remaining());
                buf.put_slice(&this.inbound[..n]);
                this.inbound.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.inbound_closed {
                // Nothing put into `buf`: end of stream.
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Text(text))) => this.inbound = Bytes::from(text),
                Some(Ok(Message::Binary(bytes))) => this.inbound = bytes,
                Some(Ok(Message::Close(_))) | None => this.inbound_closed = true,
                // Pings are answered (and pongs absorbed) by tungstenite;
                // raw frames are never yielded when reading.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(read_error(e, this.max_frame_size))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MessageStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Bounded by the writer's batch (see the module comment).
        self.get_mut().outbound.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.outbound.is_empty() {
            ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(write_error)?;
            let message = message_of(this.outbound.split().freeze());
            Pin::new(&mut this.ws)
                .start_send(message)
                .map_err(write_error)?;
        }
        Pin::new(&mut this.ws).poll_flush(cx).map_err(write_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        let this = self.get_mut();
        // The close handshake (a close message, answered by the client's),
        // then the transport's own close (FIN, or TLS close_notify first).
        ready!(Pin::new(&mut this.ws).poll_close(cx)).map_err(write_error)?;
        Pin::new(this.ws.get_mut()).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_bytes_go_as_text_and_others_as_binary() {
        let text = message_of(Bytes::from_static(
            b"MESSAGE\ndestination:/queue/a\n\nh\xc3\xa9\0\n",
        ));
        assert!(matches!(text, Message::Text(_)), "{text:?}");
        let binary = message_of(Bytes::from_static(b"MESSAGE\n\n\xff\xfe\0\n"));
        assert!(matches!(binary, Message::Binary(_)), "{binary:?}");
    }

    #[test]
    fn an_oversized_message_carries_the_error_frame_text() {
        let e = read_error(
            WsError::Capacity(
                tokio_tungstenite::tungstenite::error::CapacityError::MessageTooLong {
                    size: 10,
                    max_size: 5,
                },
            ),
            5,
        );
        let refusal = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<StompError>())
            .map(|s| s.message.clone());
        assert_eq!(
            refusal.as_deref(),
            Some("WebSocket message larger than stomp.max_frame_size (5 bytes)")
        );
    }
}
