//! A native producer link: a sender link in `MIXED` settle mode, so each
//! transfer is pre-settled unless the runner wants a receipt for it.
//! Transfers are buffered with their offsets, and a flush writes only as
//! many as the broker's credit allows, then waits for more credit.

use super::connection::{Connection, CHANNEL};
use super::{Decimal, NativeOptions, STAMP_HEADER};
use crate::driver::{DriverError, ProducerLink, ProducerSpec};
use crate::order::{Origin, PRODUCER_HEADER, SEQ_HEADER};
use bytes::Bytes;
use ferromq_protocol::native::lean::{encode_transfer_head, PropertiesRef, TransferParts};
use ferromq_protocol::native::{
    split_transfer, Attach, Declare, DeliveryState, Discharge, Disposition, Frame, Message,
    Performative, Properties, Role, SettleMode, Transfer,
};
use std::collections::{BTreeMap, VecDeque};

/// The producer's link handle (one link per connection).
const HANDLE: u32 = 0;
/// Bodies larger than this are written from the shared payload, not copied.
const SPLICE_BODY: usize = 64 * 1024;

/// What a receipt waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaited {
    /// The `accepted` Disposition of this delivery id.
    Accepted(u64),
    /// The Discharge answer of this transaction.
    Discharged(u64),
}

/// A connected sender link.
pub struct NativeProducer {
    conn: Connection,
    spec: ProducerSpec,
    next_delivery: u64,
    /// Transfers written (our delivery count).
    sent: u32,
    /// The broker allows transfers up to this delivery count.
    allowed: u32,
    /// Offsets in the write buffer of the transfers not written yet.
    starts: VecDeque<usize>,
    /// Receipts not answered yet, oldest first.
    pending: VecDeque<(u64, Awaited)>,
    /// The transaction id of `txn_text` (reused between transfers).
    txn_number: Option<u64>,
    txn_text: String,
    /// A push that could not be encoded; reported by the next flush.
    failed: Option<DriverError>,
}

impl NativeProducer {
    pub(super) async fn connect(
        options: &NativeOptions,
        endpoint: usize,
        spec: &ProducerSpec,
    ) -> Result<NativeProducer, DriverError> {
        let mut conn = Connection::open(options, endpoint, None).await?;
        let attach = Attach {
            name: "ferromq-bench-producer".into(),
            handle: HANDLE,
            role: Role::Sender.into(),
            address: spec.destination.clone(),
            settle_mode: SettleMode::Mixed.into(),
            ..Attach::default()
        };
        conn.push_frame(&Frame::new(CHANNEL, attach))?;
        conn.flush().await?;
        let mut producer = NativeProducer {
            conn,
            spec: spec.clone(),
            next_delivery: 0,
            sent: 0,
            allowed: 0,
            starts: VecDeque::new(),
            pending: VecDeque::new(),
            txn_number: None,
            txn_text: String::new(),
            failed: None,
        };
        // The answering Attach, then the first credit (a refusal is Attach
        // then Detach with the error).
        let credit = async {
            while producer.credit() == 0 {
                producer.conn.read_more().await?;
                producer.take_incoming()?;
            }
            Ok::<(), DriverError>(())
        };
        tokio::time::timeout(options.connect_timeout, credit)
            .await
            .map_err(|_| DriverError::Timeout {
                endpoint: producer.conn.endpoint.clone(),
                what: "credit for the sender link",
            })??;
        Ok(producer)
    }

    /// Transfers the broker still allows.
    fn credit(&self) -> u32 {
        let left = self.allowed.wrapping_sub(self.sent);
        if (left as i32) < 0 {
            0
        } else {
            left
        }
    }

    /// Handles every whole frame in the read buffer.
    fn take_incoming(&mut self) -> Result<(), DriverError> {
        while let Some(frame) = self.conn.decode()? {
            let Some(p) = frame.performative else {
                continue;
            };
            match p {
                Performative::Flow(f) if f.handle == HANDLE => {
                    self.allowed = f.delivery_count.wrapping_add(f.link_credit);
                }
                Performative::Disposition(d) if d.role() == Role::Receiver => self.settled(&d)?,
                Performative::Discharge(d) if d.error.is_none() => {
                    if let Ok(txn) = d.txn_id.parse::<u64>() {
                        self.pending.retain(|(_, a)| *a != Awaited::Discharged(txn));
                    }
                }
                other => self.conn.control(other)?,
            }
        }
        Ok(())
    }

    fn settled(&mut self, d: &Disposition) -> Result<(), DriverError> {
        let ids = d.delivery_ids();
        if let Some(DeliveryState::Rejected(r)) = &d.state {
            let why = r
                .error
                .as_ref()
                .map_or_else(|| "no reason given".to_string(), ToString::to_string);
            return Err(DriverError::Broker {
                endpoint: self.conn.endpoint.clone(),
                message: format!("transfer {} rejected: {why}", d.first),
            });
        }
        self.pending.retain(|(_, a)| match a {
            Awaited::Accepted(id) => !ids.contains(id),
            Awaited::Discharged(_) => true,
        });
        Ok(())
    }

    fn txn(&mut self, tx: u64) -> &str {
        if self.txn_number != Some(tx) {
            self.txn_number = Some(tx);
            self.txn_text.clear();
            self.txn_text.push_str(Decimal::new(tx).as_str());
        }
        &self.txn_text
    }

