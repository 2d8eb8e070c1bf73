//! The embedded backends, used when no NATS server is configured: the event log and the
//! snapshot store in one SQLite file, and the in-process ephemeral bus and ticket store.
//!
//! The file contains an append-only `commits` table with one row per commit. A single writer
//! task owns the only read-write connection and applies every queued append in one
//! transaction (group commit), so one `fsync` covers many commits. Reads go through a
//! separate pool of read-only connections, which WAL mode lets run beside the writer. After
//! each transaction the writer broadcasts the new head position, which wakes the live feeds.

mod bus;
mod feed;
mod log;
mod rows;
mod schema;
mod snapshots;
mod tickets;
mod writer;

pub use bus::InProcessBus;
pub use log::EmbeddedLog;
pub use snapshots::EmbeddedSnapshotStore;
pub use tickets::InMemoryTicketStore;
