//! A toy state machine: records every applied payload in order; its
//! snapshot is that list.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::cluster::{ApplyError, ApplyLog, LogIndex};

#[derive(Default)]
pub(super) struct Toy {
    state: Mutex<ToyState>,
    installs: AtomicUsize,
}

#[derive(Default)]
struct ToyState {
    payloads: Vec<Vec<u8>>,
    last: Option<LogIndex>,
}

impl Toy {
    /// Everything applied, in order.
    pub(super) fn payloads(&self) -> Vec<Vec<u8>> {
        self.state.lock().unwrap().payloads.clone()
    }

    /// How many snapshots were installed.
    pub(super) fn installs(&self) -> usize {
        self.installs.load(Ordering::SeqCst)
    }
}

impl ApplyLog for Toy {
    fn apply(&self, index: LogIndex, payload: &[u8]) -> Result<(), ApplyError> {
        let mut state = self.state.lock().unwrap();
        if state.last.is_some_and(|last| index <= last) {
            return Ok(());
        }
        state.payloads.push(payload.to_vec());
        state.last = Some(index);
        Ok(())
    }

    fn snapshot(&self, out: &mut dyn std::io::Write) -> Result<(), ApplyError> {
        let state = self.state.lock().unwrap();
        serde_json::to_writer(out, &state.payloads)
            .map_err(|e| ApplyError::new(format!("encoding the toy snapshot: {e}")))
    }

    fn install_snapshot(
        &self,
        index: LogIndex,
        data: &mut dyn std::io::Read,
    ) -> Result<(), ApplyError> {
        let payloads: Vec<Vec<u8>> = serde_json::from_reader(data)
            .map_err(|e| ApplyError::new(format!("decoding the toy snapshot: {e}")))?;
        let mut state = self.state.lock().unwrap();
        state.payloads = payloads;
        state.last = Some(index);
        self.installs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn last_applied(&self) -> Option<LogIndex> {
        self.state.lock().unwrap().last
    }
}
