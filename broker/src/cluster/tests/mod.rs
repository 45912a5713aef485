//! Three-node tests of the cluster layer in one process: over an in-memory
//! network whose links the tests cut, blackhole and delay (`memory`), and
//! over the real TCP peer network on loopback (`tcp`); membership changes
//! over the in-memory network (`membership`). The state machine is
//! a toy [`ApplyLog`](super::ApplyLog) that records what it applied.
//! `storage_suite` runs openraft's own storage conformance suite against
//! the sled log store and the state-machine adapter.
//!
//! Timing: heartbeats and elections are slower than production defaults'
//! lower bound would allow, every wait polls against a generous deadline,
//! so a loaded 2-core machine slows these tests down but does not fail them.

mod harness;
mod mem_network;
mod membership;
mod memory;
mod storage_suite;
mod tcp;
mod toy;
