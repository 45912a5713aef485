//! A native consumer link: a receiver link with a credit window of the
//! scenario's prefetch. Transfers are read in place from the read buffer
//! (only their delivery id and stamp header are looked at); acknowledgements
//! are `accepted` Dispositions, consecutive ones merged into one range.

use super::connection::{Connection, CHANNEL};
use super::{Decimal, NativeOptions, STAMP_HEADER};
use crate::driver::{ConsumerLink, ConsumerSpec, Delivery, DriverError};
use crate::order::{Origin, PRODUCER_HEADER, SEQ_HEADER};
use crate::scenario::AckMode;
use bytes::{Buf, BytesMut};
use ferromq_protocol::native::view::TransferView;
use ferromq_protocol::native::{
    Accepted, Attach, Declare, DeliveryState, Detach, Discharge, Disposition, Flow, Frame,
    NativeCodec, Performative, Role, SettleMode,
};
use std::time::Duration;

/// The consumer's link handle (one link per connection).
const HANDLE: u32 = 0;
/// Most messages handed out by one `receive` call (bounds the stamp vector).
const MAX_BATCH: usize = 4096;
/// The largest credit window (the protocol client's limit too).
const MAX_WINDOW: u32 = 65_536;

/// A range of deliveries to acknowledge, inside a transaction or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AckRange {
    first: u64,
    last: u64,
    tx: Option<u64>,
}

/// A connected receiver link.
pub struct NativeConsumer {
    conn: Connection,
    ack: AckMode,
    window: u32,
    /// Whole messages received (our delivery count).
    received: u32,
    /// `received` when credit was last granted.
    granted_at: u32,
    /// Delivery ids of the last `receive`.
    ids: Vec<u64>,
    /// For `ack:client`: the first delivery not acknowledged yet.
    unacked_from: Option<u64>,
    /// Acknowledgements not yet encoded (merged while consecutive).
    acks: Option<AckRange>,
    /// A split message's stamps, from its first piece.
    split_first: Option<Delivery>,
}

impl NativeConsumer {
    pub(super) async fn connect(
        options: &NativeOptions,
        endpoint: usize,
        spec: &ConsumerSpec,
    ) -> Result<NativeConsumer, DriverError> {
        let mut conn = Connection::open(options, endpoint, spec.durable_name.as_deref()).await?;
        let settle_mode = match spec.ack {
            AckMode::Auto => SettleMode::Settled,
            AckMode::Client | AckMode::ClientIndividual => SettleMode::Unsettled,
        };
        let window = spec.prefetch.clamp(1, MAX_WINDOW);
        let attach = Attach {
            name: spec
                .durable_name
                .clone()
                .unwrap_or_else(|| "ferromq-bench-consumer".into()),
            handle: HANDLE,
            role: Role::Receiver.into(),
            address: spec.destination.clone(),
            durable_subscription: spec.durable_name.clone(),
            settle_mode: settle_mode.into(),
            ..Attach::default()
        };
        conn.push_frame(&Frame::new(CHANNEL, attach))?;
        // The echo is answered once the credit is registered, so the
        // subscription exists by then (producers start after connect: on a
        // topic, anything sent earlier would be lost to this consumer).
        let flow = Flow {
            handle: HANDLE,
            link_credit: window,
            echo: true,
            ..Flow::default()
        };
        conn.push_frame(&Frame::new(CHANNEL, flow))?;
        conn.flush().await?;
        tokio::time::timeout(options.connect_timeout, await_echo(&mut conn))
            .await
            .map_err(|_| DriverError::Timeout {
                endpoint: conn.endpoint.clone(),
                what: "the answer to the receiver link's Attach",
            })??;
        Ok(NativeConsumer {
            conn,
            ack: spec.ack,
            window,
            received: 0,
            granted_at: 0,
            ids: Vec::new(),
            unacked_from: None,
            acks: None,
            split_first: None,
        })
    }

    /// Takes the transfers (and any other frame) at the front of the read
    /// buffer, up to `room` messages. Returns how many were taken.
    fn take_buffered(
        &mut self,
        out: &mut Vec<Delivery>,
        room: usize,
    ) -> Result<usize, DriverError> {
        let mut taken = 0;
        while taken < room {
            let Some(len) = self.conn.front_frame_len()? else {
                break;
            };
            let view = TransferView::parse(&self.conn.rbuf[..len])
                .map_err(|e| self.conn.protocol_error(e))?;
            match view {
                Some(t) if t.handle == HANDLE && t.channel == CHANNEL => {
                    let number = |name| t.header(name).and_then(|v| v.parse::<u64>().ok());
                    let delivery = match self.split_first.take() {
                        Some(first) => first,
                        None => Delivery {
                            stamp: number(STAMP_HEADER).unwrap_or(0),
                            origin: match (number(PRODUCER_HEADER), number(SEQ_HEADER)) {
                                (Some(producer), Some(seq)) => Some(Origin { producer, seq }),
                                _ => None,
                            },
                            // The transfer view does not read properties:
                            // the order check counts a native redelivery
                            // of a message already seen as a duplicate.
                            redelivered: false,
                        },
                    };
                    if t.more {
                        self.split_first = Some(delivery);
                    } else {
                        out.push(delivery);
                        self.ids.push(t.delivery_id);
                        self.unacked_from.get_or_insert(t.delivery_id);
                        self.received = self.received.wrapping_add(1);
                        taken += 1;
                    }
                    self.conn.rbuf.advance(len);
                }
                Some(_) => self.conn.rbuf.advance(len),
                None => {
                    if let Some(frame) = self.conn.decode()? {
                        if let Some(p) = frame.performative {
                            self.conn.control(p)?;
                        }
                    }
                }
            }
        }
        self.refill_credit();
        Ok(taken)
    }

