//! The user aggregate's state and its decisions.

use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use secureconnect_events::AggregateType;
use secureconnect_events::domain::{RegistrationAbandoned, UserEvent, UserRegistered};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{UserCommand, UserError};
use crate::bus::ManagedAggregate;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    status: UserStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
enum UserStatus {
    /// The stream is empty.
    #[default]
    Unregistered,
    Registered(RegisteredUser),
    Abandoned {
        user_id: Uuid,
    },
}

/// A registered account with what login needs.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredUser {
    pub user_id: Uuid,
    /// Lower-cased and trimmed.
    pub email: String,
    /// As the user typed it.
    pub username: String,
    pub display_name: String,
    /// An argon2id PHC string.
    pub password_hash: String,
    pub registered_at: DateTime<Utc>,
}

impl fmt::Debug for RegisteredUser {
    // Written by hand so that the password hash never reaches a log.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RegisteredUser")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("username", &self.username)
            .field("display_name", &self.display_name)
            .field("password_hash", &"[REDACTED]")
            .field("registered_at", &self.registered_at)
            .finish()
    }
}

impl User {
    /// Returns the account, when the stream contains a registration.
    pub fn registered(&self) -> Option<&RegisteredUser> {
        match &self.status {
            UserStatus::Registered(user) => Some(user),
            UserStatus::Unregistered | UserStatus::Abandoned { .. } => None,
        }
    }

    pub fn is_abandoned(&self) -> bool {
        matches!(self.status, UserStatus::Abandoned { .. })
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UserCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), UserError> {
        match command {
            UserCommand::Register {
                user_id,
                email,
                username,
                display_name,
                password_hash,
                now,
            } => {
                self.ensure_unregistered()?;
                let event = UserRegistered {
                    user_id,
                    email: email.as_str().to_owned(),
                    username: username.as_str().to_owned(),
                    display_name: display_name.as_str().to_owned(),
                    password_hash,
                    registered_at: now,
                };
                sink.write(UserEvent::UserRegistered(event), self).await;
            }
            UserCommand::Abandon { user_id, now } => match &self.status {
                UserStatus::Unregistered => {
                    let event = RegistrationAbandoned {
                        user_id,
                        abandoned_at: now,
                    };
                    sink.write(UserEvent::RegistrationAbandoned(event), self)
                        .await;
                }
                UserStatus::Abandoned { .. } => {}
                UserStatus::Registered(user) => {
                    return Err(UserError::AlreadyRegistered {
                        user_id: user.user_id,
                    });
                }
            },
        }
        Ok(())
    }

    fn apply(&mut self, event: UserEvent) {
        self.status = match event {
            UserEvent::UserRegistered(event) => UserStatus::Registered(RegisteredUser {
                user_id: event.user_id,
                email: event.email,
                username: event.username,
                display_name: event.display_name,
                password_hash: event.password_hash,
                registered_at: event.registered_at,
            }),
            UserEvent::RegistrationAbandoned(event) => UserStatus::Abandoned {
                user_id: event.user_id,
            },
        };
    }
}

impl User {
    fn ensure_unregistered(&self) -> Result<(), UserError> {
        match &self.status {
            UserStatus::Unregistered => Ok(()),
            UserStatus::Registered(user) => Err(UserError::AlreadyRegistered {
                user_id: user.user_id,
            }),
            UserStatus::Abandoned { user_id } => {
                Err(UserError::RegistrationAbandoned { user_id: *user_id })
            }
        }
    }
}

impl ManagedAggregate for User {
    const AGGREGATE_TYPE: AggregateType = AggregateType::User;
    const SNAPSHOT_EVERY: Option<u64> = None;
    const STATE_VERSION: u32 = 1;
}
