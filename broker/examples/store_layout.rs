//! `store_layout`: what the durable store's write pattern costs the disk per
//! message, for the layouts and sled settings weighed in issue 19 ("fewer
//! bytes per message"). docs/store-layout.md has the method and results.
//!
//! It does not run the broker. It replays the log writer's pattern on a sled
//! database of its own: one `apply_batch` and one `flush` per group commit of
//! `--per-flush` messages (1 = one producer, 10 = ten producers), then drains
//! the messages again the way a consumer does (a delivery mark, then an ack
//! that deletes the records). One thread writes, as the broker's one log
//! writer thread does, so the figures are the store's and not a client's.
//!
//! Bytes written are this process's `write_bytes` from /proc/self/io: the
//! page-cache pages it dirtied (4 KiB each, counted once per dirtying). That
//! is a count, not a rate, so it holds on a machine busy with other work.
//! It does not include the file system's journal, for any layout.
//!
//! Layouts (`--layout`):
//! - `current`: today's format 1 (broker/src/store/record.rs): one record per
//!   message under `'M'` + log index, delivery counts under `'D'`, the
//!   applied index and highest seq rewritten per batch, acks as deletes.
//! - `log`: issue 15's shape: one encoded batch record per flush under
//!   `'L'` + batch index, plus the derived records (the message record by
//!   seq, delivery counts, meta): every body is written twice. Log records
//!   older than `--log-keep` batches are purged.
//! - `log-ref`: as `log`, but the derived record of a message is a small
//!   reference (batch, offset, length) into its log record: every body is
//!   written once. A log record is purged once it is older than
//!   `--log-keep` batches and none of its messages is live.
//! - `files`: as `log-ref`, but bodies longer than `--inline-max` go to an
//!   append-only body file (one per `--file-segment` bytes), synced before the
//!   sled batch that refers to them; a file is deleted once none of its
//!   bodies is live.
//! - `wal`: not sled as the log: the encoded batch record (bodies inline) is
//!   appended to a log file and synced per batch, the commit point; sled
//!   holds only the derived references and is flushed every
//!   `--index-flush-every` batches (recovery would replay the file past
//!   sled's applied index). This measures the floor of a plain append.
//!   With `--index-per-commit`, sled gets one reference per log record
//!   instead of one per message, and delivery marks as a cursor per
//!   commit (the drain is in order): the index of issue 19's paged queue
//!   kept per commit, with keys of their own only for exceptions.

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn Error>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Layout {
    Current,
    Log,
    LogRef,
    Files,
    Wal,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    LowSpace,
    HighThroughput,
}

/// The options; each names one thing compared in docs/store-layout.md.
#[derive(Parser, Debug)]
#[command(about = "Measures bytes written per message for store layouts")]
struct Args {
    #[arg(long, value_enum, default_value = "current")]
    layout: Layout,
    /// Messages written (and drained).
    #[arg(long, default_value_t = 50_000)]
    messages: u64,
    /// Messages per group commit (one `flush` each).
    #[arg(long, default_value_t = 1)]
    per_flush: usize,
    /// Body bytes per message.
    #[arg(long, default_value_t = 1024)]
    body: usize,
    /// Destinations the messages are spread over (round robin).
    #[arg(long, default_value_t = 10)]
    destinations: usize,
    /// sled `Config::mode`.
    #[arg(long, value_enum, default_value = "low-space")]
    mode: Mode,
    /// sled `Config::segment_size` (power of two, at most 16 MiB).
    #[arg(long, default_value_t = 512 * 1024)]
    segment_size: usize,
    /// sled `Config::cache_capacity` (the broker uses store.memory_limit / 2).
    #[arg(long, default_value_t = 128 << 20)]
    cache: u64,
    /// sled `Config::use_compression` (needs sled's `compression` feature).
    #[arg(long)]
    compression: bool,
    /// sled `Config::flush_every_ms` (the broker uses none).
    #[arg(long)]
    flush_every_ms: Option<u64>,
    /// `files`: bodies up to this many bytes stay in the sled log record.
    #[arg(long, default_value_t = 0)]
    inline_max: usize,
    /// `files`: bytes per body file before the next one is started.
    #[arg(long, default_value_t = 64 << 20)]
    file_segment: u64,
    /// `log`, `log-ref`, `files`: log records kept behind the newest.
    #[arg(long, default_value_t = 1024)]
    log_keep: u64,
    /// `wal`: batches between two sled flushes.
    #[arg(long, default_value_t = 100)]
    index_flush_every: u64,
    /// `wal`: one sled reference per log record, not per message.
    #[arg(long)]
    index_per_commit: bool,
    /// Working directory (emptied before and removed after the run).
    #[arg(long, default_value = "target/store-layout-data")]
    dir: PathBuf,
    /// Appends the result line (JSON) to this file too.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Free text carried into the result line (e.g. the run number).
    #[arg(long, default_value = "")]
    label: String,
}

