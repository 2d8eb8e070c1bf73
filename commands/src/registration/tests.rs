//! The compensation of a registration whose user stream was fenced before step 3, which the
//! public entry point cannot reach because it always picks a fresh user id.

use std::sync::Arc;
use std::time::Duration;

use secureconnect_events::domain::{ClaimEvent, RecordedEvent};
use secureconnect_events::embedded::EmbeddedLog;
use secureconnect_events::{AggregateType, EventLog, StreamId, StreamVersion};

use super::*;
use crate::bus::BusOptions;

#[tokio::test]
async fn fenced_registration_releases_its_claims() {
    tokio::time::timeout(
        Duration::from_secs(60),
        check_fenced_registration_releases_claims(),
    )
    .await
    .expect("the test timed out");
}

async fn check_fenced_registration_releases_claims() {
    let folder = tempfile::tempdir().expect("failed to create a temporary folder");
    let log = EmbeddedLog::open(&folder.path().join("events.sqlite"))
        .await
        .expect("failed to open the embedded log");
    let bus = CommandBus::new(
        Arc::new(log.clone()),
        Arc::new(log.snapshot_store()),
        BusOptions::default(),
    );
    let user_id = Uuid::new_v4();
    let now = Utc::now();
    // Another registration declared this one dead while it was between steps 2 and 3.
    bus.execute::<User>(
        AggregateId::from_uuid(user_id),
        UserCommand::Abandon { user_id, now },
        CommitMetadata::default(),
    )
    .await
    .expect("abandoning failed");

    let registration = NewRegistration {
        email: Email::parse("fenced@example.com").unwrap(),
        username: Username::parse("fenced").unwrap(),
        display_name: DisplayName::parse("Fenced").unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        now,
    };
    let email_stream = StreamId::new(
        AggregateType::EmailClaim,
        email_claim_key(&registration.email),
    );
    let username_stream = StreamId::new(
        AggregateType::UsernameClaim,
        username_claim_key(&registration.username),
    );
    let error = register_user_as(&bus, user_id, registration, CommitMetadata::default())
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            RegistrationError::Rejected(UserError::RegistrationAbandoned { .. })
        ),
        "{error:?}"
    );
    for stream in [email_stream, username_stream] {
        let (envelopes, _) = log
            .read_stream(&stream, StreamVersion::EMPTY)
            .await
            .expect("reading the claim failed");
        let events: Vec<ClaimEvent> = envelopes
            .iter()
            .map(|envelope| ClaimEvent::from_envelope(envelope).unwrap())
            .collect();
        assert!(
            matches!(
                &events[..],
                [ClaimEvent::KeyClaimed(_), ClaimEvent::KeyReleased(released)]
                    if released.owner_id == user_id
            ),
            "{stream}: {events:?}"
        );
    }
}
