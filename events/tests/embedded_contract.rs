//! Runs the event log and snapshot store contract suites against the embedded SQLite
//! backends, each case on its own file in its own temporary folder.

use std::ops::Deref;

use secureconnect_events::embedded::{EmbeddedLog, EmbeddedSnapshotStore};
use secureconnect_events::{EventLog, SnapshotStore};
use tempfile::TempDir;

/// An embedded log on a fresh file. Dropping it drops the log, then removes the folder.
struct LogFixture {
    log: EmbeddedLog,
    _folder: TempDir,
}

impl Deref for LogFixture {
    type Target = dyn EventLog;

    fn deref(&self) -> &Self::Target {
        &self.log
    }
}

async fn new_log() -> LogFixture {
    let folder = tempfile::tempdir().expect("failed to create a temporary folder");
    let log = EmbeddedLog::open(&folder.path().join("events.sqlite3"))
        .await
        .expect("failed to open the embedded log");
    LogFixture {
        log,
        _folder: folder,
    }
}

/// An embedded snapshot store on a fresh file. Dropping it drops the store and its log, then
/// removes the folder.
struct SnapshotFixture {
    store: EmbeddedSnapshotStore,
    _folder: TempDir,
}

impl Deref for SnapshotFixture {
    type Target = dyn SnapshotStore;

    fn deref(&self) -> &Self::Target {
        &self.store
    }
}

async fn new_snapshot_store() -> SnapshotFixture {
    let folder = tempfile::tempdir().expect("failed to create a temporary folder");
    let log = EmbeddedLog::open(&folder.path().join("events.sqlite3"))
        .await
        .expect("failed to open the embedded log");
    SnapshotFixture {
        store: log.snapshot_store(),
        _folder: folder,
    }
}

secureconnect_events::event_log_contract_tests!(new_log);
secureconnect_events::snapshot_store_contract_tests!(new_snapshot_store);