/// A stored message, as the store sees it.
struct Msg {
    seq: u64,
    destination: String,
    priority: u8,
    expires: u64,
    timestamp: u64,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Where a live message's bytes are, for its ack.
#[derive(Clone, Copy)]
struct Live {
    /// Key of its derived record: the log index (`current`) or its seq.
    key: u64,
    /// The log batch that holds it (0: none).
    batch: u64,
    /// The body file that holds its body (`u64::MAX`: none).
    file: u64,
}

const APPLIED_KEY: &[u8] = b"\x00applied";
const MAX_SEQ_KEY: &[u8] = b"\x00max_seq";

fn key(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

/// Today's message record, byte for byte as record.rs writes it.
fn record_v1(m: &Msg) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + m.body.len());
    out.push(1);
    out.extend_from_slice(&m.seq.to_be_bytes());
    out.push(m.priority);
    out.extend_from_slice(&m.expires.to_be_bytes());
    out.extend_from_slice(&m.timestamp.to_be_bytes());
    out.extend_from_slice(&(m.destination.len() as u16).to_be_bytes());
    out.extend_from_slice(m.destination.as_bytes());
    out.extend_from_slice(&(m.headers.len() as u32).to_be_bytes());
    for (k, v) in &m.headers {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&(m.body.len() as u32).to_be_bytes());
    out.extend_from_slice(&m.body);
    out
}

/// Protocol-buffers wire format, written by hand: what prost emits for the
/// same messages, byte for byte in size, without adding prost to the broker.
mod pb {
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    pub fn varint_len(v: u64) -> usize {
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    pub fn uint(out: &mut Vec<u8>, field: u64, v: u64) {
        if v != 0 {
            varint(out, field << 3);
            varint(out, v);
        }
    }

    pub fn uint_len(field: u64, v: u64) -> usize {
        if v == 0 {
            0
        } else {
            varint_len(field << 3) + varint_len(v)
        }
    }

    /// A length-delimited field's tag and length (the bytes follow).
    pub fn open(out: &mut Vec<u8>, field: u64, len: usize) {
        varint(out, (field << 3) | 2);
        varint(out, len as u64);
    }

    pub fn delimited_len(field: u64, len: usize) -> usize {
        varint_len((field << 3) | 2) + varint_len(len as u64) + len
    }

    pub fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        open(out, field, b.len());
        out.extend_from_slice(b);
    }
}

/// What a body is in a log record: its bytes, or where a body file has it.
enum BodyIn<'a> {
    Inline(&'a [u8]),
    File { file: u64, offset: u64, len: u64 },
}

/// One log entry, as issue 15 encodes it.
enum Entry<'a> {
    Enqueue(&'a Msg, BodyIn<'a>),
    Delivered { seq: u64, count: u32 },
    Ack { destination: &'a str, seq: u64 },
}

/// `Enqueue { seq=1, destination=2, priority=3, expires=4, timestamp=5,
/// headers=6 (name=1, value=2), body=7 | body_ref=8 (file, offset, len) }`.
fn enqueue_len(m: &Msg, body: &BodyIn<'_>) -> usize {
    let headers: usize = m
        .headers
        .iter()
        .map(|(k, v)| {
            pb::delimited_len(
                6,
                pb::delimited_len(1, k.len()) + pb::delimited_len(2, v.len()),
            )
        })
        .sum();
    let body = match body {
        BodyIn::Inline(b) => pb::delimited_len(7, b.len()),
        BodyIn::File { file, offset, len } => pb::delimited_len(
            8,
            pb::uint_len(1, *file) + pb::uint_len(2, *offset) + pb::uint_len(3, *len),
        ),
    };
    pb::uint_len(1, m.seq)
        + pb::delimited_len(2, m.destination.len())
        + pb::uint_len(3, u64::from(m.priority))
        + pb::uint_len(4, m.expires)
        + pb::uint_len(5, m.timestamp)
        + headers
        + body
}

