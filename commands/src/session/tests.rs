//! Rules of the session aggregate, as given events, a command and the expected outcome.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use secureconnect_events::domain::{
    SessionEvent, SessionRefreshed, SessionRevocationReason, SessionRevoked, SessionStarted,
};
use uuid::Uuid;

use super::{RefreshOutcome, Session, SessionCommand, SessionError};

type SessionTest = TestFramework<Session>;

const SESSION_ID: Uuid = Uuid::from_u128(0x5E55);
const USER_ID: Uuid = Uuid::from_u128(0x1111);

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn expiry() -> DateTime<Utc> {
    start_time() + Duration::days(30)
}

fn later() -> DateTime<Utc> {
    start_time() + Duration::hours(1)
}

fn started() -> SessionEvent {
    SessionEvent::SessionStarted(SessionStarted {
        session_id: SESSION_ID,
        user_id: USER_ID,
        started_at: start_time(),
        expires_at: expiry(),
    })
}

fn refreshed(generation: u64) -> SessionEvent {
    SessionEvent::SessionRefreshed(SessionRefreshed {
        session_id: SESSION_ID,
        user_id: USER_ID,
        generation,
        refreshed_at: later(),
    })
}

fn revoked(reason: SessionRevocationReason) -> SessionEvent {
    SessionEvent::SessionRevoked(SessionRevoked {
        session_id: SESSION_ID,
        user_id: USER_ID,
        reason,
        revoked_at: later(),
    })
}

fn refresh(presented_generation: u64, now: DateTime<Utc>) -> SessionCommand {
    SessionCommand::Refresh {
        presented_generation,
        now,
    }
}

#[test]
fn start_on_empty_stream_records_start() {
    SessionTest::with(())
        .given_no_previous_events()
        .when(SessionCommand::Start {
            session_id: SESSION_ID,
            user_id: USER_ID,
            now: start_time(),
            expires_at: expiry(),
        })
        .then_expect_events(vec![started()]);
}

#[test]
fn start_twice_is_rejected() {
    SessionTest::with(())
        .given(vec![started()])
        .when(SessionCommand::Start {
            session_id: SESSION_ID,
            user_id: USER_ID,
            now: start_time(),
            expires_at: expiry(),
        })
        .then_expect_error(SessionError::AlreadyStarted);
}

#[test]
fn start_with_past_expiry_is_rejected() {
    SessionTest::with(())
        .given_no_previous_events()
        .when(SessionCommand::Start {
            session_id: SESSION_ID,
            user_id: USER_ID,
            now: start_time(),
            expires_at: start_time(),
        })
        .then_expect_error(SessionError::ExpiryNotInFuture {
            now: start_time(),
            expires_at: start_time(),
        });
}

#[test]
fn refresh_with_current_generation_rotates() {
    SessionTest::with(())
        .given(vec![started()])
        .when(refresh(1, later()))
        .then_expect_events(vec![refreshed(2)]);
}

#[test]
fn refresh_after_rotation_accepts_new_generation() {
    SessionTest::with(())
        .given(vec![started(), refreshed(2)])
        .when(refresh(2, later()))
        .then_expect_events(vec![refreshed(3)]);
}

#[test]
fn refresh_with_spent_generation_revokes_session() {
    SessionTest::with(())
        .given(vec![started(), refreshed(2), refreshed(3)])
        .when(refresh(2, later()))
        .then_expect_events(vec![revoked(SessionRevocationReason::RefreshTokenReuse)]);
}

#[test]
fn refresh_with_unissued_generation_is_rejected() {
    SessionTest::with(())
        .given(vec![started()])
        .when(refresh(2, later()))
        .then_expect_error(SessionError::UnknownGeneration {
            presented: 2,
            current: 1,
        });
}

#[test]
fn refresh_of_revoked_session_is_rejected() {
    SessionTest::with(())
        .given(vec![started(), revoked(SessionRevocationReason::Logout)])
        .when(refresh(1, later()))
        .then_expect_error(SessionError::Revoked);
}

#[test]
fn refresh_after_expiry_is_rejected() {
    SessionTest::with(())
        .given(vec![started()])
        .when(refresh(1, expiry()))
        .then_expect_error(SessionError::Expired {
            expires_at: expiry(),
        });
}

#[test]
fn refresh_of_missing_session_is_rejected() {
    SessionTest::with(())
        .given_no_previous_events()
        .when(refresh(1, later()))
        .then_expect_error(SessionError::NotFound);
}

#[test]
fn revoke_records_reason() {
    SessionTest::with(())
        .given(vec![started(), refreshed(2)])
        .when(SessionCommand::Revoke {
            reason: SessionRevocationReason::Logout,
            now: later(),
        })
        .then_expect_events(vec![revoked(SessionRevocationReason::Logout)]);
}

#[test]
fn revoke_of_revoked_session_records_nothing() {
    SessionTest::with(())
        .given(vec![
            started(),
            revoked(SessionRevocationReason::RefreshTokenReuse),
        ])
        .when(SessionCommand::Revoke {
            reason: SessionRevocationReason::Logout,
            now: later(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn revoke_of_missing_session_is_rejected() {
    SessionTest::with(())
        .given_no_previous_events()
        .when(SessionCommand::Revoke {
            reason: SessionRevocationReason::Logout,
            now: later(),
        })
        .then_expect_error(SessionError::NotFound);
}

#[test]
fn refresh_outcome_reads_recorded_events() {
    assert_eq!(
        RefreshOutcome::from_events(&[refreshed(4)]),
        Some(RefreshOutcome::Rotated { generation: 4 })
    );
    assert_eq!(
        RefreshOutcome::from_events(&[revoked(SessionRevocationReason::RefreshTokenReuse)]),
        Some(RefreshOutcome::ReuseDetected)
    );
    assert_eq!(
        RefreshOutcome::from_events(&[revoked(SessionRevocationReason::Logout)]),
        None
    );
    assert_eq!(RefreshOutcome::from_events(&[]), None);
}

#[test]
fn state_tracks_generation_and_activity() {
    let mut session = Session::default();
    assert!(!session.is_active_at(later()));
    for event in [started(), refreshed(2)] {
        cqrs_es::Aggregate::apply(&mut session, event);
    }
    assert_eq!(session.generation(), 2);
    assert_eq!(session.user_id(), Some(USER_ID));
    assert!(session.is_active_at(later()));
    assert!(!session.is_active_at(expiry()));

    cqrs_es::Aggregate::apply(&mut session, revoked(SessionRevocationReason::Logout));
    assert!(!session.is_active_at(later()));
    assert_eq!(session.revocation(), Some(SessionRevocationReason::Logout));
}
