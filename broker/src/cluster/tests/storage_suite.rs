//! openraft's own storage conformance suite (`openraft::testing::Suite`)
//! run against our sled log store and state-machine adapter (over the toy
//! store): log state, votes, truncation, purge, membership, re-apply of
//! committed entries, snapshots.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};

use super::toy::Toy;
use crate::cluster::log_store::{open_db, LogStore};
use crate::cluster::state_machine::StateMachine;
use crate::cluster::types::{StorageError, TypeConfig};

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let log = LogStore::open(&db).unwrap();
        let machine = StateMachine::open(&db, &log, Arc::new(Toy::default()), dir.path())?;
        Ok((dir, log, machine))
    }
}

#[test]
fn the_sled_log_store_and_state_machine_pass_openraft_s_suite() {
    Suite::test_all(SledBuilder).unwrap();
}