/// Encodes `Batch { format=1, index=2, entries=3 (Entry { enqueue=1 |
/// delivered=2 | ack=3 }) }`; returns it with the offset of each inline
/// body (in entry order; 0 for entries without one).
fn encode_batch(index: u64, entries: &[Entry<'_>]) -> (Vec<u8>, Vec<usize>) {
    // Sized up front: a batch of 10 MB bodies must not be copied while
    // the vector grows (the real writer would not copy bodies at all).
    let capacity: usize = entries
        .iter()
        .map(|e| match e {
            Entry::Enqueue(m, body) => {
                pb::delimited_len(3, pb::delimited_len(1, enqueue_len(m, body)))
            }
            _ => 48,
        })
        .sum();
    let mut out = Vec::with_capacity(capacity + 24);
    let mut offsets = Vec::with_capacity(entries.len());
    pb::uint(&mut out, 1, 1);
    pb::uint(&mut out, 2, index);
    for e in entries {
        match e {
            Entry::Enqueue(m, body) => {
                let inner = enqueue_len(m, body);
                pb::open(&mut out, 3, pb::delimited_len(1, inner));
                pb::open(&mut out, 1, inner);
                pb::uint(&mut out, 1, m.seq);
                pb::bytes(&mut out, 2, m.destination.as_bytes());
                pb::uint(&mut out, 3, u64::from(m.priority));
                pb::uint(&mut out, 4, m.expires);
                pb::uint(&mut out, 5, m.timestamp);
                for (k, v) in &m.headers {
                    pb::open(
                        &mut out,
                        6,
                        pb::delimited_len(1, k.len()) + pb::delimited_len(2, v.len()),
                    );
                    pb::bytes(&mut out, 1, k.as_bytes());
                    pb::bytes(&mut out, 2, v.as_bytes());
                }
                match body {
                    BodyIn::Inline(b) => {
                        pb::bytes(&mut out, 7, b);
                        offsets.push(out.len() - b.len());
                    }
                    BodyIn::File { file, offset, len } => {
                        let inner = pb::uint_len(1, *file)
                            + pb::uint_len(2, *offset)
                            + pb::uint_len(3, *len);
                        pb::open(&mut out, 8, inner);
                        pb::uint(&mut out, 1, *file);
                        pb::uint(&mut out, 2, *offset);
                        pb::uint(&mut out, 3, *len);
                        offsets.push(0);
                    }
                }
            }
            Entry::Delivered { seq, count } => {
                let inner = pb::uint_len(1, *seq) + pb::uint_len(2, u64::from(*count));
                pb::open(&mut out, 3, pb::delimited_len(2, inner));
                pb::open(&mut out, 2, inner);
                pb::uint(&mut out, 1, *seq);
                pb::uint(&mut out, 2, u64::from(*count));
                offsets.push(0);
            }
            Entry::Ack { destination, seq } => {
                let inner = pb::delimited_len(1, destination.len()) + pb::uint_len(2, *seq);
                pb::open(&mut out, 3, pb::delimited_len(3, inner));
                pb::open(&mut out, 3, inner);
                pb::bytes(&mut out, 1, destination.as_bytes());
                pb::uint(&mut out, 2, *seq);
                offsets.push(0);
            }
        }
    }
    (out, offsets)
}

/// The derived record of a message whose body stays elsewhere:
/// `batch u64 | offset u32 | len u32 | file u64 | priority u8 | expires u64`
/// (headers are read from the log record, like the body).
fn reference(batch: u64, offset: u64, len: u64, file: u64, m: &Msg) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    out.extend_from_slice(&batch.to_be_bytes());
    out.extend_from_slice(&(offset as u32).to_be_bytes());
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&file.to_be_bytes());
    out.push(m.priority);
    out.extend_from_slice(&m.expires.to_be_bytes());
    out
}

/// sled writes of one commit, in order (a `sled::Batch` cannot be merged).
#[derive(Default)]
struct Ops(Vec<(sled::IVec, Option<sled::IVec>)>);

impl Ops {
    fn insert(&mut self, k: impl Into<sled::IVec>, v: impl Into<sled::IVec>) {
        self.0.push((k.into(), Some(v.into())));
    }

