//! The fill's manifest: one JSON line per stamped producer saying what it
//! sent and what the broker confirmed, appended by every fill run to the
//! same file, read back by the drain (`--expect`).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What one producer sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// The producer id stamped on its messages.
    pub producer: u64,
    /// Where it sent them.
    pub destination: String,
    /// Its first sequence number (1).
    pub first: u64,
    /// Its last sequence number handed to the link (perhaps never written:
    /// the run may have stopped, or the link failed, with it buffered); 0
    /// when it sent nothing.
    pub sent: u64,
    /// Its last sequence number that a RECEIPT covers (a receipted SEND,
    /// or a COMMIT's, or the last receipted SEND of an async producer,
    /// which the broker's in-order log makes cover those before it); 0 for
    /// none. Messages up to here are owed: missing ones are lost.
    pub receipted: u64,
}

/// Why a manifest could not be read or written.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// Reading or writing the file failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// Which file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a manifest entry.
    #[error("{path}, line {line}: not a manifest entry: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Appends `entries` to the manifest at `path` (created if absent), one line
/// each. Several fill runs append to one file.
pub fn append(path: &Path, entries: &[ManifestEntry]) -> Result<(), ManifestError> {
    let io = |what| {
        move |source| ManifestError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let mut text = String::new();
    for e in entries {
        // A struct of numbers and a string always serializes.
        if let Ok(line) = serde_json::to_string(e) {
            text.push_str(&line);
            text.push('\n');
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io("open for append"))?;
    // One write per run: the lines of concurrent fills do not interleave.
    file.write_all(text.as_bytes()).map_err(io("append"))?;
    file.sync_all().map_err(io("sync"))
}

/// Reads a manifest: its entries by producer id (a producer listed twice
/// keeps its highest numbers).
pub fn load(path: &Path) -> Result<HashMap<u64, ManifestEntry>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_path_buf(),
        what: "read",
        source,
    })?;
    let mut entries: HashMap<u64, ManifestEntry> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let e: ManifestEntry =
            serde_json::from_str(line).map_err(|source| ManifestError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
        match entries.get_mut(&e.producer) {
            Some(old) => {
                old.sent = old.sent.max(e.sent);
                old.receipted = old.receipted.max(e.receipted);
            }
            None => {
                entries.insert(e.producer, e);
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(producer: u64, sent: u64, receipted: u64) -> ManifestEntry {
        ManifestEntry {
            producer,
            destination: "/queue/q".into(),
            first: 1,
            sent,
            receipted,
        }
    }

    #[test]
    fn runs_append_and_the_drain_reads_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.jsonl");
        append(&path, &[entry(1, 10, 9), entry(2, 5, 5)]).unwrap();
        append(&path, &[entry(3, 7, 0)]).unwrap();
        let m = load(&path).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[&1], entry(1, 10, 9));
        assert_eq!(m[&3].receipted, 0);
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.jsonl");
        std::fs::write(&path, "{\"producer\":1,\"destination\":\"/queue/q\",\"first\":1,\"sent\":1,\"receipted\":1}\nnot json\n").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let missing = load(&dir.path().join("none")).unwrap_err().to_string();
        assert!(missing.contains("read"), "{missing}");
    }
}
