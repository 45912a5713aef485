//! The store's snapshot image in cluster mode, written and read in bounded
//! frames: what [`super::replicated::ReplicatedState`] hands the cluster
//! to ship to a follower that is too far behind, and reads back when it
//! installs one.
//!
//! The image is a sequence of frames, each a big-endian `u32` length and
//! an [`EncodedBatch`] of at most [`FRAME_ENTRIES`] entries or about
//! [`FRAME_BYTES`] bytes (one larger message makes a frame of its own),
//! ended by a zero-length frame. The entries are the live messages in
//! queue order (lane by lane, each lane in log order: one scan of the `Q`
//! records, which hold the records since store format 6), each followed by
//! its delivery count when it has one, then the router metadata; installing
//! it is applying those batches in order. A lane's order is all a queue's
//! cursor reads back, so the order between lanes is not kept (the
//! installed store numbers the messages afresh either way). The end marker
//! is what tells a complete image from a truncated one.
//!
//! Memory: writing holds one frame (the store is read with one ordered
//! scan and a point read of each message's delivery count, not collected);
//! reading holds one frame. Neither grows with the number of messages
//! stored.

use std::io::{Read, Write};

use prost::Message as _;

use super::entry::{Delivered, EncodedBatch, Entry, Kind, Put, StoredMessage, FORMAT};
use super::record::{self, QueueValue, DELIVERED_PREFIX, META_PREFIX, QUEUE_PREFIX};

/// Entries per frame, at most.
pub const FRAME_ENTRIES: usize = 512;
/// Bytes per frame past which the frame is closed (a single larger message
/// still goes whole into a frame of its own).
pub const FRAME_BYTES: usize = 1024 * 1024;
/// The largest frame a reader accepts: a corrupt length must not make it
/// allocate without bound. Above any message the broker accepts.
const MAX_FRAME: u32 = 1 << 30;

/// What writing an image produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImageStats {
    /// Frames written (the end marker not counted).
    pub frames: u64,
    /// Live messages in the image.
    pub messages: u64,
    /// Bytes written, end marker included.
    pub bytes: u64,
}

/// Collects entries into frames and writes each when it is full.
struct FrameWriter<'a> {
    out: &'a mut dyn Write,
    max_seq: u64,
    entries: Vec<Entry>,
    pending: usize,
    stats: ImageStats,
}

impl FrameWriter<'_> {
    fn push(&mut self, entry: Entry) -> Result<(), String> {
        self.pending += entry.encoded_len();
        self.entries.push(entry);
        if self.entries.len() >= FRAME_ENTRIES || self.pending >= FRAME_BYTES {
            self.flush_frame()?;
        }
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<(), String> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let frame = EncodedBatch {
            format: FORMAT,
            max_seq: self.max_seq,
            entries: std::mem::take(&mut self.entries),
        }
        .to_bytes();
        self.pending = 0;
        self.write_frame(&frame)?;
        self.stats.frames += 1;
        Ok(())
    }

    fn write_frame(&mut self, frame: &[u8]) -> Result<(), String> {
        let len = u32::try_from(frame.len())
            .ok()
            .filter(|len| *len <= MAX_FRAME)
            .ok_or_else(|| format!("a snapshot frame of {} bytes is too large", frame.len()))?;
        self.out
            .write_all(&len.to_be_bytes())
            .and_then(|()| self.out.write_all(frame))
            .map_err(|e| format!("writing the snapshot image: {e}"))?;
        self.stats.bytes += 4 + frame.len() as u64;
        Ok(())
    }
}

/// Writes the image of the store `tree` (whose highest seq is `max_seq`)
/// to `out`. The caller keeps the store still meanwhile (no apply runs),
/// so the image is the state at one index.
pub fn write(tree: &sled::Tree, max_seq: u64, out: &mut dyn Write) -> Result<ImageStats, String> {
    let mut frames = FrameWriter {
        out,
        max_seq,
        entries: Vec::new(),
        pending: 0,
        stats: ImageStats::default(),
    };
    for item in tree.scan_prefix([QUEUE_PREFIX]) {
        let (key, value) = item.map_err(|e| format!("reading the store: {e}"))?;
        // A `Q` key ends with the message's log index.
        let index = key
            .len()
            .checked_sub(8)
            .and_then(|at| record::decode_u64(&key[at..]))
            .ok_or("malformed queue order key")?;
        let value = QueueValue::decode(&value)
            .ok_or_else(|| format!("message at log index {index}: malformed queue value"))?;
        let message = StoredMessage::decode_record(value.record)
            .map_err(|e| format!("message at log index {index}: {e}"))?;
        let seq = message.seq;
        if message.body_ref.is_some() {
            // Body files are a single node's layout; a replicated store
            // keeps its bodies inline (super::replicated).
            return Err(format!(
                "message {seq} has its body in a body file: a snapshot carries bodies inline"
            ));
        }
        // Delivery counts are keyed by log index too, but the `Q` scan is
        // in lane order, not log order: one point read per message.
        let delivered = match tree
            .get(record::key(DELIVERED_PREFIX, index))
            .map_err(|e| format!("reading the store: {e}"))?
        {
            Some(count) => record::decode_u32(&count).ok_or("malformed delivery count")?,
            None => 0,
        };
        frames.push(Entry {
            kind: Some(Kind::Enqueue(message)),
        })?;
        frames.stats.messages += 1;
        if delivered > 0 {
            frames.push(Entry {
                kind: Some(Kind::Delivered(Delivered {
                    seq,
                    count: delivered,
                })),
            })?;
        }
    }
    for item in tree.scan_prefix([META_PREFIX]) {
        let (key, value) = item.map_err(|e| format!("reading the store: {e}"))?;
        let name = std::str::from_utf8(&key[1..]).map_err(|_| "metadata key is not UTF-8")?;
        frames.push(Entry {
            kind: Some(Kind::Put(Put {
                key: name.to_string(),
                value: bytes::Bytes::copy_from_slice(&value),
            })),
        })?;
    }
    frames.flush_frame()?;
    // The end marker: a reader that does not find it refuses the image.
    frames.write_frame(&[])?;
    Ok(frames.stats)
}

/// Reads the next frame of an image: `Ok(None)` at the end marker.
/// An image that ends without it (truncated) is an error.
pub fn read_frame(input: &mut dyn Read) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    input
        .read_exact(&mut len)
        .map_err(|e| format!("reading a snapshot frame's length (truncated image?): {e}"))?;
    let len = u32::from_be_bytes(len);
    if len == 0 {
        return Ok(None);
    }
    if len > MAX_FRAME {
        return Err(format!("a snapshot frame claims {len} bytes: not an image"));
    }
    let mut frame = vec![0u8; len as usize];
    input
        .read_exact(&mut frame)
        .map_err(|e| format!("reading a snapshot frame of {len} bytes (truncated image?): {e}"))?;
    Ok(Some(frame))
}