    fn remove(&mut self, k: impl Into<sled::IVec>) {
        self.0.push((k.into(), None));
    }
}

/// The store under test: a sled database and, for `files`, body files.
struct Store {
    args: Args,
    db: sled::Db,
    /// Next log index (`current`: one per entry) or batch index (others).
    next_index: u64,
    max_seq: u64,
    live: HashMap<u64, Live>,
    /// Live messages per log batch, for purging (`log-ref`, `files`).
    batch_refs: HashMap<u64, u32>,
    /// Log batches not purged yet, oldest first.
    unpurged: VecDeque<u64>,
    /// Body files: the one being appended (number, file, length).
    body_file: Option<(u64, File, u64)>,
    /// Live bodies per body file.
    file_refs: HashMap<u64, u32>,
    /// sled writes not applied yet (`wal`).
    pending: Ops,
    /// Group commits, and sled flushes.
    batches: u64,
    flushes: u64,
    file_syncs: u64,
}

fn open_db(args: &Args) -> Res<sled::Db> {
    let mode = match args.mode {
        Mode::LowSpace => sled::Mode::LowSpace,
        Mode::HighThroughput => sled::Mode::HighThroughput,
    };
    Ok(sled::Config::new()
        .path(args.dir.join("sled"))
        .mode(mode)
        .segment_size(args.segment_size)
        .cache_capacity(args.cache)
        .use_compression(args.compression)
        .flush_every_ms(args.flush_every_ms)
        .open()?)
}

impl Store {
    fn body_path(&self, n: u64) -> PathBuf {
        self.args.dir.join(format!("bodies-{n:08}.dat"))
    }

    /// Appends `body` to the current body file; returns (file, offset).
    fn append_body(&mut self, body: &[u8]) -> Res<(u64, u64)> {
        let (n, at) = self.append_raw(body)?;
        *self.file_refs.entry(n).or_insert(0) += 1;
        Ok((n, at))
    }

    /// Appends `raw` to the current body (or log) file; returns (file, offset).
    fn append_raw(&mut self, raw: &[u8]) -> Res<(u64, u64)> {
        let roll = match &self.body_file {
            Some((_, _, len)) => *len >= self.args.file_segment,
            None => true,
        };
        if roll {
            let n = self.body_file.as_ref().map_or(0, |(n, _, _)| n + 1);
            let path = self.body_path(n);
            let f = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            self.body_file = Some((n, f, 0));
        }
        let (n, f, len) = self.body_file.as_mut().ok_or("no body file")?;
        f.write_all(raw)?;
        let at = *len;
        *len += raw.len() as u64;
        Ok((*n, at))
    }

