//! The production event log on NATS JetStream, and what else the API nodes share over NATS:
//! the snapshot and ticket key-value buckets and the core-NATS subjects of ephemeral frames.
//!
//! [`JetStreamBackend::connect`] opens one connection, creates or checks the append-only
//! event stream and both buckets, and hands out [`JetStreamLog`], [`JetStreamSnapshotStore`],
//! [`JetStreamTicketStore`] and [`NatsEphemeralBus`], which implement the traits of
//! `secureconnect-events`.

mod backend;
mod buckets;
mod commit;
mod config;
mod ephemeral;
mod feed;
mod log;
mod reads;
mod snapshots;
mod tickets;

use std::fmt::Display;

use secureconnect_events::LogError;

pub use backend::JetStreamBackend;
pub use config::JetStreamConfig;
pub use ephemeral::NatsEphemeralBus;
pub use log::JetStreamLog;
pub use snapshots::JetStreamSnapshotStore;
pub use tickets::JetStreamTicketStore;

/// Wraps a NATS failure as [`LogError::Unavailable`], prefixed with what was being done.
pub(crate) fn unavailable(context: impl Display, error: impl Display) -> LogError {
    LogError::Unavailable(format!("{context}: {error}"))
}
