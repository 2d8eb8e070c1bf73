//! Aggregates, their commands and domain errors, the validated inputs they trust, the command
//! bus that appends their events, and the processes that span several aggregates
//! (registration and opening a conversation).

pub mod bus;
pub mod claim;
pub mod conversation;
pub mod conversation_process;
pub mod input;
pub mod registration;
pub mod session;
pub mod user;

pub use bus::{BusError, BusOptions, CommandBus, CommandError, Executed, ManagedAggregate};
