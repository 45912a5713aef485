//! Message rates for the overview and the destination listing: a sampler
//! (one tick a second, from the admin server's task) keeps the previous
//! counter values and turns the difference into per-second rates. Reading a
//! rate never touches a destination's lock.

use crate::router::Router;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Per-second rates at the last tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Messages published.
    pub published: f64,
    /// Messages acknowledged (consumed).
    pub acked: f64,
    /// Redeliveries.
    pub redelivered: f64,
}

type Counters = (u64, u64, u64);

#[derive(Default)]
struct Sample {
    at: Option<Instant>,
    previous: HashMap<Arc<str>, Counters>,
    rates: HashMap<Arc<str>, Rate>,
    total: Rate,
}

/// The sampler's state.
#[derive(Default)]
pub struct Rates {
    inner: Mutex<Sample>,
}

fn per_second(now: u64, before: u64, seconds: f64) -> f64 {
    now.saturating_sub(before) as f64 / seconds
}

impl Rates {
    /// Takes a sample of every destination's counters.
    pub fn tick(&self, router: &Router) {
        let now = Instant::now();
        let current: HashMap<Arc<str>, Counters> = router
            .destinations()
            .iter()
            .map(|d| {
                let s = &d.stats;
                (
                    d.address.name.clone(),
                    (
                        s.enqueued.load(Ordering::Relaxed),
                        s.dequeued.load(Ordering::Relaxed),
                        s.redelivered.load(Ordering::Relaxed),
                    ),
                )
            })
            .collect();
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = st.at {
            let seconds = now.duration_since(at).as_secs_f64().max(0.001);
            let mut total = Rate::default();
            let mut rates = HashMap::with_capacity(current.len());
            for (name, c) in &current {
                let before = st.previous.get(name).copied().unwrap_or_default();
                let r = Rate {
                    published: per_second(c.0, before.0, seconds),
                    acked: per_second(c.1, before.1, seconds),
                    redelivered: per_second(c.2, before.2, seconds),
                };
                total.published += r.published;
                total.acked += r.acked;
                total.redelivered += r.redelivered;
                rates.insert(name.clone(), r);
            }
            st.rates = rates;
            st.total = total;
        }
        st.at = Some(now);
        st.previous = current;
    }

    /// The broker-wide rates.
    pub fn total(&self) -> Rate {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// The rates of destination `name` (zero before two samples).
    pub fn of(&self, name: &str) -> Rate {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rates
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    /// The rates of many destinations under one lock.
    pub fn of_many<'a>(&self, names: impl Iterator<Item = &'a str>) -> Vec<Rate> {
        let st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        names
            .map(|n| st.rates.get(n).copied().unwrap_or_default())
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::router::{Address, RouterConfig};
    use crate::store::memory::MemoryStore;

    #[test]
    fn rates_come_from_the_difference_between_two_ticks() {
        let router = Router::new(RouterConfig::default(), Arc::new(MemoryStore));
        let q = router
            .destination(&Address::parse("/queue/r", 1).unwrap(), 1)
            .unwrap();
        let rates = Rates::default();
        rates.tick(&router);
        assert_eq!(rates.total(), Rate::default());
        q.stats.enqueued.fetch_add(100, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(50));
        rates.tick(&router);
        let r = rates.of("/queue/r");
        assert!(r.published > 0.0 && r.published <= 100.0 / 0.05, "{r:?}");
        assert_eq!(r.acked, 0.0);
        assert_eq!(rates.total().published, r.published);
        assert_eq!(rates.of("/queue/none"), Rate::default());
    }
}
