//! Messages parked behind a queue lane's stored messages (the queue's
//! [`super::backlog::Backlog`] keeps a [`Parking`]).
//!
//! One order for persistent and non-persistent messages (as ActiveMQ's
//! store cursor keeps): a non-persistent message is never stored, so it
//! cannot be left to the store behind the persistent ones there. A message
//! that arrives while its lane has stored messages is *parked* instead: held
//! in memory, outside the window, tagged with how many messages had been
//! left to that lane when it arrived (`Lane::left`). The cursor counts the
//! lane's messages as it reads them back (`Lane::read`), and a landing
//! adds them to the window one at a time, each followed by the parked
//! messages whose tag it reaches; when the lane has nothing stored left
//! (read out, purged, given up, or an append refused) every parked message
//! joins. So a queue delivers in send order within a lane, whichever the
//! persistence, and a producer mixing both keeps its order (its persistent
//! message is counted before its next message is parked). Two producers
//! racing can place a parked message one stored message early or late
//! (counting and appending a left message are two steps), as their relative
//! order is not defined anyway. A persistent message the window holds is
//! parked the same way in that race.
//!
//! Memory bound of parking: parked messages are held, and counted, like
//! waiting ones: their bytes count against `destinations.memory_limit` and
//! their number against the flow-control window (`account`), so their
//! producers are held by the same flow control as before; what the store
//! holds is not counted. A restart loses them like any non-persistent
//! message. Browsing shows a lane's parked messages after what it read of
//! that lane's stored ones (their exact places are known only as the
//! cursor reads them).

use super::super::pending::Pending;
use super::backlog::LANES;
use std::collections::VecDeque;

/// A message held in memory behind its lane's stored messages: it joins the
/// window once the cursor has read `after` of the lane's messages.
#[derive(Debug)]
struct Parked {
    after: u64,
    pending: Pending,
}

/// The parked messages of one queue, by lane, in arrival order.
#[derive(Debug)]
pub struct Parking {
    lanes: [VecDeque<Parked>; LANES],
    len: usize,
}

impl Default for Parking {
    fn default() -> Parking {
        Parking {
            lanes: std::array::from_fn(|_| VecDeque::new()),
            len: 0,
        }
    }
}

impl Parking {
    fn index(priority: u8) -> usize {
        usize::from(priority.min(9))
    }

    /// Parks `pending` behind the first `after` messages left to its lane.
    pub fn park(&mut self, after: u64, pending: Pending) {
        let p = Parking::index(pending.message.priority);
        self.lanes[p].push_back(Parked { after, pending });
        self.len += 1;
    }

    /// Messages parked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Bytes they hold.
    pub fn bytes(&self) -> usize {
        self.lanes
            .iter()
            .flatten()
            .map(|x| x.pending.message.footprint())
            .sum()
    }

    /// The parked messages of lane `priority` whose place is within the
    /// first `read` messages of the lane (`all`: every one), in order.
    pub fn release(&mut self, priority: u8, read: u64, all: bool) -> Vec<Pending> {
        let lane = &mut self.lanes[Parking::index(priority)];
        let mut out = Vec::new();
        while lane.front().is_some_and(|x| all || x.after <= read) {
            if let Some(x) = lane.pop_front() {
                out.push(x.pending);
            }
        }
        self.len -= out.len();
        out
    }

    /// Every parked message, highest lane first.
    pub fn drain(&mut self) -> Vec<Pending> {
        self.len = 0;
        self.lanes
            .iter_mut()
            .rev()
            .flat_map(|q| q.drain(..).map(|x| x.pending))
            .collect()
    }

    /// The parked messages of lane `priority`, in order.
    pub fn lane(&self, priority: u8) -> impl Iterator<Item = &Pending> + '_ {
        self.lanes[Parking::index(priority)]
            .iter()
            .map(|x| &x.pending)
    }
}
