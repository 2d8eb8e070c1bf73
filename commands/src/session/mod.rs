//! The session aggregate: one stream per login, `session/<uuid>`. It rotates refresh tokens by
//! generation, detects the reuse of a spent refresh token, and records revocation.

mod aggregate;
mod commands;
#[cfg(test)]
mod tests;

pub use aggregate::{RefreshOutcome, Session};
pub use commands::{SessionCommand, SessionError};
