//! Snapshot files: where a node keeps its snapshots (one file each under
//! `<data_dir>/raft/ferromq-snapshots/`, beside the cluster database; its
//! name does not start with `snap.`, as sled's own files there do), how a
//! new one becomes the current one, and which are removed.
//!
//! Crash safety: a snapshot is written (built here, or received from the
//! leader) under a temporary `.part` name, fsynced, renamed to its final
//! name and the directory fsynced; only then is its metadata, which names
//! it, written to the cluster database ([`SnapshotFiles::publish`]). A
//! half-written file therefore never has metadata pointing at it, and
//! `.part` files left by a crash are removed on open.
//!
//! Everything here blocks (file I/O, fsync, sled's flush): call it from a
//! blocking thread, never from the runtime's workers.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The directory under the cluster's data directory.
const DIR: &str = "ferromq-snapshots";
const PART: &str = "part";
const SNAP: &str = "snap";

/// Temporary names only need to be unique within this process's life
/// (leftovers of earlier lives are removed on open).
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A node's snapshot directory.
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    /// Held while a snapshot becomes the current one (rename, metadata,
    /// removal of the others): a build finishing while a received snapshot
    /// is installed must not remove the file the other's metadata names.
    publishing: Mutex<()>,
}

impl SnapshotFiles {
    /// Opens (creating) the directory under `cluster_dir` and removes the
    /// `.part` files a crash left.
    pub(crate) fn open(cluster_dir: &Path) -> io::Result<SnapshotFiles> {
        let dir = cluster_dir.join(DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| with_path(e, "creating the snapshot directory", &dir))?;
        let files = SnapshotFiles {
            dir,
            publishing: Mutex::new(()),
        };
        for path in files.listed(PART)? {
            remove(&path);
        }
        Ok(files)
    }

    /// A new empty temporary file, open for writing and reading.
    pub(crate) fn temp(&self, purpose: &str) -> io::Result<(PathBuf, File)> {
        let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("{purpose}-{}-{seq}.{PART}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| with_path(e, "creating a snapshot file", &path))?;
        Ok((path, file))
    }

    /// Where the snapshot `snapshot_id` is kept. The id comes from the
    /// leader: it is hex-encoded so no id can name a path elsewhere.
    pub(crate) fn path_of(&self, snapshot_id: &str) -> PathBuf {
        let hex: String = snapshot_id.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.{SNAP}"))
    }

    /// Makes the temporary file `temp` (written and fsynced by the caller)
    /// the snapshot `snapshot_id`, then runs `record` (which writes the
    /// metadata naming it, durably), then removes every other snapshot
    /// file. Durability ordering: rename, fsync of the directory, metadata;
    /// old files go only once the metadata names the new one.
    pub(crate) fn publish<E>(
        &self,
        temp: &Path,
        snapshot_id: &str,
        record: impl FnOnce() -> Result<(), E>,
    ) -> Result<PathBuf, PublishError<E>> {
        let _publishing = self.publishing.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path_of(snapshot_id);
        fs::rename(temp, &path)
            .map_err(|e| PublishError::Io(with_path(e, "renaming a snapshot file", temp)))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| {
                PublishError::Io(with_path(e, "syncing the snapshot directory", &self.dir))
            })?;
        record().map_err(PublishError::Record)?;
        for other in self.listed(SNAP).map_err(PublishError::Io)? {
            if other != path {
                remove(&other);
            }
        }
        Ok(path)
    }

    /// Removes a temporary file that will not be published.
    pub(crate) fn discard(&self, temp: &Path) {
        remove(temp);
    }

    fn listed(&self, extension: &str) -> io::Result<Vec<PathBuf>> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| with_path(e, "listing the snapshot directory", &self.dir))?;
        let mut found = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| with_path(e, "listing the snapshot directory", &self.dir))?
                .path();
            if path.extension().is_some_and(|ext| ext == extension) {
                found.push(path);
            }
        }
        Ok(found)
    }
}

/// Why [`SnapshotFiles::publish`] failed.
#[derive(Debug)]
pub(crate) enum PublishError<E> {
    /// The file or directory.
    Io(io::Error),
    /// Writing the metadata.
    Record(E),
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Removal is cleanup: a file that cannot be removed now is found again
/// by the next publish or open.
fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cluster: cannot remove a snapshot file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_published_snapshot_replaces_the_others_and_leftover_parts_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::open(dir.path()).unwrap();
        let (first, mut file) = files.temp("build").unwrap();
        file.write_all(b"one").unwrap();
        let one = files
            .publish(&first, "1-1-10-0", || Ok::<_, ()>(()))
            .unwrap();
        let (second, mut file) = files.temp("recv").unwrap();
        file.write_all(b"two").unwrap();
        // A crash before the metadata: the new file exists, the old one
        // (which the metadata still names) is kept.
        let failed = files.publish(&second, "1-1-20-1", || Err("disk full"));
        assert!(matches!(failed, Err(PublishError::Record("disk full"))));
        assert_eq!(fs::read(&one).unwrap(), b"one");
        let (third, mut file) = files.temp("recv").unwrap();
        file.write_all(b"three").unwrap();
        let three = files
            .publish(&third, "1-1-30-2", || Ok::<_, ()>(()))
            .unwrap();
        assert_eq!(fs::read(&three).unwrap(), b"three");
        assert_eq!(
            names(&dir.path().join(DIR)),
            vec![format!("{}", three.file_name().unwrap().to_string_lossy())]
        );
        // A half-written file from a crash is gone after the next open.
        let (_, mut part) = files.temp("build").unwrap();
        part.write_all(b"half").unwrap();
        drop(files);
        let _files = SnapshotFiles::open(dir.path()).unwrap();
        assert_eq!(names(&dir.path().join(DIR)).len(), 1);
    }

    #[test]
    fn an_id_from_a_peer_cannot_name_a_path_outside_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::open(dir.path()).unwrap();
        let path = files.path_of("../../etc/passwd");
        assert_eq!(path.parent(), Some(dir.path().join(DIR).as_path()));
    }
}
