//! Registration and login lookup on both logs: uniqueness through claims,
//! compensation, and the takeover of claims left by stalled registrations.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use secureconnect_commands::claim::{
    ClaimCommand, EmailClaim, email_claim_key, username_claim_key,
};
use secureconnect_commands::input::{DisplayName, Email, Username};
use secureconnect_commands::registration::{RegistrationError, find_user_by_email, register_user};
use secureconnect_commands::user::{User, UserCommand, UserError};
use secureconnect_commands::{BusOptions, CommandError};
use secureconnect_events::domain::{ClaimEvent, RecordedEvent, UserEvent};
use secureconnect_events::{AggregateId, AggregateType, StreamId};
use uuid::Uuid;

fn email_stream(email: &str) -> StreamId {
    StreamId::new(
        AggregateType::EmailClaim,
        email_claim_key(&Email::parse(email).unwrap()),
    )
}

fn username_stream(username: &str) -> StreamId {
    StreamId::new(
        AggregateType::UsernameClaim,
        username_claim_key(&Username::parse(username).unwrap()),
    )
}

fn user_stream(user_id: Uuid) -> StreamId {
    StreamId::for_uuid(AggregateType::User, user_id)
}

async fn claim_events(store: &TestStore, stream: &StreamId) -> Vec<ClaimEvent> {
    store
        .read_stream(stream)
        .await
        .iter()
        .map(|envelope| ClaimEvent::from_envelope(envelope).unwrap())
        .collect()
}

async fn user_events(store: &TestStore, user_id: Uuid) -> Vec<UserEvent> {
    store
        .read_stream(&user_stream(user_id))
        .await
        .iter()
        .map(|envelope| UserEvent::from_envelope(envelope).unwrap())
        .collect()
}

/// Claims `email` for `owner_id` the way step 1 of a registration does, and stops there, as
/// a registration that crashed would.
async fn stalled_claim(
    store: &TestStore,
    email: &str,
    owner_id: Uuid,
    claimed_at: chrono::DateTime<Utc>,
) {
    within(store.bus().execute::<EmailClaim>(
        email_claim_key(&Email::parse(email).unwrap()),
        ClaimCommand::Claim {
            owner_id,
            now: claimed_at,
            taken_over_from: None,
        },
        metadata(),
    ))
    .await
    .unwrap();
}

async fn registration_claims_values_and_registers(store: &TestStore) {
    let bus = store.bus();

    let registered = within(register_user(
        &bus,
        registration(" Ada@Example.com", "Ada_L", base_time()),
        metadata(),
    ))
    .await
    .unwrap();

    let email_claims = claim_events(store, &email_stream("ada@example.com")).await;
    assert!(
        matches!(&email_claims[..], [ClaimEvent::KeyClaimed(claimed)] if claimed.owner_id == registered.user_id),
        "{email_claims:?}"
    );
    let username_claims = claim_events(store, &username_stream("ada_l")).await;
    assert!(
        matches!(&username_claims[..], [ClaimEvent::KeyClaimed(claimed)] if claimed.owner_id == registered.user_id),
        "{username_claims:?}"
    );
    let events = store.read_stream(&user_stream(registered.user_id)).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, "UserRegistered");
    assert_eq!(events[0].position, registered.position);
}

on_both_backends!(registration_claims_values_and_registers);

async fn login_lookup_finds_registered_user(store: &TestStore) {
    let bus = store.bus();
    let registered = within(register_user(
        &bus,
        registration("grace@example.com", "grace_h", base_time()),
        metadata(),
    ))
    .await
    .unwrap();

    // A second node, as the login request may reach another API node.
    let other_node = store.bus();
    let found = within(find_user_by_email(
        &other_node,
        &Email::parse("GRACE@example.com").unwrap(),
    ))
    .await
    .unwrap()
    .expect("the registered user is found");
    assert_eq!(found.user_id, registered.user_id);
    assert_eq!(found.username, "grace_h");
    assert_eq!(found.display_name, "grace_h");
    assert!(found.password_hash.starts_with("$argon2id$"));

    let missing = within(find_user_by_email(
        &other_node,
        &Email::parse("nobody@example.com").unwrap(),
    ))
    .await
    .unwrap();
    assert!(missing.is_none());
}

on_both_backends!(login_lookup_finds_registered_user);

async fn login_lookup_ignores_unfinished_registration(store: &TestStore) {
    stalled_claim(store, "half@example.com", Uuid::new_v4(), base_time()).await;

    let found = within(find_user_by_email(
        &store.bus(),
        &Email::parse("half@example.com").unwrap(),
    ))
    .await
    .unwrap();

    assert!(found.is_none());
}

on_both_backends!(login_lookup_ignores_unfinished_registration);

