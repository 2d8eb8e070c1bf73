//! Rules of the user aggregate, as given events, a command and the expected outcome.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use secureconnect_events::domain::{RegistrationAbandoned, UserEvent, UserRegistered};
use uuid::Uuid;

use super::{User, UserCommand, UserError};
use crate::input::{DisplayName, Email, Username};

type UserTest = TestFramework<User>;

const USER_ID: Uuid = Uuid::from_u128(0x1111);

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn register() -> UserCommand {
    UserCommand::Register {
        user_id: USER_ID,
        email: Email::parse("Ada@Example.com").unwrap(),
        username: Username::parse("Ada_L").unwrap(),
        display_name: DisplayName::parse("Ada Lovelace").unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        now: now(),
    }
}

fn registered() -> UserEvent {
    UserEvent::UserRegistered(UserRegistered {
        user_id: USER_ID,
        email: "ada@example.com".to_owned(),
        username: "Ada_L".to_owned(),
        display_name: "Ada Lovelace".to_owned(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
        registered_at: now(),
    })
}

fn abandoned() -> UserEvent {
    UserEvent::RegistrationAbandoned(RegistrationAbandoned {
        user_id: USER_ID,
        abandoned_at: now(),
    })
}

#[test]
fn register_on_empty_stream_records_registration() {
    UserTest::with(())
        .given_no_previous_events()
        .when(register())
        .then_expect_events(vec![registered()]);
}

#[test]
fn register_twice_is_rejected() {
    UserTest::with(())
        .given(vec![registered()])
        .when(register())
        .then_expect_error(UserError::AlreadyRegistered { user_id: USER_ID });
}

#[test]
fn register_after_abandon_is_rejected() {
    UserTest::with(())
        .given(vec![abandoned()])
        .when(register())
        .then_expect_error(UserError::RegistrationAbandoned { user_id: USER_ID });
}

#[test]
fn abandon_on_empty_stream_fences_registration() {
    UserTest::with(())
        .given_no_previous_events()
        .when(UserCommand::Abandon {
            user_id: USER_ID,
            now: now(),
        })
        .then_expect_events(vec![abandoned()]);
}

#[test]
fn abandon_of_registered_user_is_rejected() {
    UserTest::with(())
        .given(vec![registered()])
        .when(UserCommand::Abandon {
            user_id: USER_ID,
            now: now(),
        })
        .then_expect_error(UserError::AlreadyRegistered { user_id: USER_ID });
}

#[test]
fn abandon_twice_records_nothing() {
    UserTest::with(())
        .given(vec![abandoned()])
        .when(UserCommand::Abandon {
            user_id: USER_ID,
            now: now(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn registered_state_keeps_login_fields() {
    let mut user = User::default();
    assert!(user.registered().is_none());
    cqrs_es::Aggregate::apply(&mut user, registered());
    let account = user.registered().expect("registered");
    assert_eq!(account.user_id, USER_ID);
    assert_eq!(account.email, "ada@example.com");
    assert_eq!(account.username, "Ada_L");
    assert!(account.password_hash.starts_with("$argon2id$"));
    assert!(!format!("{account:?}").contains("argon2id"));
}

#[test]
fn register_command_debug_hides_password_hash() {
    let debug = format!("{:?}", register());
    assert!(!debug.contains("argon2id"), "{debug}");
    assert!(debug.contains("ada@example.com"), "{debug}");
}
