//! Body files, the lifecycle: [`BodyFiles`] opens the bodies directory
//! against the recovered `B` counts ([`super::body_counts`]), hands bodies
//! to the [`SegmentWriter`], and deletes the segment files no live body is
//! in any more.
//!
//! # At open (no message is read)
//!
//! The directory is listed (one entry per segment file) and compared with
//! the `B` records, which the state machine writes in the same atomic batch
//! as the message records they count, so they are exactly the durable
//! references:
//!
//! - a segment file without a `B` record has no live body: its bodies were
//!   consumed, or it is what a crash left between the body write and the
//!   sled batch; it is deleted;
//! - a file longer than its record's `end` has a torn tail (bodies written
//!   whose batch never reached sled): it is cut back to `end`;
//! - a file shorter than `end`, or missing, is a damaged store: opening
//!   fails naming the file, rather than delivering a wrong body later.
//!
//! New bodies then go to a new segment, numbered past every file and every
//! record, so an old segment is never appended to.
//!
//! # While running (durability ordering)
//!
//! [`BodyFiles::reclaim`] is called by the log writer only after a sled
//! flush, with the counts of everything applied so far (all of it durable
//! now): a segment without a live body at that point has none in the
//! durable state either, so unlinking it can never leave a durable record
//! referring to a deleted file. The segment being appended to is retired
//! (and then deleted) once it has no live body and holds at least
//! [`RETIRE_ACTIVE_BYTES`], or whatever it holds when the writer is idle.

use super::body_counts::BodyCounts;
use super::body_segments::{
    io, segment_id, segment_path, BodyError, BodyReader, BodySettings, SegmentWriter,
};
use super::entry::{EncodedBatch, Kind};
use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::sync::Arc;

/// The segment being appended to is retired as soon as none of its bodies
/// is live once it holds this much (when the writer is idle, whatever it
/// holds): small enough that a drained store gives its space back, large
/// enough that a consumer keeping up does not make a file per message.
pub const RETIRE_ACTIVE_BYTES: u64 = 1 << 20;

/// What opening found and did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// Segment files kept (holding live bodies).
    pub kept: usize,
    /// Segment files deleted (no live body).
    pub deleted: usize,
    /// Segment files whose unreferenced tail was cut off.
    pub cut: usize,
}

/// The body files of one store: the writer's side.
#[derive(Debug)]
pub struct BodyFiles {
    writer: SegmentWriter,
    reader: Arc<BodyReader>,
    /// Segment files on disk: listed at open, added as created.
    on_disk: BTreeSet<u32>,
}

