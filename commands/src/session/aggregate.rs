//! The session aggregate's state and its decisions.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use secureconnect_events::AggregateType;
use secureconnect_events::domain::{
    SessionEvent, SessionRefreshed, SessionRevocationReason, SessionRevoked, SessionStarted,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::{SessionCommand, SessionError};
use crate::bus::ManagedAggregate;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `None` until the session starts.
    state: Option<SessionState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SessionState {
    session_id: Uuid,
    user_id: Uuid,
    /// The generation of the only refresh token that is valid now, starting at 1.
    generation: u64,
    started_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revocation: Option<SessionRevocationReason>,
}

/// The decision of a successful `Refresh` command, read from the events it recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The presented token was current, and `generation` is the new current one.
    Rotated { generation: u64 },
    /// The presented token was already spent, so the session is now revoked and the request
    /// must be rejected.
    ReuseDetected,
}

impl RefreshOutcome {
    /// Reads the outcome of a `Refresh` command from the events it recorded. Returns `None`
    /// for events that no `Refresh` command records.
    pub fn from_events(events: &[SessionEvent]) -> Option<RefreshOutcome> {
        match events {
            [SessionEvent::SessionRefreshed(refreshed)] => Some(RefreshOutcome::Rotated {
                generation: refreshed.generation,
            }),
            [SessionEvent::SessionRevoked(revoked)]
                if revoked.reason == SessionRevocationReason::RefreshTokenReuse =>
            {
                Some(RefreshOutcome::ReuseDetected)
            }
            _ => None,
        }
    }
}

impl Session {
    pub fn exists(&self) -> bool {
        self.state.is_some()
    }

    pub fn session_id(&self) -> Option<Uuid> {
        self.state.as_ref().map(|state| state.session_id)
    }

    pub fn user_id(&self) -> Option<Uuid> {
        self.state.as_ref().map(|state| state.user_id)
    }

    /// Returns the generation of the refresh token that is valid now, or 0 before the start.
    pub fn generation(&self) -> u64 {
        self.state.as_ref().map_or(0, |state| state.generation)
    }

    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().map(|state| state.started_at)
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.state.as_ref().map(|state| state.expires_at)
    }

    pub fn revocation(&self) -> Option<SessionRevocationReason> {
        self.state.as_ref().and_then(|state| state.revocation)
    }

    /// Returns whether the session exists, is not revoked and has not expired at `now`.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.state
            .as_ref()
            .is_some_and(|state| state.revocation.is_none() && now < state.expires_at)
    }
}

impl Aggregate for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SessionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SessionError> {
        match command {
            SessionCommand::Start {
                session_id,
                user_id,
                now,
                expires_at,
            } => {
                if self.state.is_some() {
                    return Err(SessionError::AlreadyStarted);
                }
                if expires_at <= now {
                    return Err(SessionError::ExpiryNotInFuture { now, expires_at });
                }
                let event = SessionStarted {
                    session_id,
                    user_id,
                    started_at: now,
                    expires_at,
                };
                sink.write(SessionEvent::SessionStarted(event), self).await;
            }
            SessionCommand::Refresh {
                presented_generation,
                now,
            } => {
                let state = self.state.as_ref().ok_or(SessionError::NotFound)?;
                if state.revocation.is_some() {
                    return Err(SessionError::Revoked);
                }
                if now >= state.expires_at {
                    return Err(SessionError::Expired {
                        expires_at: state.expires_at,
                    });
                }
                let event = if presented_generation == state.generation {
                    SessionEvent::SessionRefreshed(SessionRefreshed {
                        session_id: state.session_id,
                        user_id: state.user_id,
                        generation: state.generation + 1,
                        refreshed_at: now,
                    })
                } else if presented_generation < state.generation {
                    SessionEvent::SessionRevoked(SessionRevoked {
                        session_id: state.session_id,
                        user_id: state.user_id,
                        reason: SessionRevocationReason::RefreshTokenReuse,
                        revoked_at: now,
                    })
                } else {
                    return Err(SessionError::UnknownGeneration {
                        presented: presented_generation,
                        current: state.generation,
                    });
                };
                sink.write(event, self).await;
            }
            SessionCommand::Revoke { reason, now } => {
                let state = self.state.as_ref().ok_or(SessionError::NotFound)?;
                if state.revocation.is_some() {
                    return Ok(());
                }
                let event = SessionRevoked {
                    session_id: state.session_id,
                    user_id: state.user_id,
                    reason,
                    revoked_at: now,
                };
                sink.write(SessionEvent::SessionRevoked(event), self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::SessionStarted(event) => {
                self.state = Some(SessionState {
                    session_id: event.session_id,
                    user_id: event.user_id,
                    generation: 1,
                    started_at: event.started_at,
                    expires_at: event.expires_at,
                    revocation: None,
                });
            }
            SessionEvent::SessionRefreshed(event) => {
                if let Some(state) = &mut self.state {
                    state.generation = event.generation;
                }
            }
            SessionEvent::SessionRevoked(event) => {
                if let Some(state) = &mut self.state {
                    state.revocation = Some(event.reason);
                }
            }
        }
    }
}

impl ManagedAggregate for Session {
    const AGGREGATE_TYPE: AggregateType = AggregateType::Session;
    const SNAPSHOT_EVERY: Option<u64> = None;
    const STATE_VERSION: u32 = 1;
}
