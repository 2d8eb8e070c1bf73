//! The read side: the projector runtime that consumes the event log in batches, the read
//! models it keeps on PostgreSQL or on the embedded SQLite store, and the queries the REST
//! endpoints run against them.
//!
//! [`ReadModelStore`] opens a database and hands out the queries ([`ReadModels`]) and the
//! projection positions ([`ProjectionPositions`]). [`run_projections`] keeps the read models
//! current from an [`secureconnect_events::EventLog`].

mod batch;
mod changes;
mod name;
mod options;
mod positions;
pub mod queries;
mod runtime;
mod status;
mod store;

pub use changes::UndecodableEvent;
pub use name::{ProjectionName, UnknownProjection};
#[cfg(feature = "test-hooks")]
pub use options::{BeforeCommitHook, PendingBatch};
pub use options::{ProjectorOptions, StoreOptions};
pub use positions::{ProjectionPositions, WaitTimedOut};
pub use queries::{
    ConversationView, MessageCursor, MessagePage, MessageView, ParticipantView, ReadModels,
    UserView,
};
pub use runtime::{AppliedBatch, ProjectionsStopped, ProjectorRuntime, run_projections};
pub use status::{ProjectionStatus, StatusError};
pub use store::{Checkpoint, ReadModelStore, StoreError, migrate_postgres};