async fn concurrent_registrations_same_email_one_wins(store: &TestStore) {
    const ATTEMPTS: usize = 8;
    let nodes = [store.bus(), store.bus()];

    let mut tasks = Vec::new();
    for index in 0..ATTEMPTS {
        let bus = nodes[index % 2].clone();
        tasks.push(tokio::spawn(async move {
            register_user(
                &bus,
                registration("same@example.com", &format!("racer_{index}"), Utc::now()),
                metadata(),
            )
            .await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match within(task).await.expect("a registration task panicked") {
            Ok(registered) => winners.push(registered.user_id),
            Err(RegistrationError::EmailTaken) => {}
            Err(other) => panic!("unexpected registration error: {other:?}"),
        }
    }

    assert_eq!(winners.len(), 1, "exactly one registration wins");
    let found = within(find_user_by_email(
        &nodes[0],
        &Email::parse("same@example.com").unwrap(),
    ))
    .await
    .unwrap()
    .expect("the winner is registered");
    assert_eq!(found.user_id, winners[0]);
    // Every loser stopped at step 1, so no other username was claimed.
    for index in 0..ATTEMPTS {
        let username = format!("racer_{index}");
        let claims = claim_events(store, &username_stream(&username)).await;
        if username == found.username {
            assert_eq!(claims.len(), 1, "{username}: {claims:?}");
        } else {
            assert!(claims.is_empty(), "{username}: {claims:?}");
        }
    }
}

on_both_backends!(concurrent_registrations_same_email_one_wins, multi_thread);

async fn username_taken_releases_email_claim(store: &TestStore) {
    let bus = store.bus();
    within(register_user(
        &bus,
        registration("first@example.com", "Taken_Name", base_time()),
        metadata(),
    ))
    .await
    .unwrap();

    // Usernames are compared without case.
    let error = within(register_user(
        &bus,
        registration("second@example.com", "taken_name", base_time()),
        metadata(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(error, RegistrationError::UsernameTaken),
        "{error:?}"
    );

    let claims = claim_events(store, &email_stream("second@example.com")).await;
    assert!(
        matches!(
            &claims[..],
            [ClaimEvent::KeyClaimed(claimed), ClaimEvent::KeyReleased(released)]
                if claimed.owner_id == released.owner_id
        ),
        "{claims:?}"
    );

    // The released address can be registered at once with a free username.
    within(register_user(
        &bus,
        registration("second@example.com", "other_name", base_time()),
        metadata(),
    ))
    .await
    .unwrap();
}

on_both_backends!(username_taken_releases_email_claim);

async fn email_taken_by_registered_user(store: &TestStore) {
    let bus = store.bus();
    let first = within(register_user(
        &bus,
        registration("owner@example.com", "owner", base_time()),
        metadata(),
    ))
    .await
    .unwrap();

    // Long after the grace period, the claim of a registered user is still never taken over.
    let much_later = base_time() + chrono::Duration::days(30);
    let error = within(register_user(
        &bus,
        registration("Owner@Example.com", "someone_else", much_later),
        metadata(),
    ))
    .await
    .unwrap_err();

    assert!(matches!(error, RegistrationError::EmailTaken), "{error:?}");
    let events = user_events(store, first.user_id).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events[0], UserEvent::UserRegistered(_)));
    let claims = claim_events(store, &email_stream("owner@example.com")).await;
    assert_eq!(claims.len(), 1, "{claims:?}");
}

on_both_backends!(email_taken_by_registered_user);

async fn stalled_claim_taken_over_after_grace(store: &TestStore) {
    let bus = store.bus_with(BusOptions {
        claim_grace_period: Duration::from_secs(5 * 60),
        ..BusOptions::default()
    });
    let crashed_user = Uuid::new_v4();
    stalled_claim(store, "stuck@example.com", crashed_user, base_time()).await;

    // Within the grace period the crashed registration might still be running.
    let early = within(register_user(
        &bus,
        registration(
            "stuck@example.com",
            "newcomer",
            base_time() + chrono::Duration::minutes(4),
        ),
        metadata(),
    ))
    .await
    .unwrap_err();
    assert!(matches!(early, RegistrationError::EmailTaken), "{early:?}");
    assert!(user_events(store, crashed_user).await.is_empty());

    let registered = within(register_user(
        &bus,
        registration(
            "stuck@example.com",
            "newcomer",
            base_time() + chrono::Duration::minutes(6),
        ),
        metadata(),
    ))
    .await
    .unwrap();

    let crashed_events = user_events(store, crashed_user).await;
    assert!(
        matches!(&crashed_events[..], [UserEvent::RegistrationAbandoned(abandoned)] if abandoned.user_id == crashed_user),
        "{crashed_events:?}"
    );
    let claims = claim_events(store, &email_stream("stuck@example.com")).await;
    match claims.last() {
        Some(ClaimEvent::KeyClaimed(claimed)) => {
            assert_eq!(claimed.owner_id, registered.user_id);
            assert_eq!(claimed.taken_over_from, Some(crashed_user));
        }
        other => panic!("expected a takeover claim, got {other:?}"),
    }

    // The crashed registration can never complete now.
    let resumed = within(bus.execute::<User>(
        AggregateId::from_uuid(crashed_user),
        UserCommand::Register {
            user_id: crashed_user,
            email: Email::parse("stuck@example.com").unwrap(),
            username: Username::parse("crashed").unwrap(),
            display_name: DisplayName::parse("Crashed").unwrap(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            now: base_time() + chrono::Duration::minutes(7),
        },
        metadata(),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(
            resumed,
            CommandError::Domain(UserError::RegistrationAbandoned { user_id }) if user_id == crashed_user
        ),
        "{resumed:?}"
    );
}

on_both_backends!(stalled_claim_taken_over_after_grace);
