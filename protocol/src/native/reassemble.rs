//! [`Reassembler`]: joins the frames of a split [`Transfer`] (see
//! [`super::split_transfer`]) back into one message, within a size bound.
//!
//! One reassembler serves one link. The pieces of a message must arrive one
//! after another with nothing else in between on that link; a transfer of a
//! different delivery before the last piece is an [`NativeError::InterleavedTransfer`].

use super::error::NativeError;
use super::transfer::{Message, Transfer};
use bytes::{Bytes, BytesMut};

/// Joins split transfers on one link, refusing messages over a body size limit.
#[derive(Debug, Clone)]
pub struct Reassembler {
    max_message_size: usize,
    pending: Option<Pending>,
}

/// A message whose last piece has not arrived yet.
#[derive(Debug, Clone)]
struct Pending {
    /// The first frame's transfer, with its body moved into `body`.
    head: Transfer,
    body: BytesMut,
}

impl Reassembler {
    /// A reassembler accepting message bodies of at most `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Reassembler {
        Reassembler {
            max_message_size,
            pending: None,
        }
    }

    /// The body size limit.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// True when no split message is waiting for more pieces.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }

    /// Body bytes buffered for the incomplete message.
    pub fn buffered(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.body.len())
    }

    /// Drops an incomplete message (the link detached or the peer aborted).
    pub fn clear(&mut self) {
        self.pending = None;
    }

    /// Takes the next Transfer received on the link.
    ///
    /// Returns the whole message once its last piece is in (at once for a
    /// transfer that was not split, without copying its body), `Ok(None)` while
    /// pieces are missing. The result keeps the first frame's fields; it is
    /// settled if any piece was. On error the incomplete message is dropped.
    pub fn push(&mut self, transfer: Transfer) -> Result<Option<Transfer>, NativeError> {
        match self.pending.take() {
            None => self.start(transfer),
            Some(pending) => self.continue_with(pending, transfer),
        }
    }

    fn start(&mut self, mut transfer: Transfer) -> Result<Option<Transfer>, NativeError> {
        self.check_size(transfer.handle, transfer.body_len())?;
        if !transfer.more {
            return Ok(Some(transfer));
        }
        let body = transfer
            .message
            .get_or_insert_with(Message::default)
            .body
            .split_off(0);
        let mut buffer = BytesMut::with_capacity(body.len().saturating_mul(2));
        buffer.extend_from_slice(&body);
        self.pending = Some(Pending {
            head: transfer,
            body: buffer,
        });
        Ok(None)
    }

    fn continue_with(
        &mut self,
        mut pending: Pending,
        piece: Transfer,
    ) -> Result<Option<Transfer>, NativeError> {
        let head = &mut pending.head;
        if piece.handle != head.handle || piece.delivery_id != head.delivery_id {
            return Err(NativeError::InterleavedTransfer {
                handle: piece.handle,
                got: piece.delivery_id,
                pending_handle: head.handle,
                pending: head.delivery_id,
            });
        }
        if piece
            .txn_id
            .as_ref()
            .is_some_and(|t| head.txn_id.as_ref() != Some(t))
        {
            return Err(invalid_piece("txn_id", "differs from the first frame's"));
        }
        let body = match piece.message {
            Some(message) => {
                if message.properties.is_some() || !message.application_headers.is_empty() {
                    return Err(invalid_piece(
                        "message",
                        "a continuation frame carries only body bytes",
                    ));
                }
                message.body
            }
            None => Bytes::new(),
        };
        self.check_size(head.handle, pending.body.len().saturating_add(body.len()))?;
        pending.body.extend_from_slice(&body);
        head.settled |= piece.settled;
        if piece.more {
            self.pending = Some(pending);
            return Ok(None);
        }
        let Pending { mut head, body } = pending;
        head.more = false;
        head.message.get_or_insert_with(Message::default).body = body.freeze();
        Ok(Some(head))
    }

    fn check_size(&self, handle: u32, len: usize) -> Result<(), NativeError> {
        if len > self.max_message_size {
            Err(NativeError::MessageTooLarge {
                handle,
                limit: self.max_message_size,
            })
        } else {
            Ok(())
        }
    }
}

fn invalid_piece(field: &'static str, reason: &str) -> NativeError {
    NativeError::InvalidField {
        performative: "transfer",
        field,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::native::{split_transfer, Performative, Properties};

    fn message_transfer(delivery_id: u64, body: &'static [u8]) -> Transfer {
        Transfer {
            handle: 1,
            delivery_id,
            message: Some(Message {
                properties: Some(Properties {
                    destination: "/queue/a".into(),
                    ..Properties::default()
                }),
                body: Bytes::from_static(body),
                ..Message::default()
            }),
            ..Transfer::default()
        }
    }

    fn pieces(t: Transfer, limit: usize) -> Vec<Transfer> {
        split_transfer(0, t, limit)
            .unwrap()
            .map(|f| match f.performative {
                Some(Performative::Transfer(t)) => t,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn unsplit_transfer_passes_through() {
        let mut r = Reassembler::new(100);
        let t = message_transfer(1, b"hello");
        assert_eq!(r.push(t.clone()).unwrap(), Some(t));
        assert!(r.is_idle());
    }

    #[test]
    fn split_pieces_join_into_the_original() {
        let body: &'static [u8] = &[0x5a; 3000];
        let original = message_transfer(9, body);
        let parts = pieces(original.clone(), 512);
        assert!(parts.len() > 5);
        let mut r = Reassembler::new(3000);
        let last = parts.len() - 1;
        for (i, part) in parts.into_iter().enumerate() {
            let out = r.push(part).unwrap();
            assert_eq!(out.is_some(), i == last);
            if let Some(whole) = out {
                assert_eq!(whole, original);
            } else {
                assert!(r.buffered() > 0);
            }
        }
        assert!(r.is_idle());
    }

    #[test]
    fn oversize_and_interleaving_are_errors() {
        let body: &'static [u8] = &[1; 2000];
        let parts = pieces(message_transfer(4, body), 512);
        let mut r = Reassembler::new(1000);
        let err = parts
            .into_iter()
            .map(|p| r.push(p))
            .find_map(Result::err)
            .unwrap();
        assert!(
            matches!(err, NativeError::MessageTooLarge { limit: 1000, .. }),
            "{err}"
        );
        assert!(r.is_idle());

        let parts = pieces(message_transfer(5, body), 512);
        let mut r = Reassembler::new(10_000);
        assert_eq!(r.push(parts[0].clone()).unwrap(), None);
        let err = r.push(message_transfer(6, b"x")).unwrap_err();
        assert!(matches!(
            err,
            NativeError::InterleavedTransfer {
                got: 6,
                pending: 5,
                ..
            }
        ));
        assert!(r.is_idle());

        let mut r = Reassembler::new(10_000);
        assert_eq!(r.push(parts[0].clone()).unwrap(), None);
        let mut bad = parts[1].clone();
        bad.message.as_mut().unwrap().properties = Some(Properties::default());
        let err = r.push(bad).unwrap_err();
        assert!(err.to_string().contains("transfer.message"), "{err}");
    }
}
