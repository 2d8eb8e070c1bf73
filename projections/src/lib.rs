//! The read side: the projector runtime that consumes the event log in batches, the read
//! models it keeps on PostgreSQL or on the embedded SQLite store, and the queries the REST
//! endpoints run against them.

pub mod queries;

pub use queries::{
    ConversationView, MessageCursor, MessagePage, MessageView, ParticipantView, ReadModels,
    UserView,
};
