//! Commands to the session aggregate and the rules they can break.

use chrono::{DateTime, Utc};
use secureconnect_events::domain::SessionRevocationReason;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum SessionCommand {
    /// Opens the session with refresh token generation 1. Accepted only on an empty stream.
    Start {
        session_id: Uuid,
        user_id: Uuid,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    /// Exchanges the refresh token of `presented_generation`. The current generation is
    /// rotated to the next one. An older generation means a spent token was presented again,
    /// so the session is revoked: the command succeeds so that the revocation is recorded,
    /// and the caller must still reject the request (see [`super::RefreshOutcome`]).
    Refresh {
        presented_generation: u64,
        now: DateTime<Utc>,
    },
    /// Ends the session. Revoking a revoked session records nothing.
    Revoke {
        reason: SessionRevocationReason,
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session has already started")]
    AlreadyStarted,
    #[error("the session expiry {expires_at} is not after its start {now}")]
    ExpiryNotInFuture {
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    #[error("the session does not exist")]
    NotFound,
    #[error("the session was revoked")]
    Revoked,
    #[error("the session expired at {expires_at}")]
    Expired { expires_at: DateTime<Utc> },
    /// A generation that was never issued. Refresh tokens are signed, so only a bug can
    /// produce one, and the session is left alone.
    #[error("refresh token generation {presented} was never issued, the current one is {current}")]
    UnknownGeneration { presented: u64, current: u64 },
}
