//! The event log and snapshot store contract suites of `secureconnect-events`, run against
//! JetStream, each case on a stream and buckets of its own.

mod common;

use common::{new_log, new_snapshot_store};

secureconnect_events::event_log_contract_tests!(new_log);
secureconnect_events::snapshot_store_contract_tests!(new_snapshot_store);
