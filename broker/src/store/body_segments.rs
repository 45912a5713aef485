//! Body files, the file side: persistent message bodies kept out of sled's
//! pages, appended to segment files under `<data_dir>/bodies/`
//! ([`SegmentWriter`]) and read back by reference ([`BodyReader`]).
//!
//! Why: sled rewrites a leaf whole every time it consolidates it, so a body
//! inside a record is written several times (three times for a 10 MB body),
//! and sled keeps its files at their high-water mark. A body appended to a
//! file is written once, and its space goes back to the file system whole,
//! by unlink, once no live message refers to it. sled stays the log and the
//! index: the message record (in its `Q` value) holds a [`BodyRef`] instead of the body,
//! and the seq index (`S`) and the per-segment counts (`B`) say which
//! segment it is in ([`super::body_counts`]); which files go, and when, is
//! [`super::body_reclaim`]'s.
//!
//! # Durability ordering
//!
//! 1. The writer appends the bodies of a batch ([`SegmentWriter::externalize`]),
//! 2. `fdatasync`s the segment ([`SegmentWriter::sync`]; a new segment's
//!    directory entry is synced when the file is created),
//! 3. then applies the sled batch whose records refer to them, flushes it,
//!    and only then releases the receipts.
//!
//! Step 2 comes before step 3 whatever `store.sync` says: sled may write an
//! applied batch out before any flush, and a record on disk must never
//! refer to bytes that are not. A crash between 1 and 3 leaves bytes no
//! record refers to; a reopened store never appends to an old segment (it
//! starts a new one), and the reclaim at open cuts such a tail off or
//! deletes the segment.
//!
//! Every read checks the length and the CRC-32 in the reference: a
//! truncated or damaged file is an error naming the file, never a panic and
//! never a wrong body.
//!
//! Lock order: [`BodyReader`]'s handle map is a leaf lock, held only to look
//! up or insert an open file, never across a read.

use super::entry::{BodyRef, EncodedBatch, Kind};
use bytes::Bytes;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// A segment is closed and a new one started once it would pass this size
/// (a larger body gets a segment of its own).
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// A body file could not be written or read. Always names the file.
#[derive(Debug, Error)]
pub enum BodyError {
    /// A system call failed.
    #[error("body file {path}: {what}: {source}")]
    Io {
        /// The file (or the bodies directory).
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A live record refers to a segment that does not exist.
    #[error("body file {path} is missing (a live message record refers to it)")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The file ends before the referenced body does.
    #[error(
        "body file {path} is truncated: live bodies reach byte {end}, the file has {file_len}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the referenced bytes end.
        end: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The bytes are not the body that was written.
    #[error("body file {path} is damaged: the body at offset {offset} of {len} bytes fails its checksum")]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Where the body starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

/// The `Io` variant of [`BodyError`] for `path`, as a `map_err` argument.
pub(super) fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> BodyError {
    let path = path.to_path_buf();
    move |source| BodyError::Io { path, what, source }
}

/// Where the body files are and which bodies go there.
#[derive(Debug, Clone)]
pub struct BodySettings {
    /// The directory (created if missing): `<data_dir>/bodies`, beside
    /// (never inside) the sled directory, which compaction replaces whole.
    pub dir: PathBuf,
    /// Bodies up to this many bytes stay inline in their record
    /// (`store.body_inline_max`); empty bodies always do.
    pub inline_max: u64,
    /// Segment size ([`SEGMENT_BYTES`]; tests use less).
    pub segment_bytes: u64,
}

impl BodySettings {
    /// Body files in `dir`, bodies over `inline_max` bytes, segments of
    /// [`SEGMENT_BYTES`].
    pub fn new(dir: PathBuf, inline_max: u64) -> BodySettings {
        BodySettings {
            dir,
            inline_max,
            segment_bytes: SEGMENT_BYTES,
        }
    }
}

/// Whether a body of `len` bytes goes to a body file with
/// `store.body_inline_max` = `inline_max` (empty bodies never do).
pub fn goes_to_file(len: usize, inline_max: u64) -> bool {
    len > 0 && len as u64 > inline_max
}

/// The file of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}.body"))
}

/// The segment number of a file name made by [`segment_path`].
pub(super) fn segment_id(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".body")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&id| id > 0)
}

