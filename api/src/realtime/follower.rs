//! The log follower of one API node: a single feed that keeps the revoked-session set current
//! and pushes every new message to the chat hub, so a message sent through any node reaches the
//! sockets held by this one.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::Utc;
use futures::StreamExt;
use secureconnect_events::domain::{ConversationEvent, DomainEvent, SessionEvent};
use secureconnect_events::{EventEnvelope, EventLog, FeedFilter, FeedStart};
use tokio_util::sync::CancellationToken;

use super::frames::ChatFrame;
use super::hub::ChatHub;
use crate::auth::RevokedSessions;

/// How long the feed may stay quiet during start-up before the backlog counts as read.
const QUIET_PERIOD: Duration = Duration::from_millis(500);

pub struct LogFollower {
    pub log: Arc<dyn EventLog>,
    pub hub: Arc<ChatHub>,
    pub revoked_sessions: Arc<RevokedSessions>,
}

impl LogFollower {
    /// Follows the log until cancelled, reopening the feed after errors where it stopped.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let retention = chrono::Duration::from_std(self.revoked_sessions.retention())?;
        let head_at_start = self.log.head_position().await.unwrap_or(0);
        if head_at_start == 0 {
            self.revoked_sessions.mark_caught_up();
        }
        let mut start = FeedStart::AtTime(Utc::now() - retention);
        let mut last_position = 0;
        let mut failures = 0u32;
        loop {
            let feed = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                feed = self.log.feed(start, FeedFilter::All) => feed,
            };
            let mut feed = match feed {
                Ok(feed) => feed,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(error = %error, failures, "failed to open the log feed; retrying");
                    backoff(failures, &cancel).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    next = tokio::time::timeout(QUIET_PERIOD, feed.next()) => next,
                };
                match next {
                    Err(_elapsed) => self.revoked_sessions.mark_caught_up(),
                    Ok(None) => break,
                    Ok(Some(Err(error))) => {
                        failures += 1;
                        tracing::warn!(error = %error, last_position, "log feed failed; reopening");
                        break;
                    }
                    Ok(Some(Ok(envelope))) => {
                        failures = 0;
                        last_position = envelope.position;
                        if envelope.position >= head_at_start {
                            self.revoked_sessions.mark_caught_up();
                        }
                        self.apply(&envelope, head_at_start);
                    }
                }
            }
            if last_position > 0 {
                start = FeedStart::AfterPosition(last_position);
            }
            backoff(failures.max(1), &cancel).await;
        }
    }

    fn apply(&self, envelope: &EventEnvelope, head_at_start: u64) {
        let event = match DomainEvent::decode(envelope) {
            Ok(event) => event,
            Err(error) => {
                tracing::error!(error = %error, position = envelope.position, "undecodable event in the log");
                return;
            }
        };
        match event {
            DomainEvent::Session(SessionEvent::SessionRevoked(revoked)) => {
                self.revoked_sessions
                    .mark_revoked(revoked.session_id, revoked.revoked_at);
            }
            DomainEvent::Conversation(ConversationEvent::MessageSent(message))
                if envelope.position > head_at_start
                    && self.hub.has_room(message.conversation_id) =>
            {
                let frame = ChatFrame::from_message(&message, envelope.position).to_json();
                self.hub
                    .publish(message.conversation_id, Utf8Bytes::from(frame));
            }
            _ => {}
        }
        tracing::trace!(position = envelope.position, event_type = %envelope.event_type, "followed event");
    }
}

async fn backoff(failures: u32, cancel: &CancellationToken) {
    let delay = Duration::from_millis(100 * 2u64.pow(failures.min(6)));
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}
