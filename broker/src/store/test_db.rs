//! Tests' way of opening a sled database directly, for tests that write a
//! store, drop it, and open its files again.
//!
//! sled 0.34 releases its file lock only when its last reference goes, and
//! a log write still queued on its own I/O pool holds one for a moment
//! after the `Db` is dropped. An immediate reopen then fails with "could
//! not acquire lock" (seen twice in full test runs). The store's own open
//! retries the same way (`sled_store::open_sled`); this is its tests' copy,
//! which panics instead of returning an error.

use std::path::Path;
use std::time::Duration;

/// Opens the database at `path`, retrying for up to 5 s while a dropped
/// handle's lock is still held. Panics on any other error (a test's).
pub fn open(path: impl AsRef<Path>) -> sled::Db {
    let path = path.as_ref();
    let mut tries = 0;
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if tries < 100 && e.to_string().contains("could not acquire lock") => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("open {}: {e}", path.display()),
        }
    }
}