/// The segment being appended to.
struct Active {
    id: u32,
    file: File,
    /// Bytes in it.
    len: u64,
    /// Appended since the last [`SegmentWriter::sync`].
    unsynced: bool,
}

/// The appending side: owned by the log writer thread (the one thread that
/// applies batches on a single node).
pub struct SegmentWriter {
    settings: BodySettings,
    active: Option<Active>,
    next_id: u32,
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("dir", &self.settings.dir)
            .field("active", &self.active.as_ref().map(|a| a.id))
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl SegmentWriter {
    /// A writer whose first segment is `next_id` (past every segment on
    /// disk and every one a record names: an old segment is never appended
    /// to, so a torn tail is never referred to).
    pub fn new(settings: BodySettings, next_id: u32) -> SegmentWriter {
        SegmentWriter {
            settings,
            active: None,
            next_id: next_id.max(1),
        }
    }

    /// The settings it was made with.
    pub fn settings(&self) -> &BodySettings {
        &self.settings
    }

    /// Whether a body of `len` bytes goes to a body file.
    pub fn takes(&self, len: usize) -> bool {
        goes_to_file(len, self.settings.inline_max)
    }

    /// Durability ordering, step 1: appends the body of every enqueue in
    /// `batch` that [`SegmentWriter::takes`] to the current segment and
    /// replaces it with its reference. Call [`SegmentWriter::sync`] before
    /// the records that refer to them are applied. Returns how many bodies
    /// it wrote.
    pub fn externalize(&mut self, batch: &mut EncodedBatch) -> Result<usize, BodyError> {
        let mut written = 0;
        for entry in &mut batch.entries {
            let Some(Kind::Enqueue(message)) = &mut entry.kind else {
                continue;
            };
            if message.body_ref.is_some() || !self.takes(message.body.len()) {
                continue;
            }
            let body = std::mem::take(&mut message.body);
            message.body_ref = Some(self.append(&body)?);
            written += 1;
        }
        Ok(written)
    }

    /// Appends one body, starting a new segment when the current one would
    /// pass the segment size.
    fn append(&mut self, body: &[u8]) -> Result<BodyRef, BodyError> {
        let len = body.len() as u64;
        let full = match &self.active {
            None => true,
            Some(a) => a.len > 0 && a.len + len > self.settings.segment_bytes,
        };
        if full {
            self.start_segment()?;
        }
        let dir = &self.settings.dir;
        let Some(active) = self.active.as_mut() else {
            // start_segment sets it; an error rather than a panic all the same.
            return Err(BodyError::Missing {
                path: segment_path(dir, self.next_id),
            });
        };
        active
            .file
            .write_all(body)
            .map_err(io(&segment_path(dir, active.id), "cannot append a body"))?;
        active.unsynced = true;
        let r = BodyRef {
            segment: active.id,
            offset: active.len,
            len,
            crc: crc32fast::hash(body),
        };
        active.len += len;
        Ok(r)
    }

    /// Closes the current segment (synced) and creates the next one, its
    /// directory entry synced before anything can refer to it.
    fn start_segment(&mut self) -> Result<(), BodyError> {
        self.sync()?;
        let dir = &self.settings.dir;
        std::fs::create_dir_all(dir).map_err(io(dir, "cannot create the directory"))?;
        let id = self.next_id;
        let path = segment_path(dir, id);
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io(&path, "cannot create a segment"))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir, "cannot sync the directory"))?;
        self.next_id += 1;
        self.active = Some(Active {
            id,
            file,
            len: 0,
            unsynced: false,
        });
        Ok(())
    }

    /// Durability ordering, step 2: `fdatasync`s what
    /// [`SegmentWriter::externalize`] appended. A no-op when nothing was.
    pub fn sync(&mut self) -> Result<(), BodyError> {
        if let Some(active) = self.active.as_mut().filter(|a| a.unsynced) {
            let path = segment_path(&self.settings.dir, active.id);
            active
                .file
                .sync_data()
                .map_err(io(&path, "cannot sync a segment"))?;
            active.unsynced = false;
        }
        Ok(())
    }

    /// The segment being appended to and its length, if any.
    pub fn active(&self) -> Option<(u32, u64)> {
        self.active.as_ref().map(|a| (a.id, a.len))
    }

    /// Stops appending to the current segment (synced first): the next
    /// body starts a new one, and the old one can be deleted once none of
    /// its bodies is live.
    pub fn retire_active(&mut self) -> Result<(), BodyError> {
        self.sync()?;
        self.active = None;
        Ok(())
    }
}