impl BodyFiles {
    /// Opens the bodies directory (if there is one) against the recovered
    /// `counts` (module doc: what is deleted, cut, or refused).
    pub fn open(
        settings: BodySettings,
        counts: &BodyCounts,
    ) -> Result<(BodyFiles, Opened), BodyError> {
        let dir = settings.dir.clone();
        let mut found = Vec::new();
        // The directory is created with the first segment: a store whose
        // bodies all stay inline has none.
        let listing = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            other => Some(other.map_err(io(&dir, "cannot list the directory"))?),
        };
        for item in listing.into_iter().flatten() {
            let item = item.map_err(io(&dir, "cannot list the directory"))?;
            let Some(id) = item.file_name().to_str().and_then(segment_id) else {
                continue; // not ours: left alone
            };
            let len = item
                .metadata()
                .map_err(io(&item.path(), "cannot read its size"))?
                .len();
            found.push((id, len));
        }
        let mut opened = Opened::default();
        let mut on_disk = BTreeSet::new();
        let mut last = counts.segments().map(|(id, _)| id).max().unwrap_or(0);
        for &(id, len) in &found {
            last = last.max(id);
            let path = segment_path(&dir, id);
            let Some(count) = counts.get(id) else {
                remove(&path)?;
                opened.deleted += 1;
                continue;
            };
            if len < count.end {
                return Err(BodyError::Truncated {
                    path,
                    end: count.end,
                    file_len: len,
                });
            }
            if len > count.end {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io(&path, "cannot open it to cut its torn tail"))?;
                file.set_len(count.end)
                    .and_then(|_| file.sync_all())
                    .map_err(io(&path, "cannot cut its torn tail"))?;
                opened.cut += 1;
            }
            on_disk.insert(id);
            opened.kept += 1;
        }
        if let Some((id, _)) = counts.segments().find(|(id, _)| !on_disk.contains(id)) {
            return Err(BodyError::Missing {
                path: segment_path(&dir, id),
            });
        }
        if opened.deleted > 0 {
            sync_dir(&settings)?;
        }
        let next = last.checked_add(1).ok_or(BodyError::Io {
            path: dir.clone(),
            what: "no segment number is left",
            source: std::io::Error::other("segment numbers are exhausted"),
        })?;
        Ok((
            BodyFiles {
                writer: SegmentWriter::new(settings, next),
                reader: Arc::new(BodyReader::new(dir)),
                on_disk,
            },
            opened,
        ))
    }

    /// `store.body_inline_max`: the log writer bounds the bodies queued for
    /// body files apart from its records ([`super::body_segments::goes_to_file`]).
    pub fn inline_max(&self) -> u64 {
        self.writer.settings().inline_max
    }

    /// The read side, for paged bodies.
    pub fn reader(&self) -> Arc<BodyReader> {
        self.reader.clone()
    }

    /// Durability ordering, step 1 ([`super::body_segments`]): the large
    /// bodies of `batch` go to the current segment, replaced by references.
    pub fn externalize(&mut self, batch: &mut EncodedBatch) -> Result<usize, BodyError> {
        let written = self.writer.externalize(batch)?;
        // Every segment this batch started holds one of its bodies.
        for entry in &batch.entries {
            if let Some(Kind::Enqueue(m)) = &entry.kind {
                if let Some(r) = &m.body_ref {
                    self.on_disk.insert(r.segment);
                }
            }
        }
        Ok(written)
    }

    /// Durability ordering, step 2: `fdatasync` of what was appended.
    pub fn sync(&mut self) -> Result<(), BodyError> {
        self.writer.sync()
    }

    /// After a sled flush of everything `counts` describes: deletes the
    /// segment files without a live body (module doc), the current one
    /// too once it is retired. Returns how many files went.
    pub fn reclaim(&mut self, counts: &BodyCounts, idle: bool) -> Result<usize, BodyError> {
        if let Some((id, len)) = self.writer.active() {
            if counts.get(id).is_none() && (len >= RETIRE_ACTIVE_BYTES || (idle && len > 0)) {
                self.writer.retire_active()?;
            }
        }
        let active = self.writer.active().map(|(id, _)| id);
        let dead: Vec<u32> = self
            .on_disk
            .iter()
            .copied()
            .filter(|&id| Some(id) != active && counts.get(id).is_none())
            .collect();
        for &id in &dead {
            self.reader.forget(id);
            remove(&segment_path(&self.writer.settings().dir, id))?;
            self.on_disk.remove(&id);
        }
        Ok(dead.len())
    }

    /// Segment files on disk.
    pub fn segment_count(&self) -> usize {
        self.on_disk.len()
    }
}

/// Unlinks a segment file (already gone is fine).
fn remove(path: &std::path::Path) -> Result<(), BodyError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path, "cannot delete a segment")(e)),
    }
}

