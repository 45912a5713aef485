//! Body files, the accounting side: how many live bodies each segment file
//! holds, kept as `B` records ([`super::record`]) that the state machine
//! writes in the same `sled::Batch` as the message records they count.
//!
//! A message whose body is in a file names its segment and the body's
//! length in its seq index entry (`S`, [`super::record::SeqEntry`]), so an
//! ack finds what to uncount without reading the message record. Each
//! segment with a live body has one `B` record: its live bodies, their
//! bytes, and `end`, the furthest byte any durable record referred to in
//! it. Recovery reads these records (one per segment file, not one per
//! message) and nothing else about bodies; [`super::body_reclaim`] decides
//! from them which files go at open and after each flush.
//!
//! Since the counts are written in the batch that changes them, a segment
//! without a `B` record has no live body in the durable state: deleting it
//! is safe once that state is flushed.

use super::entry::BodyRef;
use super::record::{self, BODY_PREFIX};
use super::state_machine::Records;
use std::collections::BTreeMap;

/// One segment's `B` record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentCount {
    /// Live bodies in it.
    pub live: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The furthest byte a record applied while it had live bodies
    /// referred to: what follows is a torn tail (see
    /// [`super::body_reclaim`]).
    pub end: u64,
}

impl SegmentCount {
    fn encode(&self) -> [u8; 24] {
        let mut v = [0u8; 24];
        v[..8].copy_from_slice(&self.live.to_be_bytes());
        v[8..16].copy_from_slice(&self.bytes.to_be_bytes());
        v[16..].copy_from_slice(&self.end.to_be_bytes());
        v
    }

    fn decode(raw: &[u8]) -> Option<SegmentCount> {
        Some(SegmentCount {
            live: record::decode_u64(raw.get(..8)?)?,
            bytes: record::decode_u64(raw.get(8..16)?)?,
            end: record::decode_u64(raw.get(16..24)?)?,
        })
    }
}

/// The key of segment `id`'s count.
fn key(id: u32) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = BODY_PREFIX;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The segments holding live bodies (the `B` records, mirrored in memory:
/// one entry per segment file, not per message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyCounts {
    segments: BTreeMap<u32, SegmentCount>,
    /// Bytes of all live bodies in files.
    bytes: u64,
}

impl BodyCounts {
    /// Reads the `B` records.
    pub fn recover(tree: &sled::Tree) -> Result<BodyCounts, String> {
        let mut counts = BodyCounts::default();
        for item in tree.scan_prefix([BODY_PREFIX]) {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let id = k
                .get(1..5)
                .and_then(|raw| raw.try_into().ok())
                .map(u32::from_be_bytes)
                .filter(|_| k.len() == 5)
                .ok_or("malformed body file count key")?;
            let count = SegmentCount::decode(&v).ok_or("malformed body file count")?;
            counts.bytes += count.bytes;
            counts.segments.insert(id, count);
        }
        Ok(counts)
    }

    /// Counts a body written to a file; `touched` collects the segments
    /// whose record [`BodyCounts::write`] must write.
    pub fn add(&mut self, r: &BodyRef, touched: &mut Vec<u32>) {
        let c = self.segments.entry(r.segment).or_default();
        c.live += 1;
        c.bytes += r.len;
        c.end = c.end.max(r.offset.saturating_add(r.len));
        self.bytes += r.len;
        touched.push(r.segment);
    }

    /// Uncounts a body of `len` bytes in `segment` (its message is gone).
    pub fn remove(&mut self, segment: u32, len: u64, touched: &mut Vec<u32>) {
        if let Some(c) = self.segments.get_mut(&segment) {
            c.live = c.live.saturating_sub(1);
            c.bytes -= len.min(c.bytes);
            self.bytes -= len.min(self.bytes);
        }
        touched.push(segment);
    }

    /// Writes the `B` records of the segments in `touched`, removing those
    /// without a live body: once per batch.
    pub fn write(&mut self, mut touched: Vec<u32>, records: &mut impl Records) {
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            match self.segments.get(&id) {
                Some(c) if c.live > 0 => records.put(&key(id), &c.encode()),
                _ => {
                    self.segments.remove(&id);
                    records.remove(&key(id));
                }
            }
        }
    }

    /// Segment `id`'s count, if it holds a live body.
    pub fn get(&self, id: u32) -> Option<&SegmentCount> {
        self.segments.get(&id)
    }

    /// The segments holding live bodies, in order.
    pub fn segments(&self) -> impl Iterator<Item = (u32, &SegmentCount)> {
        self.segments.iter().map(|(id, c)| (*id, c))
    }

    /// Bytes of live bodies in files.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(segment: u32, offset: u64, len: u64) -> BodyRef {
        BodyRef {
            segment,
            offset,
            len,
            crc: 0,
        }
    }

    #[test]
    fn counts_follow_adds_and_removes_and_empty_segments_lose_their_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(dir.path());
        let mut counts = BodyCounts::default();
        let mut records = crate::store::state_machine::SledRecords::new(&db);
        let mut touched = Vec::new();
        counts.add(&r(1, 0, 100), &mut touched);
        counts.add(&r(1, 100, 50), &mut touched);
        counts.add(&r(2, 0, 10), &mut touched);
        counts.write(std::mem::take(&mut touched), &mut records);
        db.apply_batch(records.into_batch()).unwrap();
        let again = BodyCounts::recover(&db).unwrap();
        assert_eq!(again, counts);
        assert_eq!(
            again.get(1),
            Some(&SegmentCount {
                live: 2,
                bytes: 150,
                end: 150
            })
        );
        assert_eq!(again.bytes(), 160);
        let mut records = crate::store::state_machine::SledRecords::new(&db);
        counts.remove(2, 10, &mut touched);
        counts.remove(1, 100, &mut touched);
        counts.write(std::mem::take(&mut touched), &mut records);
        db.apply_batch(records.into_batch()).unwrap();
        let again = BodyCounts::recover(&db).unwrap();
        assert_eq!(again, counts);
        assert_eq!(again.get(2), None, "no live body: no record");
        let one = again.get(1).unwrap();
        assert_eq!((one.live, one.bytes, one.end), (1, 50, 150));
        assert_eq!(db.scan_prefix([BODY_PREFIX]).count(), 1);
    }

    #[test]
    fn a_malformed_record_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::test_db::open(dir.path());
        db.insert(key(3), &b"short"[..]).unwrap();
        let e = BodyCounts::recover(&db).unwrap_err();
        assert!(e.contains("malformed body file count"), "{e}");
    }
}
