//! The sessions revoked recently enough that access tokens issued for them may still be
//! unexpired. Every API node fills this set from the log (see `realtime::follower`), so a
//! logout on one node takes effect on all of them as soon as they read the event, and the node
//! that handled the logout marks the session before it responds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use uuid::Uuid;

pub struct RevokedSessions {
    /// Session id to revocation time. Entries older than `retention` are pruned, because every
    /// access token issued before them has expired.
    revoked: DashMap<Uuid, DateTime<Utc>>,
    retention: Duration,
    /// Set once the follower has read the log's recent history, so `/ready` can wait for it.
    caught_up: AtomicBool,
}

impl RevokedSessions {
    /// `access_token_ttl` bounds how long a revocation must be remembered.
    pub fn new(access_token_ttl: Duration) -> RevokedSessions {
        RevokedSessions {
            revoked: DashMap::new(),
            retention: access_token_ttl + Duration::from_secs(60),
            caught_up: AtomicBool::new(false),
        }
    }

    /// How far back the follower must start reading the log.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    pub fn is_revoked(&self, session_id: Uuid) -> bool {
        self.revoked.contains_key(&session_id)
    }

    pub fn mark_revoked(&self, session_id: Uuid, revoked_at: DateTime<Utc>) {
        self.revoked.insert(session_id, revoked_at);
    }

    pub fn mark_caught_up(&self) {
        self.caught_up.store(true, Ordering::Release);
    }

    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// Forgets revocations older than the retention window.
    pub fn prune(&self, now: DateTime<Utc>) {
        let retention = chrono::Duration::from_std(self.retention).unwrap_or(chrono::Duration::MAX);
        self.revoked
            .retain(|_, revoked_at| now.signed_duration_since(*revoked_at) < retention);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_is_remembered_until_tokens_expire() {
        let sessions = RevokedSessions::new(Duration::from_secs(900));
        let session_id = Uuid::new_v4();
        let revoked_at = Utc::now();
        sessions.mark_revoked(session_id, revoked_at);

        sessions.prune(revoked_at + chrono::Duration::seconds(900));
        assert!(sessions.is_revoked(session_id));

        sessions.prune(revoked_at + chrono::Duration::seconds(961));
        assert!(!sessions.is_revoked(session_id));
    }
}
