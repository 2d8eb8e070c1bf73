//! The names of the projections, as the checkpoint table, logs, metrics and the
//! `project --only` option spell them.

use std::fmt;
use std::str::FromStr;

/// One projection: a read model with its own tables, checkpoint and worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectionName {
    /// The `users` table, from `UserRegistered`.
    Users,
    /// The `conversations` and `conversation_participants` tables, from `ConversationCreated`
    /// and the time of the last `MessageSent`.
    Conversations,
    /// The `messages` table, one row per `MessageSent`.
    Messages,
}

impl ProjectionName {
    pub const ALL: [ProjectionName; 3] = [
        ProjectionName::Users,
        ProjectionName::Conversations,
        ProjectionName::Messages,
    ];

    /// The stored name. It keys the checkpoint row, so it never changes.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectionName::Users => "users",
            ProjectionName::Conversations => "conversations",
            ProjectionName::Messages => "messages",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            ProjectionName::Users => 0,
            ProjectionName::Conversations => 1,
            ProjectionName::Messages => 2,
        }
    }
}

impl fmt::Display for ProjectionName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl serde::Serialize for ProjectionName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown projection {0:?}: expected one of users, conversations, messages")]
pub struct UnknownProjection(pub String);

impl FromStr for ProjectionName {
    type Err = UnknownProjection;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        ProjectionName::ALL
            .into_iter()
            .find(|name| name.as_str() == value)
            .ok_or_else(|| UnknownProjection(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_strings() {
        for name in ProjectionName::ALL {
            assert_eq!(name.as_str().parse::<ProjectionName>(), Ok(name));
            assert_eq!(ProjectionName::ALL[name.index()], name);
        }
    }

    #[test]
    fn unknown_name_is_rejected() {
        assert_eq!(
            "notifications".parse::<ProjectionName>(),
            Err(UnknownProjection("notifications".to_owned()))
        );
    }
}
