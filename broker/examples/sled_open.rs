//! `sled_open`: how long sled 0.34's own open takes at depth, apart from
//! the broker's recovery: with the whole log replayed (a store written
//! since its last open, as when every checkpoint was skipped) and with a
//! fresh snapshot (the open right after an open or a checkpoint).
//!
//! It does not run the broker. `fill` writes `N` messages in the key shape
//! of a store format (`--keys 3`: format 5's `M` record, `Q` order entry
//! and `S` index; `--keys 2`: format 6's `Q` with the record, and `S`), in
//! sled batches of 100 messages of 1,300 bytes, ten lanes, flushed every
//! 10,000, and ends without closing the database (as a `kill -9`). `open`
//! opens it, reads the first record of a lane and reports both times. The
//! process's peak RSS is what `/usr/bin/time -f %M` reports around it.
//!
//! ```sh
//! cargo build --release -p ferromq-broker --example sled_open
//! target/release/examples/sled_open fill /tmp/so 4000000 3
//! for i in 1 2 3; do /usr/bin/time -f "rss %M KB" target/release/examples/sled_open open /tmp/so; done
//! ```
//!
//! Results: BENCHMARKS.md "Deep queues", raw output in
//! bench-client/results/sled-open-2026-12-08.

use std::time::Instant;

const BODY: usize = 1300;
const PER_BATCH: u64 = 100;
const FLUSH_EVERY: u64 = 10_000;

fn open(path: &str) -> Result<sled::Db, String> {
    let started = Instant::now();
    // As the broker opens it (store/sled_store.rs): 128 MiB of cache, no
    // timer flusher.
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(128 << 20)
        .flush_every_ms(None)
        .open()
        .map_err(|e| format!("opening {path}: {e}"))?;
    eprintln!("open {path}: {} ms", started.elapsed().as_millis());
    Ok(db)
}

fn fill(path: &str, count: u64, keys: u32) -> Result<(), String> {
    let db = open(path)?;
    let body = vec![b'x'; BODY];
    let started = Instant::now();
    let mut i = 0u64;
    while i < count {
        let mut batch = sled::Batch::default();
        for _ in 0..PER_BATCH {
            let lane = (i % 10) as u8;
            let mut q = vec![b'Q', lane];
            q.extend_from_slice(&i.to_be_bytes());
            let mut s = vec![b'S'];
            s.extend_from_slice(&i.to_be_bytes());
            if keys == 3 {
                let mut m = vec![b'M'];
                m.extend_from_slice(&i.to_be_bytes());
                batch.insert(m, body.clone());
                batch.insert(q, vec![0u8; 9]);
            } else {
                batch.insert(q, body.clone());
            }
            batch.insert(s, vec![0u8; 20]);
            i += 1;
        }
        db.apply_batch(batch).map_err(|e| e.to_string())?;
        if i % FLUSH_EVERY == 0 {
            db.flush().map_err(|e| e.to_string())?;
        }
    }
    db.flush().map_err(|e| e.to_string())?;
    eprintln!("filled {count} in {} ms", started.elapsed().as_millis());
    // No clean close, as after a kill -9: sled writes its snapshot only
    // at the next open.
    std::mem::forget(db);
    Ok(())
}

fn read_first(path: &str) -> Result<(), String> {
    let db = open(path)?;
    let started = Instant::now();
    let first = db
        .scan_prefix([b'Q', 0u8])
        .next()
        .transpose()
        .map_err(|e| e.to_string())?;
    eprintln!(
        "first read {} ms (found: {})",
        started.elapsed().as_millis(),
        first.is_some()
    );
    std::mem::forget(db);
    Ok(())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: sled_open fill PATH COUNT KEYS(2|3) | sled_open open PATH";
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("fill"), Some(path)) => {
            let count = args.get(3).and_then(|n| n.parse().ok()).ok_or(usage)?;
            let keys = args.get(4).and_then(|n| n.parse().ok()).ok_or(usage)?;
            if keys != 2 && keys != 3 {
                return Err(usage.into());
            }
            fill(path, count, keys)
        }
        (Some("open"), Some(path)) => read_first(path),
        _ => Err(usage.into()),
    }
}
