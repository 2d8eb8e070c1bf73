//! Rules of the claim aggregates, as given events, a command and the expected outcome.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use secureconnect_events::domain::{ClaimEvent, KeyClaimed, KeyReleased};
use secureconnect_events::{AggregateType, StreamId};
use uuid::Uuid;

use super::*;
use crate::bus::ManagedAggregate;
use crate::input::{Email, Username};

type EmailClaimTest = TestFramework<EmailClaim>;

const OWNER: Uuid = Uuid::from_u128(0xA);
const OTHER: Uuid = Uuid::from_u128(0xB);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn claimed_by(owner_id: Uuid) -> ClaimEvent {
    ClaimEvent::KeyClaimed(KeyClaimed {
        owner_id,
        claimed_at: now(),
        taken_over_from: None,
    })
}

fn released_by(owner_id: Uuid) -> ClaimEvent {
    ClaimEvent::KeyReleased(KeyReleased {
        owner_id,
        released_at: now(),
    })
}

fn claim(owner_id: Uuid, taken_over_from: Option<Uuid>) -> ClaimCommand {
    ClaimCommand::Claim {
        owner_id,
        now: now(),
        taken_over_from,
    }
}

#[test]
fn claim_on_free_value_succeeds() {
    EmailClaimTest::with(())
        .given_no_previous_events()
        .when(claim(OWNER, None))
        .then_expect_events(vec![claimed_by(OWNER)]);
}

#[test]
fn claim_after_release_succeeds() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(OTHER), released_by(OTHER)])
        .when(claim(OWNER, None))
        .then_expect_events(vec![claimed_by(OWNER)]);
}

#[test]
fn claim_on_held_value_is_rejected() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(OTHER)])
        .when(claim(OWNER, None))
        .then_expect_error(ClaimError::AlreadyClaimed {
            owner_id: OTHER,
            claimed_at: now(),
        });
}

#[test]
fn takeover_naming_current_holder_succeeds() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(OTHER)])
        .when(claim(OWNER, Some(OTHER)))
        .then_expect_events(vec![ClaimEvent::KeyClaimed(KeyClaimed {
            owner_id: OWNER,
            claimed_at: now(),
            taken_over_from: Some(OTHER),
        })]);
}

#[test]
fn takeover_naming_another_holder_is_rejected() {
    let stale_holder = Uuid::from_u128(0xC);
    EmailClaimTest::with(())
        .given(vec![claimed_by(OTHER)])
        .when(claim(OWNER, Some(stale_holder)))
        .then_expect_error(ClaimError::AlreadyClaimed {
            owner_id: OTHER,
            claimed_at: now(),
        });
}

#[test]
fn takeover_of_free_value_records_no_previous_owner() {
    EmailClaimTest::with(())
        .given_no_previous_events()
        .when(claim(OWNER, Some(OTHER)))
        .then_expect_events(vec![claimed_by(OWNER)]);
}

#[test]
fn claim_by_current_holder_records_nothing() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(OWNER)])
        .when(claim(OWNER, None))
        .then_expect_events(vec![]);
}

#[test]
fn release_by_holder_frees_value() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(OWNER)])
        .when(ClaimCommand::Release {
            owner_id: OWNER,
            now: now(),
        })
        .then_expect_events(vec![released_by(OWNER)]);
}

#[test]
fn release_by_someone_else_is_rejected() {
    EmailClaimTest::with(())
        .given(vec![claimed_by(OTHER)])
        .when(ClaimCommand::Release {
            owner_id: OWNER,
            now: now(),
        })
        .then_expect_error(ClaimError::NotHeldBy { owner_id: OWNER });
}

#[test]
fn release_of_free_value_is_rejected() {
    TestFramework::<UsernameClaim>::with(())
        .given_no_previous_events()
        .when(ClaimCommand::Release {
            owner_id: OWNER,
            now: now(),
        })
        .then_expect_error(ClaimError::NotHeldBy { owner_id: OWNER });
}

#[test]
fn claim_kinds_use_their_own_streams() {
    assert_eq!(EmailClaim::AGGREGATE_TYPE, AggregateType::EmailClaim);
    assert_eq!(UsernameClaim::AGGREGATE_TYPE, AggregateType::UsernameClaim);
    assert_eq!(
        <EmailClaim as cqrs_es::Aggregate>::TYPE,
        AggregateType::EmailClaim.as_str()
    );
    assert_eq!(
        <UsernameClaim as cqrs_es::Aggregate>::TYPE,
        AggregateType::UsernameClaim.as_str()
    );
}

#[test]
fn claim_key_is_sha256_hex_of_normalized_value() {
    // SHA-256 of "abc", from FIPS 180-2 appendix B.1.
    assert_eq!(
        claim_key("abc").as_str(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let key = email_claim_key(&Email::parse(" Ada@Example.COM").unwrap());
    assert_eq!(key, claim_key("ada@example.com"));
    assert_eq!(key.as_str().len(), 64);
    let stream = StreamId::new(AggregateType::EmailClaim, key);
    assert!(stream.to_string().starts_with("email_claim/"));
}

#[test]
fn username_key_ignores_case() {
    let lower = username_claim_key(&Username::parse("ada_l").unwrap());
    let mixed = username_claim_key(&Username::parse("Ada_L").unwrap());
    assert_eq!(lower, mixed);
}
