//! [`SplicedBuffer`]: a connection's pending output as encoded bytes with
//! message bodies spliced in by reference, written with vectored writes.
//!
//! A delivery's frame is its encoded head followed by the body, which is the
//! frame's last field. Copying the body into the write buffer cost about 7%
//! of the broker's CPU at 600k deliveries/s (the kernel copies it once more
//! anyway); spliced, the body goes from the router's message (a shared
//! `Bytes`) straight into the `writev`.
//!
//! Both writers use it: the native one splices every body of [`SPLICE_MIN`]
//! bytes or more; the STOMP one only large bodies (its frame ends with a NUL
//! after the body, encoded into the open run after the splice), where the
//! copy, not the system call, is what costs.

use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Bodies shorter than this are copied: an iovec entry costs about as much.
pub const SPLICE_MIN: usize = 512;
/// iovec entries per `writev` (Linux allows 1024).
const MAX_IOVECS: usize = 256;

/// Encoded output waiting for the socket, in order.
pub struct SplicedBuffer {
    /// Where frames are encoded.
    open: BytesMut,
    /// Sealed runs of `open` and spliced bodies, before `open`'s bytes.
    sealed: VecDeque<Bytes>,
    sealed_len: usize,
}

impl SplicedBuffer {
    /// An empty buffer encoding into `capacity` bytes before it grows.
    pub fn with_capacity(capacity: usize) -> SplicedBuffer {
        SplicedBuffer {
            open: BytesMut::with_capacity(capacity),
            sealed: VecDeque::new(),
            sealed_len: 0,
        }
    }

    /// The buffer to encode the next bytes into.
    pub fn encoder(&mut self) -> &mut BytesMut {
        &mut self.open
    }

    /// Appends `body` after everything encoded so far, without copying it.
    pub fn splice(&mut self, body: Bytes) {
        if !self.open.is_empty() {
            let head = self.open.split().freeze();
            self.sealed_len += head.len();
            self.sealed.push_back(head);
        }
        self.sealed_len += body.len();
        self.sealed.push_back(body);
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.sealed_len + self.open.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes everything to `socket` and empties the buffer. Without a
    /// splice this is one `write_all`; with splices, `writev`s of the runs.
    pub async fn write_to<W: AsyncWrite + Unpin>(&mut self, socket: &mut W) -> std::io::Result<()> {
        if self.sealed.is_empty() {
            socket.write_all(&self.open).await?;
            self.open.clear();
            return Ok(());
        }
        if !self.open.is_empty() {
            let tail = self.open.split().freeze();
            self.sealed_len += tail.len();
            self.sealed.push_back(tail);
        }
        while !self.sealed.is_empty() {
            let mut n = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (slot, run) in slices.iter_mut().zip(&self.sealed) {
                    *slot = IoSlice::new(run);
                    count += 1;
                }
                socket.write_vectored(&slices[..count]).await?
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.sealed_len -= n;
            while n > 0 {
                let Some(front) = self.sealed.front_mut() else {
                    break;
                };
                if front.len() <= n {
                    n -= front.len();
                    self.sealed.pop_front();
                } else {
                    front.advance(n);
                    n = 0;
                }
            }
        }
        // Every sealed run is written: what `open` still holds (nothing) can
        // be reused from the start of its allocation.
        self.open.clear();
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Takes at most `step` bytes per call, vectored or not.
    struct Trickle {
        got: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn spliced_bodies_come_out_in_order_through_partial_writes() {
        for step in [1, 3, 7, 64, 100_000] {
            let mut out = SplicedBuffer::with_capacity(16);
            let mut want = Vec::new();
            for i in 0..300u32 {
                let head = format!("head{i};");
                out.encoder().extend_from_slice(head.as_bytes());
                want.extend_from_slice(head.as_bytes());
                if i % 3 != 0 {
                    let body = Bytes::from(vec![b'a' + (i % 26) as u8; (i as usize * 7) % 900]);
                    want.extend_from_slice(&body);
                    out.splice(body);
                }
            }
            out.encoder().extend_from_slice(b"tail");
            want.extend_from_slice(b"tail");
            assert_eq!(out.len(), want.len());
            let mut sink = Trickle {
                got: Vec::new(),
                step,
            };
            out.write_to(&mut sink).await.unwrap();
            assert_eq!(sink.got, want, "step {step}");
            assert!(out.is_empty());
            // Reusable afterwards, without splices too.
            out.encoder().extend_from_slice(b"again");
            out.write_to(&mut sink).await.unwrap();
            assert!(sink.got.ends_with(b"tailagain"));
        }
    }
}
