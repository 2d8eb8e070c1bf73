//! The user aggregate: one stream per account, `user/<uuid>`. It decides whether an account
//! can be registered, and holds what login needs. Email and username uniqueness live in the
//! claim aggregates, which registration coordinates.

mod aggregate;
mod commands;
#[cfg(test)]
mod tests;

pub use aggregate::{RegisteredUser, User};
pub use commands::{UserCommand, UserError};
