//! Registration, which spans three aggregates, and the lookup that login uses.
//!
//! Email addresses and usernames are unique because the log lets only one owner hold each
//! claim stream, never because a projection was checked first. Registration runs three steps:
//! 1. claim the email address for a fresh user id,
//! 2. claim the username,
//! 3. append `UserRegistered` to `user/<id>`, which must be empty.
//!
//! When step 2 finds the username taken, the email claim is released again. A registration
//! that stopped between steps (a crash, a lost connection) leaves claims whose owner never
//! registered. Once such a claim is older than [`BusOptions::claim_grace_period`], another
//! registration fences it by appending `RegistrationAbandoned` to the old owner's empty user
//! stream. After that the old registration can never reach step 3, so the claim can be taken
//! over safely. When the old owner's stream already contains `UserRegistered`, the value is
//! taken for good.
//!
//! [`BusOptions::claim_grace_period`]: crate::bus::BusOptions::claim_grace_period

use std::fmt;

use chrono::{DateTime, Utc};
use secureconnect_events::{AggregateId, CommitMetadata};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::bus::{BusError, CommandBus, CommandError};
use crate::claim::{
    ClaimCommand, ClaimError, ClaimKind, EmailClaim, EmailKind, UniqueClaim, UsernameKind,
    email_claim_key, username_claim_key,
};
use crate::input::{DisplayName, Email, Username};
use crate::user::{RegisteredUser, User, UserCommand, UserError};

/// How many times one claim step tries to take over a value whose holder keeps changing.
const MAX_TAKEOVER_ROUNDS: usize = 3;

#[derive(Clone)]
pub struct NewRegistration {
    pub email: Email,
    pub username: Username,
    pub display_name: DisplayName,
    /// An argon2id PHC string. The caller hashes the password off the async runtime.
    pub password_hash: String,
    pub now: DateTime<Utc>,
}

impl fmt::Debug for NewRegistration {
    // Written by hand so that the password hash never reaches a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NewRegistration")
            .field("email", &self.email)
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("password_hash", &"[REDACTED]")
            .field("now", &self.now)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub user_id: Uuid,
    /// The log position of the `UserRegistered` commit.
    pub position: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the email address is already registered")]
    EmailTaken,
    #[error("the username is already taken")]
    UsernameTaken,
    /// The user aggregate rejected step 3. `RegistrationAbandoned` means that this
    /// registration took longer than the grace period and another one declared it dead. Its
    /// claims are then released where it still has them, so the client may simply retry.
    #[error(transparent)]
    Rejected(UserError),
    #[error(transparent)]
    Command(BusError),
}

/// Registers a new account under a fresh user id.
pub async fn register_user(
    bus: &CommandBus,
    registration: NewRegistration,
    metadata: CommitMetadata,
) -> Result<Registered, RegistrationError> {
    register_user_as(bus, Uuid::now_v7(), registration, metadata).await
}

/// Registers a new account under `user_id`, which must be fresh.
async fn register_user_as(
    bus: &CommandBus,
    user_id: Uuid,
    registration: NewRegistration,
    metadata: CommitMetadata,
) -> Result<Registered, RegistrationError> {
    let now = registration.now;
    let email_key = email_claim_key(&registration.email);
    let username_key = username_claim_key(&registration.username);

    match claim_value::<EmailKind>(bus, &email_key, user_id, now, &metadata).await {
        Ok(()) => {}
        Err(ClaimStepError::Taken) => return Err(RegistrationError::EmailTaken),
        Err(ClaimStepError::Command(error)) => return Err(RegistrationError::Command(error)),
    }

    match claim_value::<UsernameKind>(bus, &username_key, user_id, now, &metadata).await {
        Ok(()) => {}
        Err(failure) => {
            release_value::<EmailKind>(bus, &email_key, user_id, now, &metadata).await;
            return Err(match failure {
                ClaimStepError::Taken => RegistrationError::UsernameTaken,
                ClaimStepError::Command(error) => RegistrationError::Command(error),
            });
        }
    }

    let command = UserCommand::Register {
        user_id,
        email: registration.email,
        username: registration.username,
        display_name: registration.display_name,
        password_hash: registration.password_hash,
        now,
    };
    match bus
        .execute::<User>(AggregateId::from_uuid(user_id), command, metadata.clone())
        .await
        .map_err(CommandError::into_domain)
    {
        Ok(executed) => {
            let position = executed
                .position
                .expect("Register on an empty stream records an event or fails");
            debug!(%user_id, position, "user registered");
            Ok(Registered { user_id, position })
        }
        Err(Ok(rejection)) => {
            release_value::<EmailKind>(bus, &email_key, user_id, now, &metadata).await;
            release_value::<UsernameKind>(bus, &username_key, user_id, now, &metadata).await;
            Err(RegistrationError::Rejected(rejection))
        }
        // The append may have been stored; releasing the claims now could free the values
        // of a registered user. Left alone, they are taken over after the grace period if
        // the registration was not stored.
        Err(Err(error)) => Err(RegistrationError::Command(error)),
    }
}