/// Reads bodies back by reference; shared by every session that delivers a
/// paged body. Keeps one read-only handle per segment (a handle stays valid
/// after its file is unlinked, so a read racing a reclaim of a body that
/// was live when it was looked up still succeeds).
pub struct BodyReader {
    dir: PathBuf,
    open: Mutex<HashMap<u32, Arc<File>>>,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("dir", &self.dir)
            .finish()
    }
}

impl BodyReader {
    /// A reader of the segments in `dir`.
    pub fn new(dir: PathBuf) -> BodyReader {
        BodyReader {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn handle(&self, segment: u32) -> Result<Arc<File>, BodyError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(&segment) {
            return Ok(f.clone());
        }
        let path = segment_path(&self.dir, segment);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BodyError::Missing { path })
            }
            Err(e) => return Err(io(&path, "cannot open a segment")(e)),
        };
        open.insert(segment, file.clone());
        Ok(file)
    }

    /// Drops the handle of a deleted segment.
    pub fn forget(&self, segment: u32) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&segment);
    }

    /// The body `r` refers to, its length and checksum verified.
    pub fn read(&self, r: &BodyRef) -> Result<Bytes, BodyError> {
        let file = self.handle(r.segment)?;
        let path = || segment_path(&self.dir, r.segment);
        let truncated = |file_len| BodyError::Truncated {
            path: path(),
            end: r.offset.saturating_add(r.len),
            file_len,
        };
        let len = usize::try_from(r.len).map_err(|_| truncated(0))?;
        let mut buf = vec![0u8; len];
        if let Err(e) = file.read_exact_at(&mut buf, r.offset) {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                return Err(truncated(file.metadata().map(|m| m.len()).unwrap_or(0)));
            }
            return Err(io(&path(), "cannot read a body")(e));
        }
        if crc32fast::hash(&buf) != r.crc {
            return Err(BodyError::Checksum {
                path: path(),
                offset: r.offset,
                len: r.len,
            });
        }
        Ok(Bytes::from(buf))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::entry::{Entry, StoredMessage, FORMAT};

    pub(crate) fn settings(dir: &Path, segment_bytes: u64) -> BodySettings {
        BodySettings {
            dir: dir.join("bodies"),
            inline_max: 16,
            segment_bytes,
        }
    }

    pub(crate) fn batch(first_seq: u64, bodies: &[&[u8]]) -> EncodedBatch {
        EncodedBatch {
            format: FORMAT,
            max_seq: first_seq + bodies.len() as u64,
            entries: (first_seq..)
                .zip(bodies)
                .map(|(seq, b)| Entry {
                    kind: Some(Kind::Enqueue(StoredMessage {
                        seq,
                        destination: "/queue/a".into(),
                        body: Bytes::copy_from_slice(b),
                        ..Default::default()
                    })),
                })
                .collect(),
        }
    }

    pub(crate) fn refs(batch: &EncodedBatch) -> Vec<Option<BodyRef>> {
        batch
            .entries
            .iter()
            .map(|e| match &e.kind {
                Some(Kind::Enqueue(m)) => m.body_ref,
                _ => None,
            })
            .collect()
    }

    pub(crate) fn files(dir: &Path) -> Vec<String> {
        let Ok(list) = std::fs::read_dir(dir.join("bodies")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = list
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn large_bodies_are_appended_and_read_back_small_ones_stay_inline() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 1 << 20);
        let mut w = SegmentWriter::new(s.clone(), 1);
        let big = vec![b'x'; 1000];
        let mut b = batch(
            1,
            &[b"tiny", &big, b"", b"another body, 33 bytes long......"],
        );
        assert_eq!(w.externalize(&mut b).unwrap(), 2);
        w.sync().unwrap();
        let r = refs(&b);
        assert_eq!(r[0], None, "4 bytes stay inline");
        assert_eq!(r[2], None, "an empty body stays inline");
        let (one, two) = (r[1].unwrap(), r[3].unwrap());
        assert_eq!((one.segment, one.offset, one.len), (1, 0, 1000));
        assert_eq!((two.segment, two.offset, two.len), (1, 1000, 33));
        let Some(Kind::Enqueue(m)) = &b.entries[1].kind else {
            panic!("an enqueue")
        };
        assert!(m.body.is_empty(), "the record keeps the reference only");
        assert_eq!(m.body_len(), 1000);
        let reader = BodyReader::new(s.dir.clone());
        assert_eq!(reader.read(&one).unwrap(), big);
        assert_eq!(
            reader.read(&two).unwrap(),
            &b"another body, 33 bytes long......"[..]
        );
        assert_eq!(files(dir.path()), vec!["0000000001.body"]);
        assert_eq!(w.active(), Some((1, 1033)));
    }

    #[test]
    fn a_full_segment_is_closed_and_the_next_one_started() {
        let dir = tempfile::tempdir().unwrap();
        // Segments of 2,500 bytes: two 1,000-byte bodies each; a body larger
        // than a segment gets one of its own.
        let mut w = SegmentWriter::new(settings(dir.path(), 2500), 7);
        let body = vec![b'y'; 1000];
        let huge = vec![b'h'; 4000];
        let mut b = batch(1, &[&body, &body, &body, &huge, &body]);
        w.externalize(&mut b).unwrap();
        w.sync().unwrap();
        let segs: Vec<u32> = refs(&b).iter().map(|r| r.unwrap().segment).collect();
        assert_eq!(segs, vec![7, 7, 8, 9, 10]);
        assert_eq!(files(dir.path()).len(), 4);
        w.retire_active().unwrap();
        let mut b = batch(6, &[&body]);
        w.externalize(&mut b).unwrap();
        assert_eq!(refs(&b)[0].unwrap().segment, 11, "retired: a new segment");
    }

    #[test]
    fn a_damaged_truncated_or_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 1 << 20);
        let body = vec![b'q'; 1000];
        let mut w = SegmentWriter::new(s.clone(), 1);
        let mut b = batch(1, &[&body]);
        w.externalize(&mut b).unwrap();
        w.sync().unwrap();
        let r = refs(&b)[0].unwrap();
        drop(w);
        let path = segment_path(&s.dir, 1);
        let name = path.display().to_string();
        // Garbage of the right length: the checksum catches it.
        std::fs::write(&path, vec![0xA5u8; 1000]).unwrap();
        let e = BodyReader::new(s.dir.clone()).read(&r).unwrap_err();
        assert!(matches!(e, BodyError::Checksum { .. }), "{e}");
        assert!(e.to_string().contains(&name), "{e}");
        std::fs::write(&path, vec![b'q'; 300]).unwrap();
        let e = BodyReader::new(s.dir.clone()).read(&r).unwrap_err();
        assert!(
            matches!(e, BodyError::Truncated { file_len: 300, .. }),
            "{e}"
        );
        assert!(e.to_string().contains(&name), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = BodyReader::new(s.dir.clone()).read(&r).unwrap_err();
        assert!(
            matches!(e, BodyError::Missing { .. }) && e.to_string().contains(&name),
            "{e}"
        );
    }

    #[test]
    fn only_our_file_names_are_segments() {
        assert_eq!(segment_id("0000000042.body"), Some(42));
        for name in ["notes.txt", "12.body", "0000000000.body", "00000000x1.body"] {
            assert_eq!(segment_id(name), None, "{name}");
        }
    }
}
