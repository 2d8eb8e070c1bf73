//! Commands to the user aggregate and the rules they can break.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::input::{DisplayName, Email, Username};

#[derive(Clone)]
pub enum UserCommand {
    /// Creates the account. Accepted only on an empty stream, after registration has claimed
    /// the email address and the username for `user_id`.
    Register {
        user_id: Uuid,
        email: Email,
        username: Username,
        display_name: DisplayName,
        /// An argon2id PHC string, computed by the caller off the async runtime.
        password_hash: String,
        now: DateTime<Utc>,
    },
    /// Declares a registration that stalled after claiming a value dead, so that it can never
    /// complete and its claims can be taken over. Accepted on an empty stream; on a stream
    /// that is already abandoned it records nothing.
    Abandon { user_id: Uuid, now: DateTime<Utc> },
}

impl fmt::Debug for UserCommand {
    // Written by hand so that the password hash never reaches a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserCommand::Register {
                user_id,
                email,
                username,
                display_name,
                password_hash: _,
                now,
            } => formatter
                .debug_struct("Register")
                .field("user_id", user_id)
                .field("email", email)
                .field("username", username)
                .field("display_name", display_name)
                .field("password_hash", &"[REDACTED]")
                .field("now", now)
                .finish(),
            UserCommand::Abandon { user_id, now } => formatter
                .debug_struct("Abandon")
                .field("user_id", user_id)
                .field("now", now)
                .finish(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("user {user_id} is already registered")]
    AlreadyRegistered { user_id: Uuid },
    #[error("the registration of user {user_id} was abandoned and cannot complete")]
    RegistrationAbandoned { user_id: Uuid },
}