/// Finds the registered account that has claimed `email`, for login. Returns `None` when the
/// address is free or claimed by a registration that has not completed.
pub async fn find_user_by_email(
    bus: &CommandBus,
    email: &Email,
) -> Result<Option<RegisteredUser>, BusError> {
    let (claim, _) = bus.load::<EmailClaim>(email_claim_key(email)).await?;
    let Some(holder) = claim.holder() else {
        return Ok(None);
    };
    let (user, _) = bus
        .load::<User>(AggregateId::from_uuid(holder.owner_id))
        .await?;
    Ok(user
        .registered()
        .filter(|registered| registered.email == email.as_str())
        .cloned())
}

enum ClaimStepError {
    /// A live registration or a registered user has claimed the value.
    Taken,
    Command(BusError),
}

/// Claims a value for `owner_id`, taking it over from a registration that stalled for longer
/// than the grace period.
async fn claim_value<K: ClaimKind>(
    bus: &CommandBus,
    key: &AggregateId,
    owner_id: Uuid,
    now: DateTime<Utc>,
    metadata: &CommitMetadata,
) -> Result<(), ClaimStepError> {
    let grace_period = chrono::Duration::from_std(bus.options().claim_grace_period)
        .unwrap_or(chrono::Duration::MAX);
    let mut taken_over_from = None;
    for _ in 0..MAX_TAKEOVER_ROUNDS {
        let command = ClaimCommand::Claim {
            owner_id,
            now,
            taken_over_from,
        };
        let rejection = match bus
            .execute::<UniqueClaim<K>>(key.clone(), command, metadata.clone())
            .await
            .map_err(CommandError::into_domain)
        {
            Ok(_) => return Ok(()),
            Err(Ok(rejection)) => rejection,
            Err(Err(error)) => return Err(ClaimStepError::Command(error)),
        };
        let (holder, claimed_at) = match rejection {
            ClaimError::AlreadyClaimed {
                owner_id,
                claimed_at,
            } => (owner_id, claimed_at),
            // Only `Release` is rejected this way, so this arm is never taken.
            ClaimError::NotHeldBy { .. } => return Err(ClaimStepError::Taken),
        };
        if now.signed_duration_since(claimed_at) < grace_period {
            return Err(ClaimStepError::Taken);
        }
        if !fence_registration(bus, holder, now, metadata).await? {
            return Err(ClaimStepError::Taken);
        }
        debug!(
            aggregate_type = %K::AGGREGATE_TYPE,
            key = %key,
            %holder,
            "taking over the claim of an abandoned registration"
        );
        taken_over_from = Some(holder);
    }
    Err(ClaimStepError::Taken)
}

/// Declares the registration of `user_id` dead. Returns false when that user is registered,
/// which means the value it claimed is taken for good.
async fn fence_registration(
    bus: &CommandBus,
    user_id: Uuid,
    now: DateTime<Utc>,
    metadata: &CommitMetadata,
) -> Result<bool, ClaimStepError> {
    let command = UserCommand::Abandon { user_id, now };
    match bus
        .execute::<User>(AggregateId::from_uuid(user_id), command, metadata.clone())
        .await
        .map_err(CommandError::into_domain)
    {
        Ok(_) | Err(Ok(UserError::RegistrationAbandoned { .. })) => Ok(true),
        Err(Ok(UserError::AlreadyRegistered { .. })) => Ok(false),
        Err(Err(error)) => Err(ClaimStepError::Command(error)),
    }
}

/// Releases a claim of `owner_id`, as compensation for a registration that cannot complete.
/// This is best effort: a claim that stays behind is taken over after the grace period.
async fn release_value<K: ClaimKind>(
    bus: &CommandBus,
    key: &AggregateId,
    owner_id: Uuid,
    now: DateTime<Utc>,
    metadata: &CommitMetadata,
) {
    let command = ClaimCommand::Release { owner_id, now };
    match bus
        .execute::<UniqueClaim<K>>(key.clone(), command, metadata.clone())
        .await
    {
        Ok(_) => {
            debug!(aggregate_type = %K::AGGREGATE_TYPE, key = %key, %owner_id, "claim released")
        }
        // Another registration already took the claim over.
        Err(CommandError::Domain(ClaimError::NotHeldBy { .. })) => {}
        Err(error) => warn!(
            aggregate_type = %K::AGGREGATE_TYPE,
            key = %key,
            %owner_id,
            %error,
            "releasing a claim failed, it will be taken over after the grace period"
        ),
    }
}

#[cfg(test)]
mod tests;
