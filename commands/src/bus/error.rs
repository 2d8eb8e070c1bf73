//! The errors of the command bus: a domain rule, or a failure of the bus or the log.

use std::convert::Infallible;

use secureconnect_events::{LogError, StreamId};

/// The reason a command did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The aggregate rejected the command; nothing was appended.
    #[error(transparent)]
    Domain(E),
    /// Other commands kept changing the aggregate, and every attempt to decide again and
    /// append lost the race. Nothing was appended; the caller may retry.
    #[error("too many concurrent changes to {stream}, retry the request")]
    Conflict { stream: StreamId },
    /// The log failed or could not be reached. When this comes from an append, the commit may
    /// or may not have been stored.
    #[error("the event log failed")]
    Log(#[source] LogError),
    /// The stream contains events this version cannot read, or a gap in its sequence.
    #[error("stream {stream} cannot be loaded: {reason}")]
    Corrupt { stream: StreamId, reason: String },
    /// The log rejected the commit as malformed, which is a bug in the bus or an aggregate.
    #[error("the event log rejected a commit to {stream}: {reason}")]
    InvalidCommit { stream: StreamId, reason: String },
}

/// A failure of the bus or the log, which any aggregate's command can hit.
pub type BusError = CommandError<Infallible>;

impl<E> CommandError<E> {
    /// Separates the domain error from a failure of the bus or the log.
    pub fn into_domain(self) -> Result<E, BusError> {
        match self {
            CommandError::Domain(error) => Ok(error),
            CommandError::Conflict { stream } => Err(CommandError::Conflict { stream }),
            CommandError::Log(error) => Err(CommandError::Log(error)),
            CommandError::Corrupt { stream, reason } => {
                Err(CommandError::Corrupt { stream, reason })
            }
            CommandError::InvalidCommit { stream, reason } => {
                Err(CommandError::InvalidCommit { stream, reason })
            }
        }
    }
}

impl BusError {
    /// Turns a failure of the bus into the error type of any aggregate's command.
    pub fn widen<E>(self) -> CommandError<E> {
        match self {
            CommandError::Domain(never) => match never {},
            CommandError::Conflict { stream } => CommandError::Conflict { stream },
            CommandError::Log(error) => CommandError::Log(error),
            CommandError::Corrupt { stream, reason } => CommandError::Corrupt { stream, reason },
            CommandError::InvalidCommit { stream, reason } => {
                CommandError::InvalidCommit { stream, reason }
            }
        }
    }
}
