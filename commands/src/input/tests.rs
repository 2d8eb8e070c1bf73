//! Tests of the input rules, one table of accepted and rejected values per type.

use serde_json::json;

use super::*;

fn rule_of(error: InputError) -> String {
    match error {
        InputError::Invalid { rule, .. } => rule,
        other => panic!("expected an invalid value, got {other:?}"),
    }
}

#[test]
fn email_is_trimmed_and_lower_cased() {
    let email = Email::parse("  Alice.Smith@Example.COM \n").unwrap();
    assert_eq!(email.as_str(), "alice.smith@example.com");
}

#[test]
fn email_accepts_plausible_addresses() {
    for value in [
        "a@b.co",
        "first.last+tag@mail.example.org",
        "x_y@sub.domain.io",
    ] {
        assert!(Email::parse(value).is_ok(), "{value} should be accepted");
    }
}

#[test]
fn email_rejects_implausible_addresses() {
    let cases = [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("alice.example.com", "must contain an '@'"),
        ("a@b@example.com", "must contain exactly one '@'"),
        ("@example.com", "must have a non-empty part before the '@'"),
        ("alice@localhost", "must have a domain"),
        ("alice@example.", "must have a domain"),
        ("alice@.example.com", "must have a domain"),
        ("alice@example..com", "must have a domain"),
        ("al ice@example.com", "must not contain whitespace"),
    ];
    for (value, expected_rule) in cases {
        let error = Email::parse(value).unwrap_err();
        assert_eq!(error.field(), "email");
        let rule = rule_of(error);
        assert!(
            rule.starts_with(expected_rule),
            "{value:?}: rule {rule:?} should start with {expected_rule:?}"
        );
    }
}

#[test]
fn email_length_limit_is_254_bytes() {
    let domain = ".example.com";
    let longest = format!(
        "{}@{}{domain}",
        "a".repeat(64),
        "b".repeat(254 - 65 - domain.len())
    );
    assert_eq!(longest.len(), 254);
    assert!(Email::parse(&longest).is_ok());

    let too_long = format!("a{longest}");
    assert_eq!(
        rule_of(Email::parse(&too_long).unwrap_err()),
        "must be at most 254 bytes"
    );
}

#[test]
fn username_accepts_allowed_characters() {
    for value in ["abc", "Alice_01", "a.b-c", &"z".repeat(30)] {
        assert_eq!(Username::parse(value).unwrap().as_str(), value);
    }
}

#[test]
fn username_rejects_bad_length_and_characters() {
    assert_eq!(
        rule_of(Username::parse("ab").unwrap_err()),
        "must be 3 to 30 characters long"
    );
    assert_eq!(
        rule_of(Username::parse(&"a".repeat(31)).unwrap_err()),
        "must be 3 to 30 characters long"
    );
    for value in ["al ice", "alice!", "élodie", "bob@home"] {
        let error = Username::parse(value).unwrap_err();
        assert_eq!(error.field(), "username");
        assert!(rule_of(error).contains("only ASCII letters"), "{value:?}");
    }
}

#[test]
fn username_normalizes_case_for_uniqueness() {
    let typed = Username::parse("Alice_01").unwrap();
    assert_eq!(typed.as_str(), "Alice_01");
    assert_eq!(typed.normalized(), "alice_01");
}

#[test]
fn display_name_is_trimmed_and_bounded() {
    assert_eq!(
        DisplayName::parse("  Ada Lovelace ").unwrap().as_str(),
        "Ada Lovelace"
    );
    assert_eq!(
        DisplayName::parse(&"é".repeat(100))
            .unwrap()
            .as_str()
            .chars()
            .count(),
        100
    );
    for value in ["", "   ", &"é".repeat(101)] {
        let error = DisplayName::parse(value).unwrap_err();
        assert_eq!(error.field(), "display_name");
        assert_eq!(
            rule_of(error),
            "must be 1 to 100 characters long after trimming"
        );
    }
}

#[test]
fn display_name_rejects_control_characters() {
    assert_eq!(
        rule_of(DisplayName::parse("Ada\u{0}Lovelace").unwrap_err()),
        "must not contain control characters"
    );
    assert!(DisplayName::parse("Ada\nLovelace").is_err());
}

#[test]
fn password_length_counts_characters() {
    assert!(Password::parse("12345678").is_ok());
    assert!(Password::parse(&"ü".repeat(128)).is_ok());
    for value in ["1234567", &"x".repeat(129)] {
        let error = Password::parse(value).unwrap_err();
        assert_eq!(error.field(), "password");
        assert_eq!(rule_of(error), "must be 8 to 128 characters long");
    }
}

#[test]
fn password_kept_verbatim_and_redacted() {
    let password = Password::parse(" hunter2 secret ").unwrap();
    assert_eq!(password.expose(), " hunter2 secret ");
    let debug = format!("{password:?}");
    assert!(!debug.contains("hunter2"), "debug output leaks: {debug}");
}