    /// Grants the window again once half of it is used.
    fn refill_credit(&mut self) {
        if self.received.wrapping_sub(self.granted_at) < (self.window / 2).max(1) {
            return;
        }
        self.granted_at = self.received;
        // The broker may send `delivery_count + link_credit` in total, so
        // transfers still on their way count against the window.
        let flow = Flow {
            handle: HANDLE,
            delivery_count: self.received,
            link_credit: self.window,
            ..Flow::default()
        };
        let _ = self.conn.push_frame(&Frame::new(CHANNEL, flow));
    }

    /// Adds `first..=last` to the pending acknowledgements.
    fn ack_range(&mut self, first: u64, last: u64, tx: Option<u64>) {
        match &mut self.acks {
            Some(r) if r.tx == tx && r.last.checked_add(1) == Some(first) => r.last = last,
            _ => {
                self.push_acks();
                self.acks = Some(AckRange { first, last, tx });
            }
        }
    }

    /// Encodes the pending acknowledgements as one Disposition.
    fn push_acks(&mut self) {
        let Some(r) = self.acks.take() else {
            return;
        };
        let d = Disposition {
            role: Role::Receiver.into(),
            first: r.first,
            last: (r.last != r.first).then_some(r.last),
            // We need no answer: the broker settles on receipt.
            settled: true,
            txn_id: r.tx.map(|t| Decimal::new(t).as_str().to_string()),
            state: Some(DeliveryState::Accepted(Accepted {})),
        };
        let _ = self.conn.push_frame(&Frame::new(CHANNEL, d));
    }
}

/// Reads until the broker answers the Flow echo for [`HANDLE`], leaving any
/// transfer sent before it (the credit is live already) in the read buffer
/// for `receive`. A refused Attach is Attach then Detach with the error.
async fn await_echo(conn: &mut Connection) -> Result<(), DriverError> {
    let mut scanned = 0;
    let limit = conn.codec.max_inbound_frame_size();
    loop {
        while let Some(len) =
            ferromq_protocol::native::view::complete_frame_len(&conn.rbuf[scanned..], limit)
                .map_err(|e| conn.protocol_error(e))?
        {
            let bytes = &conn.rbuf[scanned..scanned + len];
            scanned += len;
            if TransferView::parse(bytes)
                .map_err(|e| conn.protocol_error(e))?
                .is_some()
            {
                continue;
            }
            // Control frames are rare: decode a copy, leave the buffer alone
            // (`receive` passes over them again).
            let mut copy = BytesMut::from(bytes);
            let frame = NativeCodec::new(u32::try_from(limit).unwrap_or(u32::MAX))
                .decode(&mut copy)
                .map_err(|e| conn.protocol_error(e))?;
            match frame.and_then(|f| f.performative) {
                Some(Performative::Flow(f)) if f.handle == HANDLE => return Ok(()),
                Some(p) => conn.control(p)?,
                None => {}
            }
        }
        conn.read_more().await?;
    }
}

impl ConsumerLink for NativeConsumer {
    async fn receive(&mut self, out: &mut Vec<Delivery>) -> Result<usize, DriverError> {
        self.ids.clear();
        loop {
            let got = self.take_buffered(out, MAX_BATCH)?;
            if got > 0 {
                return Ok(got);
            }
            // Credit (or a heart-beat) must reach the broker before we wait,
            // also for callers that never flush (the drain). Resumable if
            // cancelled; nothing decoded yet, so cancelling loses nothing.
            self.conn.flush().await?;
            match self.conn.heartbeat {
                Some(every) => {
                    if tokio::time::timeout(every, self.conn.read_more())
                        .await
                        .is_err()
                    {
                        self.conn.push_heartbeat();
                    }
                }
                None => self.conn.read_more().await?,
            }
        }
    }

    fn push_ack(&mut self, index: usize, tx: Option<u64>) {
        let Some(&id) = self.ids.get(index) else {
            return;
        };
        match self.ack {
            AckMode::Auto => {}
            AckMode::ClientIndividual => self.ack_range(id, id, tx),
            AckMode::Client => {
                // Cumulative, as STOMP's `ack:client`: everything up to `id`.
                let first = self.unacked_from.unwrap_or(id).min(id);
                self.unacked_from = Some(id + 1);
                self.ack_range(first, id, tx);
            }
        }
    }

    fn push_begin(&mut self, tx: u64) {
        self.push_acks();
        let declare = Declare {
            txn_id: Decimal::new(tx).as_str().to_string(),
            error: None,
        };
        let _ = self.conn.push_frame(&Frame::new(CHANNEL, declare));
    }

    fn push_commit(&mut self, tx: u64) {
        self.push_acks();
        let discharge = Discharge {
            txn_id: Decimal::new(tx).as_str().to_string(),
            fail: false,
            error: None,
        };
        let _ = self.conn.push_frame(&Frame::new(CHANNEL, discharge));
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        self.push_acks();
        self.conn.flush().await
    }

    async fn unsubscribe_and_close(mut self) {
        self.push_acks();
        let detach = Detach {
            handle: HANDLE,
            closed: true,
            error: None,
        };
        let conn = &mut self.conn;
        let unsubscribe = async {
            conn.push_frame(&Frame::new(CHANNEL, detach))?;
            conn.flush().await?;
            loop {
                match conn.read_frame().await?.performative {
                    Some(Performative::Detach(d)) if d.handle == HANDLE => {
                        return Ok::<(), DriverError>(())
                    }
                    Some(Performative::Close(_)) => return Ok(()),
                    _ => {}
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), unsubscribe).await;
        self.conn.close().await;
    }

    async fn close(mut self) {
        self.push_acks();
        self.conn.close().await;
    }
}
