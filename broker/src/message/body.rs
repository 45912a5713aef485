//! [`Body`]: a message's payload, held in memory or paged out to the store.
//!
//! A queue may hold more persistent messages than fit in memory. Their
//! records are on disk anyway, so once the store's body budget
//! (`store.memory_limit`) is used up the store's log writer drops the
//! in-memory copy of newly written bodies ([`Body::page_out`]); what stays in
//! memory is the message's headers and bookkeeping. A paged body is read back
//! from its [`BodySource`] each time it is needed (when a session writes the
//! message to a consumer, or a dead letter is copied) and not cached again, so
//! paging never grows memory behind the budget's back.
//!
//! Only bodies the store holds are ever paged: the router marks them
//! ([`Body::mark_stored`]) before publishing, and a stored body counts
//! against the store's budget instead of its destination's memory limit
//! (see `Message::footprint`).

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Reads paged-out bodies back. Implemented by the durable store.
pub trait BodySource: Send + Sync {
    /// The body of the stored message `seq` (the store finds its record
    /// through its seq index).
    fn read_body(&self, seq: u64) -> Result<Bytes, String>;
}

/// A paged body could not be read back.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("cannot read a paged message body from the store (message {seq}): {reason}")]
pub struct PageError {
    /// The message's seq.
    pub seq: u64,
    /// What the store said.
    pub reason: String,
}

/// A message body. Cheap to read while resident (a reference count), one
/// store read when paged.
pub struct Body {
    len: usize,
    /// The store keeps this body: it may be paged out.
    stored: AtomicBool,
    /// Locked only to read or swap the handle, never across I/O.
    where_: Mutex<Location>,
}

#[derive(Clone)]
enum Location {
    Resident(Bytes),
    Paged {
        source: Arc<dyn BodySource>,
        /// The message's seq, what the source finds the body by.
        seq: u64,
    },
}

impl Body {
    /// A resident body.
    pub fn new(bytes: Bytes) -> Body {
        Body {
            len: bytes.len(),
            stored: AtomicBool::new(false),
            where_: Mutex::new(Location::Resident(bytes)),
        }
    }

    /// A body of `len` bytes that only the store holds (recovered beyond
    /// the budget).
    pub fn paged(len: usize, source: Arc<dyn BodySource>, seq: u64) -> Body {
        Body {
            len,
            stored: AtomicBool::new(true),
            where_: Mutex::new(Location::Paged { source, seq }),
        }
    }

    /// Length in bytes, resident or not.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes: shared when resident, read from the store when paged.
    pub fn get(&self) -> Result<Bytes, PageError> {
        let location = self.location();
        match location {
            Location::Resident(bytes) => Ok(bytes),
            // The read happens outside the lock: a slow disk delays only
            // this reader.
            Location::Paged { source, seq } => source
                .read_body(seq)
                .map_err(|reason| PageError { seq, reason }),
        }
    }

    /// A new resident body with the same bytes (for a copy of the message
    /// that the store will keep under its own record).
    pub fn copy(&self) -> Result<Body, PageError> {
        self.get().map(Body::new)
    }

    /// Whether the bytes are in memory.
    pub fn is_resident(&self) -> bool {
        matches!(self.location(), Location::Resident(_))
    }

    /// Marks the body as kept by the store (set by the router before the
    /// message is visible to anyone, never cleared).
    pub fn mark_stored(&self) {
        self.stored.store(true, Ordering::Relaxed);
    }

    /// Whether the store keeps this body.
    pub fn is_stored(&self) -> bool {
        self.stored.load(Ordering::Relaxed)
    }

    /// Drops the in-memory copy; later reads go to `source` for the message
    /// `seq`.
    /// Called by the store's writer once the record is applied, so every
    /// read after this finds it. Returns the bytes freed (0 if already
    /// paged).
    pub fn page_out(&self, source: &Arc<dyn BodySource>, seq: u64) -> usize {
        let mut at = self.where_.lock().unwrap_or_else(|e| e.into_inner());
        match *at {
            Location::Resident(_) => {
                *at = Location::Paged {
                    source: source.clone(),
                    seq,
                };
                self.len
            }
            Location::Paged { .. } => 0,
        }
    }

    fn location(&self) -> Location {
        self.where_
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::new(Bytes::new())
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Body {
        Body::new(bytes)
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Body {
        Body::new(Bytes::from_static(bytes))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("len", &self.len)
            .field("resident", &self.is_resident())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Disk {
        reads: AtomicUsize,
        fail: bool,
    }

    impl BodySource for Disk {
        fn read_body(&self, seq: u64) -> Result<Bytes, String> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            if self.fail {
                return Err("disk on fire".into());
            }
            Ok(Bytes::from(format!("body-{seq}")))
        }
    }

    fn disk(fail: bool) -> Arc<dyn BodySource> {
        Arc::new(Disk {
            reads: AtomicUsize::new(0),
            fail,
        })
    }

    #[test]
    fn a_paged_body_is_read_back_each_time_and_keeps_its_length() {
        let body = Body::new(Bytes::from_static(b"in memory"));
        assert!(body.is_resident());
        assert_eq!(body.get().unwrap(), "in memory");
        let source = disk(false);
        assert_eq!(body.page_out(&source, 7), 9);
        assert_eq!(body.page_out(&source, 7), 0, "paged twice");
        assert!(!body.is_resident());
        assert_eq!(body.len(), 9);
        assert_eq!(body.get().unwrap(), "body-7");
        assert_eq!(body.get().unwrap(), "body-7");
        assert!(!body.is_resident(), "a read must not cache it again");
    }

    #[test]
    fn a_failed_read_names_the_message() {
        let body = Body::paged(3, disk(true), 42);
        let e = body.get().unwrap_err();
        assert_eq!(e.seq, 42);
        assert!(e.to_string().contains("disk on fire"), "{e}");
        assert!(body.is_stored());
    }
}
