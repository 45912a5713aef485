//! [`PendingQueue`]: messages waiting for a consumer, highest priority first and
//! FIFO within a priority.

use super::Message;
use std::collections::VecDeque;
use std::sync::Arc;

/// A message waiting in a queue or in a topic subscriber's backlog.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The message.
    pub message: Arc<Message>,
    /// Deliveries so far (0 for a message never delivered).
    pub redeliveries: u32,
}

/// Ten FIFO lanes, one per JMS priority. Popping takes from the highest
/// non-empty lane, so ordering costs O(1) per message.
#[derive(Debug, Default)]
pub struct PendingQueue {
    lanes: [VecDeque<Pending>; 10],
    len: usize,
    /// Footprints of the messages held, for byte limits.
    bytes: usize,
    /// Persistent messages among them (flow control of a queue that keeps
    /// a store backlog counts only the others).
    persistent: usize,
}

impl PendingQueue {
    /// Appends a new message behind others of its priority.
    pub fn push_back(&mut self, p: Pending) {
        let lane = usize::from(p.message.priority.min(9));
        self.bytes += p.message.footprint();
        self.persistent += usize::from(p.message.persistent);
        self.lanes[lane].push_back(p);
        self.len += 1;
    }

    /// Puts a returned message in front of others of its priority. Call in
    /// reverse delivery order to keep returned messages in their old order.
    pub fn push_front(&mut self, p: Pending) {
        let lane = usize::from(p.message.priority.min(9));
        self.bytes += p.message.footprint();
        self.persistent += usize::from(p.message.persistent);
        self.lanes[lane].push_front(p);
        self.len += 1;
    }

    /// Takes the next message: highest priority, oldest first.
    pub fn pop(&mut self) -> Option<Pending> {
        self.pop_from(0)
    }

    /// [`PendingQueue::pop`] among priorities `floor` and above only: a
    /// queue whose store backlog holds messages of priority `floor` keeps
    /// lower ones waiting until those are read back.
    pub fn pop_from(&mut self, floor: u8) -> Option<Pending> {
        let floor = usize::from(floor.min(9));
        let lane = self.lanes[floor..]
            .iter_mut()
            .rev()
            .find(|l| !l.is_empty())?;
        let p = lane.pop_front()?;
        self.taken(&p);
        Some(p)
    }

    /// Messages waiting with priority `floor` or above.
    pub fn len_from(&self, floor: u8) -> usize {
        self.lanes[usize::from(floor.min(9))..]
            .iter()
            .map(VecDeque::len)
            .sum()
    }

    fn taken(&mut self, p: &Pending) {
        self.len -= 1;
        self.bytes = self.bytes.saturating_sub(p.message.footprint());
        self.persistent -= usize::from(p.message.persistent).min(self.persistent);
    }

    /// Removes and returns the first message (in pop order) that `accept`
    /// takes, leaving the others in place. Used for selectors and groups.
    pub fn pop_matching(&mut self, accept: impl FnMut(&Pending) -> bool) -> Option<Pending> {
        self.pop_matching_from(0, accept)
    }

    /// [`PendingQueue::pop_matching`] among priorities `floor` and above
    /// (see [`PendingQueue::pop_from`]).
    pub fn pop_matching_from(
        &mut self,
        floor: u8,
        mut accept: impl FnMut(&Pending) -> bool,
    ) -> Option<Pending> {
        let floor = usize::from(floor.min(9));
        for lane in self.lanes[floor..].iter_mut().rev() {
            if let Some(i) = lane.iter().position(&mut accept) {
                let p = lane.remove(i)?;
                self.taken(&p);
                return Some(p);
            }
        }
        None
    }

    /// Takes the oldest message of the lowest non-empty priority: the one a
    /// full buffer drops first.
    pub fn pop_oldest(&mut self) -> Option<Pending> {
        let lane = self.lanes.iter_mut().find(|l| !l.is_empty())?;
        let p = lane.pop_front()?;
        self.taken(&p);
        Some(p)
    }

    /// Number of waiting messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes (footprints) of the waiting messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Persistent messages waiting.
    pub fn persistent_len(&self) -> usize {
        self.persistent
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes everything, in pop order.
    pub fn drain(&mut self) -> Vec<Pending> {
        let mut out = Vec::with_capacity(self.len);
        while let Some(p) = self.pop() {
            out.push(p);
        }
        out
    }

    /// The messages of one priority, oldest first (browsing a queue whose
    /// backlog is partly in the store, lane by lane).
    pub fn lane(&self, priority: u8) -> impl Iterator<Item = &Pending> + '_ {
        self.lanes[usize::from(priority.min(9))].iter()
    }

    /// Iterates in pop order without removing (for browsing and metrics).
    pub fn iter(&self) -> impl Iterator<Item = &Pending> + '_ {
        self.lanes.iter().rev().flat_map(|l| l.iter())
    }
}
