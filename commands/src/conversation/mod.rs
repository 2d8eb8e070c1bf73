//! The conversation aggregate: one stream per conversation, `conversation/<uuid>`. It owns who
//! belongs to a conversation and who may send in it. Its state holds the members, the
//! settings and a message count but no messages, so it stays the same size however many
//! messages are sent, and snapshots keep loading it cheap.

mod aggregate;
mod commands;
#[cfg(test)]
mod tests;

pub use aggregate::Conversation;
pub use commands::{ConversationCommand, ConversationError};