    /// Writes one group commit of new messages.
    fn write(&mut self, msgs: &[Msg]) -> Res<()> {
        let mut batch = Ops::default();
        match self.args.layout {
            Layout::Current => {
                for m in msgs {
                    let index = self.next_index;
                    self.next_index += 1;
                    batch.insert(&key(b'M', index), record_v1(m));
                    self.live.insert(
                        m.seq,
                        Live {
                            key: index,
                            batch: 0,
                            file: u64::MAX,
                        },
                    );
                }
                batch.insert(APPLIED_KEY, &(self.next_index - 1).to_be_bytes());
            }
            Layout::Wal => {
                let index = self.next_index;
                self.next_index += 1;
                let entries: Vec<Entry<'_>> = msgs
                    .iter()
                    .map(|m| Entry::Enqueue(m, BodyIn::Inline(&m.body)))
                    .collect();
                let (raw, offsets) = encode_batch(index, &entries);
                // Durability ordering: the log file is the commit point;
                // sled's references are derived and may lag behind it.
                let (file, at) = self.append_raw(&raw)?;
                self.sync_log()?;
                *self.file_refs.entry(file).or_insert(0) += msgs.len() as u32;
                let per_commit = self.args.index_per_commit;
                if let (true, Some(first)) = (per_commit, msgs.first()) {
                    let r = reference(index, at, raw.len() as u64, file, first);
                    batch.insert(&key(b'B', index), r);
                    self.batch_refs.insert(index, msgs.len() as u32);
                }
                for (m, offset) in msgs.iter().zip(offsets) {
                    if !per_commit {
                        let r = reference(index, at + offset as u64, m.body.len() as u64, file, m);
                        batch.insert(&key(b'M', m.seq), r);
                    }
                    self.live.insert(
                        m.seq,
                        Live {
                            key: m.seq,
                            batch: index,
                            file,
                        },
                    );
                }
                batch.insert(APPLIED_KEY, &index.to_be_bytes());
            }
            Layout::Log | Layout::LogRef | Layout::Files => {
                let index = self.next_index;
                self.next_index += 1;
                let mut entries = Vec::with_capacity(msgs.len());
                let mut files = Vec::with_capacity(msgs.len());
                for m in msgs {
                    let to_file =
                        self.args.layout == Layout::Files && m.body.len() > self.args.inline_max;
                    if to_file {
                        let (file, offset) = self.append_body(&m.body)?;
                        files.push(file);
                        entries.push(Entry::Enqueue(
                            m,
                            BodyIn::File {
                                file,
                                offset,
                                len: m.body.len() as u64,
                            },
                        ));
                    } else {
                        files.push(u64::MAX);
                        entries.push(Entry::Enqueue(m, BodyIn::Inline(&m.body)));
                    }
                }
                // Durability ordering: the bodies are on disk before the
                // sled record that refers to them can be.
                if let Some((_, f, _)) = &self.body_file {
                    if files.iter().any(|f| *f != u64::MAX) {
                        f.sync_data()?;
                        self.file_syncs += 1;
                    }
                }
                let (raw, offsets) = encode_batch(index, &entries);
                batch.insert(&key(b'L', index), raw);
                for ((m, offset), file) in msgs.iter().zip(offsets).zip(files) {
                    let derived = match self.args.layout {
                        Layout::Log => record_v1(m),
                        _ => reference(index, offset as u64, m.body.len() as u64, file, m),
                    };
                    batch.insert(&key(b'M', m.seq), derived);
                    self.live.insert(
                        m.seq,
                        Live {
                            key: m.seq,
                            batch: index,
                            file,
                        },
                    );
                }
                if self.args.layout != Layout::Log {
                    self.batch_refs.insert(index, msgs.len() as u32);
                }
                self.unpurged.push_back(index);
                batch.insert(APPLIED_KEY, &index.to_be_bytes());
                self.purge(&mut batch);
            }
        }
        if let Some(last) = msgs.last() {
            self.max_seq = last.seq;
            batch.insert(MAX_SEQ_KEY, &self.max_seq.to_be_bytes());
        }
        self.commit(batch)
    }