    /// A transfer too large for one frame: built as a prost Transfer and
    /// split (allocates, but only messages above the broker's frame size
    /// get here).
    fn push_split(
        &mut self,
        delivery_id: u64,
        headers: &[(&str, &str)],
        settled: bool,
        tx: Option<u64>,
    ) {
        let txn_id = tx.map(|t| self.txn(t).to_string());
        let transfer = Transfer {
            handle: HANDLE,
            delivery_id,
            settled,
            message: Some(Message {
                properties: self.spec.persistent.then(|| Properties {
                    persistent: true,
                    ..Properties::default()
                }),
                application_headers: headers
                    .iter()
                    .map(|&(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                body: Bytes::copy_from_slice(&self.spec.body),
            }),
            txn_id,
            ..Transfer::default()
        };
        let limit = self.conn.codec.max_outbound_frame_size();
        let pieces = match split_transfer(CHANNEL, transfer, limit) {
            Ok(pieces) => pieces,
            Err(e) => {
                self.failed = Some(self.conn.protocol_error(e));
                return;
            }
        };
        for piece in pieces {
            if let Err(e) = self.conn.push_frame(&piece) {
                self.failed = Some(e);
                return;
            }
        }
    }
}

impl ProducerLink for NativeProducer {
    fn push_send(
        &mut self,
        stamp_ns: u64,
        origin: Option<Origin>,
        tx: Option<u64>,
        receipt: Option<u64>,
    ) {
        let delivery_id = self.next_delivery;
        self.next_delivery += 1;
        let settled = receipt.is_none();
        if let Some(r) = receipt {
            self.pending.push_back((r, Awaited::Accepted(delivery_id)));
        }
        self.starts.push_back(self.conn.wbuf.len());
        let stamp = Decimal::new(stamp_ns);
        if let Some(t) = tx {
            self.txn(t);
        }
        let producer = Decimal::new(origin.map_or(0, |o| o.producer));
        let seq = Decimal::new(origin.map_or(0, |o| o.seq));
        let all = [
            (STAMP_HEADER, stamp.as_str()),
            (PRODUCER_HEADER, producer.as_str()),
            (SEQ_HEADER, seq.as_str()),
        ];
        let headers = &all[..if origin.is_some() { 3 } else { 1 }];
        let parts = TransferParts {
            channel: CHANNEL,
            handle: HANDLE,
            delivery_id,
            delivery_tag: &[],
            settled,
            txn_id: tx.map(|_| self.txn_text.as_str()),
            properties: self.spec.persistent.then_some(PropertiesRef {
                persistent: true,
                ..PropertiesRef::default()
            }),
            headers: || headers.iter().copied(),
        };
        let body = &self.spec.body;
        let limit = self.conn.codec.max_outbound_frame_size();
        match encode_transfer_head(&parts, body.len(), limit, &mut self.conn.wbuf) {
            Ok(_) if body.len() > SPLICE_BODY => self.conn.splice(body.clone()),
            Ok(_) => self.conn.wbuf.extend_from_slice(body),
            Err(_) => self.push_split(delivery_id, headers, settled, tx),
        }
    }

    fn push_begin(&mut self, tx: u64) {
        let declare = Declare {
            txn_id: self.txn(tx).to_string(),
            error: None,
        };
        if let Err(e) = self.conn.push_frame(&Frame::new(CHANNEL, declare)) {
            self.failed = Some(e);
        }
    }

    fn push_commit(&mut self, tx: u64, receipt: Option<u64>) {
        let discharge = Discharge {
            txn_id: self.txn(tx).to_string(),
            fail: false,
            error: None,
        };
        if let Some(r) = receipt {
            self.pending.push_back((r, Awaited::Discharged(tx)));
        }
        if let Err(e) = self.conn.push_frame(&Frame::new(CHANNEL, discharge)) {
            self.failed = Some(e);
        }
    }

    fn buffered(&self) -> usize {
        self.conn.buffered()
    }

    async fn flush(&mut self) -> Result<(), DriverError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        loop {
            let credit = self.credit() as usize;
            if credit >= self.starts.len() {
                self.conn.flush().await?;
                self.sent = self.sent.wrapping_add(self.starts.len() as u32);
                self.starts.clear();
                return Ok(());
            }
            if credit > 0 {
                // Everything before the first transfer past the credit.
                let limit = self.starts[credit];
                self.conn.write_until(limit).await?;
                self.starts.drain(..credit);
                self.sent = self.sent.wrapping_add(credit as u32);
            } else if let Some(&first) = self.starts.front() {
                // Declares and Discharges ahead of the transfers may go.
                self.conn.write_until(first).await?;
            }
            // Producer flow control: the broker grants more once it has
            // room for the destination.
            self.conn.read_more().await?;
            self.take_incoming()?;
        }
    }

    async fn wait_receipt(&mut self, id: u64) -> Result<(), DriverError> {
        loop {
            self.take_incoming()?;
            if !self.pending.iter().any(|(r, _)| *r == id) {
                return Ok(());
            }
            self.conn.read_more().await?;
        }
    }

    async fn check_incoming(&mut self) -> Result<(), DriverError> {
        self.conn.read_ready().await?;
        self.take_incoming()
    }

    async fn close(self) {
        self.conn.close().await;
    }
}
