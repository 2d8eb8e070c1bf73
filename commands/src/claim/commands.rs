//! Commands to a claim and the rules they can break.

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum ClaimCommand {
    /// Reserves the value for `owner_id`. Succeeds on a free value, and on a held one only
    /// when `taken_over_from` names the current holder, whose registration was abandoned.
    /// A claim by the current holder records nothing.
    Claim {
        owner_id: Uuid,
        now: DateTime<Utc>,
        taken_over_from: Option<Uuid>,
    },
    /// Frees the value. Only its holder can release it.
    Release { owner_id: Uuid, now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The value is held by someone else. The holder and the claim time let registration
    /// decide whether the holder's registration stalled.
    #[error("the value is already claimed by {owner_id} since {claimed_at}")]
    AlreadyClaimed {
        owner_id: Uuid,
        claimed_at: DateTime<Utc>,
    },
    #[error("the value is not claimed by {owner_id}")]
    NotHeldBy { owner_id: Uuid },
}