/// Syncs the directory after deletions at open (so they do not come back
/// after a power loss to be deleted again: harmless, but noisy).
fn sync_dir(settings: &BodySettings) -> Result<(), BodyError> {
    std::fs::File::open(&settings.dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&settings.dir, "cannot sync the directory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::body_segments::tests::{batch, files, refs, settings};
    use std::io::Write;

    /// Counts of the bodies `live` refers to, as the state machine keeps them.
    fn counts_of(live: &[crate::store::entry::BodyRef]) -> BodyCounts {
        let mut c = BodyCounts::default();
        let mut touched = Vec::new();
        for r in live {
            c.add(r, &mut touched);
        }
        c
    }

    #[test]
    fn segments_go_once_none_of_their_bodies_is_live() {
        let dir = tempfile::tempdir().unwrap();
        // Segments of 2,500 bytes: two 1,000-byte bodies each.
        let (mut files_, opened) =
            BodyFiles::open(settings(dir.path(), 2500), &BodyCounts::default()).unwrap();
        assert_eq!(opened, Opened::default());
        let body = vec![b'y'; 1000];
        let mut b = batch(1, &[&body, &body, &body, &body, &body]);
        files_.externalize(&mut b).unwrap();
        files_.sync().unwrap();
        let r: Vec<_> = refs(&b).into_iter().map(Option::unwrap).collect();
        let segs: Vec<u32> = r.iter().map(|r| r.segment).collect();
        assert_eq!(segs, vec![1, 1, 2, 2, 3]);
        // One of segment 1's bodies is gone: nothing to delete yet.
        assert_eq!(files_.reclaim(&counts_of(&r[1..]), false).unwrap(), 0);
        // Both: segment 1 goes; the current one (3) stays while live.
        assert_eq!(files_.reclaim(&counts_of(&r[2..4]), false).unwrap(), 1);
        assert_eq!(
            files(dir.path()),
            vec!["0000000002.body", "0000000003.body"]
        );
        // The current segment, empty of live bodies but small, goes only
        // when the writer is idle.
        assert_eq!(files_.reclaim(&counts_of(&r[2..4]), false).unwrap(), 0);
        assert_eq!(files_.reclaim(&counts_of(&r[2..4]), true).unwrap(), 1);
        assert_eq!(files(dir.path()), vec!["0000000002.body"]);
        assert_eq!(files_.reclaim(&BodyCounts::default(), false).unwrap(), 1);
        assert!(files(dir.path()).is_empty());
        assert_eq!(files_.segment_count(), 0);
        // Appending again starts a fresh segment, numbered past the last.
        let mut b = batch(6, &[&body]);
        files_.externalize(&mut b).unwrap();
        assert_eq!(refs(&b)[0].unwrap().segment, 4);
    }

    /// A crash between the body write and the sled batch: bytes at a live
    /// segment's tail that no record refers to are cut off at open, a
    /// segment no record refers to is deleted, and new bodies go to a new
    /// segment.
    #[test]
    fn a_crash_leaves_garbage_that_open_reclaims_without_reading_messages() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 1 << 20);
        let body = vec![b'z'; 100];
        let kept = {
            let (mut f, _) = BodyFiles::open(s.clone(), &BodyCounts::default()).unwrap();
            let mut b = batch(1, &[&body]);
            f.externalize(&mut b).unwrap();
            f.sync().unwrap();
            let kept = refs(&b)[0].unwrap();
            // The next batch's body is written, then the "crash": its record
            // never reaches sled, and half of a third body is on disk.
            let mut lost = batch(2, &[&body]);
            f.externalize(&mut lost).unwrap();
            let mut raw = OpenOptions::new()
                .append(true)
                .open(segment_path(&s.dir, 1))
                .unwrap();
            raw.write_all(&body[..50]).unwrap();
            kept
        };
        // A later segment with no record at all (its batch was lost whole).
        std::fs::write(segment_path(&s.dir, 2), vec![b'w'; 70]).unwrap();
        std::fs::write(s.dir.join("notes.txt"), b"not ours").unwrap();
        let counts = counts_of(&[kept]);
        let (mut f, opened) = BodyFiles::open(s.clone(), &counts).unwrap();
        assert_eq!(
            opened,
            Opened {
                kept: 1,
                deleted: 1,
                cut: 1
            }
        );
        assert_eq!(
            std::fs::metadata(segment_path(&s.dir, 1)).unwrap().len(),
            100
        );
        assert_eq!(files(dir.path()), vec!["0000000001.body", "notes.txt"]);
        assert_eq!(f.reader().read(&kept).unwrap(), body);
        let mut b = batch(3, &[&body]);
        f.externalize(&mut b).unwrap();
        let next = refs(&b)[0].unwrap();
        assert_eq!((next.segment, next.offset), (3, 0), "past every old number");
    }

    #[test]
    fn a_missing_or_short_file_fails_the_open_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), 1 << 20);
        let body = vec![b'q'; 1000];
        let (mut f, _) = BodyFiles::open(s.clone(), &BodyCounts::default()).unwrap();
        let mut b = batch(1, &[&body]);
        f.externalize(&mut b).unwrap();
        f.sync().unwrap();
        let counts = counts_of(&[refs(&b)[0].unwrap()]);
        drop(f);
        let path = segment_path(&s.dir, 1);
        std::fs::write(&path, vec![b'q'; 300]).unwrap();
        let e = BodyFiles::open(s.clone(), &counts).unwrap_err();
        assert!(
            matches!(
                e,
                BodyError::Truncated {
                    end: 1000,
                    file_len: 300,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = BodyFiles::open(s, &counts).unwrap_err();
        assert!(matches!(e, BodyError::Missing { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }
}
