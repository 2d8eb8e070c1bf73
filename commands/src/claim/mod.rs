//! The uniqueness claims: one stream per normalized email address (`email_claim/<key>`) and
//! one per normalized username (`username_claim/<key>`). Appending to a claim stream with
//! optimistic concurrency is how the log itself decides who holds a value, so no projection
//! is consulted. The key is the SHA-256 of the normalized value, so that the value never
//! appears in a stream name.

mod aggregate;
mod commands;
mod key;
#[cfg(test)]
mod tests;

pub use aggregate::{
    ClaimHolder, ClaimKind, EmailClaim, EmailKind, UniqueClaim, UsernameClaim, UsernameKind,
};
pub use commands::{ClaimCommand, ClaimError};
pub use key::{claim_key, email_claim_key, username_claim_key};