#[test]
fn conversation_title_is_trimmed_and_bounded() {
    assert_eq!(ConversationTitle::parse(" Team ").unwrap().as_str(), "Team");
    for value in ["", "  ", &"t".repeat(101)] {
        let error = ConversationTitle::parse(value).unwrap_err();
        assert_eq!(error.field(), "title");
        assert_eq!(
            rule_of(error),
            "must be 1 to 100 characters long after trimming"
        );
    }
}

#[test]
fn message_content_is_opaque() {
    let content = MessageContent::parse("  \u{1}ciphertext\n".to_owned()).unwrap();
    assert_eq!(content.as_str(), "  \u{1}ciphertext\n");
}

#[test]
fn message_content_must_not_be_empty() {
    let error = MessageContent::parse(String::new()).unwrap_err();
    assert!(!error.is_too_large());
    assert_eq!(error.field(), "content");
    assert_eq!(rule_of(error), "must not be empty");
}

#[test]
fn message_content_over_64_kib_is_too_large() {
    assert!(MessageContent::parse("x".repeat(65_536)).is_ok());
    let error = MessageContent::parse("x".repeat(65_537)).unwrap_err();
    assert!(error.is_too_large());
    assert_eq!(
        error,
        InputError::TooLarge {
            field: "content",
            max_bytes: 65_536,
            actual_bytes: 65_537,
        }
    );
}

#[test]
fn metadata_accepts_flat_objects_and_null() {
    let metadata = MessageMetadata::parse(json!({
        "file_name": "photo.jpg",
        "width": 1024,
        "ratio": 1.5,
        "is_forwarded": false,
    }))
    .unwrap();
    assert_eq!(metadata.as_map().len(), 4);
    assert!(
        MessageMetadata::parse(Value::Null)
            .unwrap()
            .as_map()
            .is_empty()
    );
}

#[test]
fn metadata_rejects_nested_and_null_values() {
    for (value, key) in [
        (json!({"a": {"b": 1}}), "a"),
        (json!({"list": [1, 2]}), "list"),
        (json!({"missing": null}), "missing"),
    ] {
        let rule = rule_of(MessageMetadata::parse(value).unwrap_err());
        assert_eq!(
            rule,
            format!("the value of key {key:?} must be a string, number or boolean")
        );
    }
}

#[test]
fn metadata_must_be_an_object() {
    for value in [json!([1]), json!("text"), json!(3)] {
        assert_eq!(
            rule_of(MessageMetadata::parse(value).unwrap_err()),
            "must be a JSON object"
        );
    }
}

#[test]
fn metadata_limits_keys() {
    let mut at_limit = Map::new();
    for index in 0..32 {
        at_limit.insert(format!("key{index}"), json!(index));
    }
    assert!(MessageMetadata::parse(Value::Object(at_limit.clone())).is_ok());

    at_limit.insert("one_more".to_owned(), json!(true));
    assert_eq!(
        rule_of(MessageMetadata::parse(Value::Object(at_limit)).unwrap_err()),
        "has 33 keys, but at most 32 are allowed"
    );

    assert!(MessageMetadata::parse(json!({ "k".repeat(100): 1 })).is_ok());
    for key in [String::new(), "k".repeat(101)] {
        let rule = rule_of(MessageMetadata::parse(json!({ key.clone(): 1 })).unwrap_err());
        assert_eq!(rule, format!("key {key:?} must be 1 to 100 bytes long"));
    }
}

#[test]
fn metadata_limits_string_values() {
    assert!(MessageMetadata::parse(json!({"caption": "c".repeat(1_000)})).is_ok());
    assert_eq!(
        rule_of(MessageMetadata::parse(json!({"caption": "c".repeat(1_001)})).unwrap_err()),
        "the value of key \"caption\" must be at most 1000 bytes"
    );
}

#[test]
fn metadata_limits_serialized_size() {
    // Nine values of 1,000 bytes pass every per-value rule but exceed 8 KiB together.
    let mut object = Map::new();
    for index in 0..9 {
        object.insert(format!("part{index}"), json!("v".repeat(1_000)));
    }
    let rule = rule_of(MessageMetadata::parse(Value::Object(object)).unwrap_err());
    assert!(
        rule.ends_with("bytes as JSON, but at most 8192 are allowed"),
        "{rule}"
    );
}

#[test]
fn nul_characters_are_rejected() {
    assert!(MessageContent::parse("nul \0 here".to_owned()).is_err());
    assert!(MessageMetadata::parse(json!({"caption": "a\u{0}b"})).is_err());
    assert!(MessageMetadata::parse(json!({"a\u{0}b": 1})).is_err());
    assert!(ConversationTitle::parse("team\0").is_err());
    assert!(Email::parse("a\0b@example.com").is_err());
    assert!(DisplayName::parse("A\0").is_err());
}

#[test]
fn title_rejects_control_characters() {
    assert!(ConversationTitle::parse("line\nbreak").is_err());
    assert!(ConversationTitle::parse("plain title").is_ok());
}