    /// Drain step: delivery marks for `deliver`, acks for `ack`.
    fn drain(&mut self, deliver: &[Msg], ack: &[Msg]) -> Res<()> {
        let mut batch = Ops::default();
        let logged = self.args.layout != Layout::Current;
        let mut entries = Vec::new();
        // `wal --index-per-commit`: in-order marks are one cursor, and a
        // log record's reference goes when its last message is acked.
        let per_commit = self.args.layout == Layout::Wal && self.args.index_per_commit;
        if let (true, Some(last)) = (per_commit, deliver.last()) {
            batch.insert(b"\x00delivered", &last.seq.to_be_bytes());
        }
        for m in deliver {
            let Some(live) = self.live.get(&m.seq) else {
                continue;
            };
            if !per_commit {
                batch.insert(&key(b'D', live.key), &1u32.to_be_bytes());
            }
            entries.push(Entry::Delivered {
                seq: m.seq,
                count: 1,
            });
        }
        let mut emptied = Vec::new();
        for m in ack {
            let Some(live) = self.live.remove(&m.seq) else {
                continue;
            };
            if !per_commit {
                batch.remove(&key(b'M', live.key));
                batch.remove(&key(b'D', live.key));
            }
            entries.push(Entry::Ack {
                destination: &m.destination,
                seq: m.seq,
            });
            if let Some(n) = self.batch_refs.get_mut(&live.batch) {
                *n -= 1;
                if per_commit && *n == 0 {
                    batch.remove(&key(b'B', live.batch));
                }
            }
            if let Some(n) = self.file_refs.get_mut(&live.file) {
                *n -= 1;
                if *n == 0 {
                    emptied.push(live.file);
                }
            }
        }
        if self.args.layout == Layout::Wal {
            let index = self.next_index;
            self.next_index += 1;
            let (raw, _) = encode_batch(index, &entries);
            self.append_raw(&raw)?;
            self.sync_log()?;
            batch.insert(APPLIED_KEY, &index.to_be_bytes());
        } else if logged {
            let index = self.next_index;
            self.next_index += 1;
            let (raw, _) = encode_batch(index, &entries);
            batch.insert(&key(b'L', index), raw);
            self.unpurged.push_back(index);
            batch.insert(APPLIED_KEY, &index.to_be_bytes());
            self.purge(&mut batch);
        } else {
            self.next_index += entries.len() as u64;
            batch.insert(APPLIED_KEY, &(self.next_index - 1).to_be_bytes());
        }
        self.commit(batch)?;
        // Durability ordering: a body file goes only after the removal of
        // every record that refers to it is on disk (just flushed).
        let current = self.body_file.as_ref().map(|(n, _, _)| *n);
        for file in emptied {
            if Some(file) != current {
                self.file_refs.remove(&file);
                let path = self.body_path(file);
                std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Removes log records older than `--log-keep` batches that no live
    /// message refers to, oldest first.
    fn purge(&mut self, batch: &mut Ops) {
        let newest = self.next_index - 1;
        while let Some(&oldest) = self.unpurged.front() {
            let referenced = self.batch_refs.get(&oldest).is_some_and(|n| *n > 0);
            if oldest + self.args.log_keep > newest || referenced {
                break;
            }
            self.unpurged.pop_front();
            self.batch_refs.remove(&oldest);
            batch.remove(&key(b'L', oldest));
        }
    }

    /// One group commit's sled writes: one `apply_batch` and one `flush`,
    /// except for `wal`, whose derived writes are gathered in memory and
    /// applied (one batch, one flush) every `--index-flush-every` commits.
    fn commit(&mut self, ops: Ops) -> Res<()> {
        self.batches += 1;
        self.pending.0.extend(ops.0);
        let lagging = self.args.layout == Layout::Wal
            && self.batches % self.args.index_flush_every.max(1) != 0;
        if !lagging {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Applies what is gathered and flushes sled.
    fn checkpoint(&mut self) -> Res<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in std::mem::take(&mut self.pending.0) {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        self.flushes += 1;
        Ok(())
    }

    /// Syncs the log file (`wal`): one fdatasync per batch.
    fn sync_log(&mut self) -> Res<()> {
        if let Some((_, f, _)) = &self.body_file {
            f.sync_data()?;
            self.file_syncs += 1;
        }
        Ok(())
    }
}

/// `write_bytes` and `cancelled_write_bytes` of this process.
fn proc_io() -> Res<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/io")?;
    let field = |name: &str| -> Res<u64> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .ok_or_else(|| format!("/proc/self/io has no {name}"))?;
        Ok(line.trim().parse()?)
    };
    Ok((field("write_bytes:")?, field("cancelled_write_bytes:")?))
}

/// Apparent and allocated bytes of the files under `dir`.
fn disk_use(dir: &Path) -> Res<(u64, u64)> {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (len, alloc) = disk_use(&entry.path())?;
            total = (total.0 + len, total.1 + alloc);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    Ok(total)
}

/// Body bytes that do not compress to nothing (xorshift, printable).
fn body_bytes(len: usize) -> Bytes {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'!' + (x % 94) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Headers of a typical STOMP producer, about 200 bytes of names and values.
fn headers(seq: u64, producer: usize) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/octet-stream".into()),
        ("content-length".into(), "1024".into()),
        ("persistent".into(), "true".into()),
        (
            "correlation-id".into(),
            format!("order-{producer:02}-{seq:012}"),
        ),
        ("reply-to".into(), format!("/queue/replies.{producer:02}")),
        (
            "x-trace".into(),
            format!("00-4bf92f3577b34da6a3ce9{seq:011}-00f067aa0ba902b7-01"),
        ),
        ("x-sent-at".into(), "1765123456789".into()),
    ]
}

/// Measures one phase: runs `f`, returns (seconds, bytes written, cancelled).
fn measure(f: impl FnOnce() -> Res<()>) -> Res<(f64, u64, u64)> {
    let (w0, c0) = proc_io()?;
    let started = Instant::now();
    f()?;
    let secs = started.elapsed().as_secs_f64();
    let (w1, c1) = proc_io()?;
    Ok((secs, w1 - w0, c1 - c0))
}

fn main() -> Res<()> {
    let args = Args::parse();
    if args.per_flush == 0 || args.messages == 0 {
        return Err("--per-flush and --messages must be at least 1".into());
    }
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let body = body_bytes(args.body);
    let msgs: Vec<Msg> = (1..=args.messages)
        .map(|seq| {
            let producer = (seq as usize) % args.destinations.max(1);
            Msg {
                seq,
                destination: format!("/queue/bench.{producer:02}"),
                priority: 4,
                expires: 0,
                timestamp: 1_765_123_456_789 + seq,
                headers: headers(seq, producer),
                body: body.clone(),
            }
        })
        .collect();
    let header_bytes: usize = msgs[0].headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    let record_bytes = record_v1(&msgs[0]).len();
    let db = open_db(&args)?;
    let mut store = Store {
        args,
        db,
        next_index: 1,
        max_seq: 0,
        live: HashMap::new(),
        batch_refs: HashMap::new(),
        unpurged: VecDeque::new(),
        body_file: None,
        file_refs: HashMap::new(),
        pending: Ops::default(),
        batches: 0,
        flushes: 0,
        file_syncs: 0,
    };
    let k = store.args.per_flush;
    let n = msgs.len() as f64;
    // Writes the empty database's first pages outside the measured window.
    store.commit(Ops::default())?;
    store.flushes = 0;
    store.batches = 0;

    let fill = measure(|| {
        for group in msgs.chunks(k) {
            store.write(group)?;
        }
        store.checkpoint()?;
        Ok(())
    })?;
    let fill_flushes = store.flushes;
    let fill_batches = store.batches;
    let after_fill = disk_use(&store.args.dir)?;

    let groups: Vec<&[Msg]> = msgs.chunks(k).collect();
    let drain = measure(|| {
        for i in 0..=groups.len() {
            let deliver = groups.get(i).copied().unwrap_or(&[]);
            let ack = if i > 0 { groups[i - 1] } else { &[] };
            store.drain(deliver, ack)?;
        }
        store.checkpoint()?;
        Ok(())
    })?;
    let after_drain = disk_use(&store.args.dir)?;

    // Closing and reopening: what sled writes at close, and whether the
    // files shrink once nothing is live.
    let args = store.args;
    drop(store.db);
    drop(store.body_file);
    let reopen = measure(|| {
        // sled's file lock outlives a dropped `Db` for a moment (its IO
        // threads still hold the file): retry a lock conflict briefly.
        let mut attempts = 0;
        let db = loop {
            match open_db(&args) {
                Err(e) if attempts < 40 && e.to_string().contains("acquire lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other?,
            }
        };
        db.flush()?;
        drop(db);
        Ok(())
    })?;
    let after_reopen = disk_use(&args.dir)?;

    let line = serde_json::json!({
        "label": args.label,
        "layout": format!("{:?}", args.layout),
        "mode": format!("{:?}", args.mode),
        "segment_size": args.segment_size,
        "cache": args.cache,
        "compression": args.compression,
        "flush_every_ms": args.flush_every_ms,
        "inline_max": args.inline_max,
        "index_flush_every": args.index_flush_every,
        "index_per_commit": args.index_per_commit,
        "log_keep": args.log_keep,
        "file_segment": args.file_segment,
        "per_flush": k,
        "messages": msgs.len(),
        "body": args.body,
        "header_bytes": header_bytes,
        "record_bytes": record_bytes,
        "fill_secs": fill.0,
        "fill_msgs_per_s": n / fill.0,
        "fill_flushes": fill_flushes,
        "fill_batches": fill_batches,
        "file_syncs": store.file_syncs,
        "fill_write_bytes": fill.1,
        "fill_bytes_per_msg": fill.1 as f64 / n,
        "fill_bytes_per_flush": fill.1 as f64 / fill_batches as f64,
        "disk_after_fill": after_fill.0,
        "disk_alloc_after_fill": after_fill.1,
        "drain_secs": drain.0,
        "drain_write_bytes": drain.1,
        "drain_bytes_per_msg": drain.1 as f64 / n,
        "drain_cancelled_bytes": drain.2,
        "disk_after_drain": after_drain.0,
        "disk_alloc_after_drain": after_drain.1,
        "reopen_write_bytes": reopen.1,
        "disk_after_reopen": after_reopen.0,
        "disk_alloc_after_reopen": after_reopen.1,
    });
    println!("{line}");
    if let Some(out) = &args.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)?;
        writeln!(f, "{line}")?;
    }
    std::fs::remove_dir_all(&args.dir)?;
    Ok(())
}
