//! The claim aggregate's state and its decisions, shared by email and username claims. The
//! kind is a type parameter so that each kind is its own aggregate type with its own streams.

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use secureconnect_events::AggregateType;
use secureconnect_events::domain::{ClaimEvent, KeyClaimed, KeyReleased};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{ClaimCommand, ClaimError};
use crate::bus::ManagedAggregate;

/// The kind of value a claim reserves.
pub trait ClaimKind: Send + Sync + 'static {
    const AGGREGATE_TYPE: AggregateType;
    /// The string form of `AGGREGATE_TYPE`, spelled out because `AggregateType::as_str` is
    /// not a `const fn`.
    const TYPE_NAME: &'static str;
}

/// Claims on normalized email addresses.
pub enum EmailKind {}

/// Claims on lower-cased usernames.
pub enum UsernameKind {}

impl ClaimKind for EmailKind {
    const AGGREGATE_TYPE: AggregateType = AggregateType::EmailClaim;
    const TYPE_NAME: &'static str = "email_claim";
}

impl ClaimKind for UsernameKind {
    const AGGREGATE_TYPE: AggregateType = AggregateType::UsernameClaim;
    const TYPE_NAME: &'static str = "username_claim";
}

pub type EmailClaim = UniqueClaim<EmailKind>;
pub type UsernameClaim = UniqueClaim<UsernameKind>;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct UniqueClaim<K: ClaimKind> {
    holder: Option<ClaimHolder>,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

/// The owner of a claimed value and the time of the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimHolder {
    pub owner_id: Uuid,
    pub claimed_at: DateTime<Utc>,
}

impl<K: ClaimKind> UniqueClaim<K> {
    /// Returns the current holder, or `None` when the value is free.
    pub fn holder(&self) -> Option<ClaimHolder> {
        self.holder
    }
}

// Written by hand because derives would require the kind marker itself to be Clone, Default
// and Debug.
impl<K: ClaimKind> Clone for UniqueClaim<K> {
    fn clone(&self) -> Self {
        UniqueClaim {
            holder: self.holder,
            kind: PhantomData,
        }
    }
}

impl<K: ClaimKind> Default for UniqueClaim<K> {
    fn default() -> Self {
        UniqueClaim {
            holder: None,
            kind: PhantomData,
        }
    }
}

impl<K: ClaimKind> PartialEq for UniqueClaim<K> {
    fn eq(&self, other: &Self) -> bool {
        self.holder == other.holder
    }
}

impl<K: ClaimKind> fmt::Debug for UniqueClaim<K> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("UniqueClaim")
            .field("kind", &K::AGGREGATE_TYPE)
            .field("holder", &self.holder)
            .finish()
    }
}

impl<K: ClaimKind> Aggregate for UniqueClaim<K> {
    const TYPE: &'static str = K::TYPE_NAME;
    type Command = ClaimCommand;
    type Event = ClaimEvent;
    type Error = ClaimError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ClaimCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ClaimError> {
        match command {
            ClaimCommand::Claim {
                owner_id,
                now,
                taken_over_from,
            } => {
                let taken_over_from = match self.holder {
                    None => None,
                    Some(holder) if holder.owner_id == owner_id => return Ok(()),
                    Some(holder) if taken_over_from == Some(holder.owner_id) => {
                        Some(holder.owner_id)
                    }
                    Some(holder) => {
                        return Err(ClaimError::AlreadyClaimed {
                            owner_id: holder.owner_id,
                            claimed_at: holder.claimed_at,
                        });
                    }
                };
                let event = KeyClaimed {
                    owner_id,
                    claimed_at: now,
                    taken_over_from,
                };
                sink.write(ClaimEvent::KeyClaimed(event), self).await;
            }
            ClaimCommand::Release { owner_id, now } => {
                if self.holder.map(|holder| holder.owner_id) != Some(owner_id) {
                    return Err(ClaimError::NotHeldBy { owner_id });
                }
                let event = KeyReleased {
                    owner_id,
                    released_at: now,
                };
                sink.write(ClaimEvent::KeyReleased(event), self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ClaimEvent) {
        self.holder = match event {
            ClaimEvent::KeyClaimed(event) => Some(ClaimHolder {
                owner_id: event.owner_id,
                claimed_at: event.claimed_at,
            }),
            ClaimEvent::KeyReleased(_) => None,
        };
    }
}

impl<K: ClaimKind> ManagedAggregate for UniqueClaim<K> {
    const AGGREGATE_TYPE: AggregateType = K::AGGREGATE_TYPE;
    const SNAPSHOT_EVERY: Option<u64> = None;
    const STATE_VERSION: u32 = 1;
}
