//! Validated input types. The API parses request fields into these at the edge, and the
//! aggregates trust them, so a rule about the shape of a value is checked in exactly one place.
//! Each `parse` error names the field and the rule it broke, in words fit for a 400 response.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// A request field that breaks a rule of its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The value is malformed, so the API responds with 400.
    #[error("invalid {field}: {rule}")]
    Invalid { field: &'static str, rule: String },
    /// The value is larger than its limit, so the API responds with 413. Only [`MessageContent`]
    /// returns this kind, because only message bodies are expected to be large.
    #[error("{field} is too large: {actual_bytes} bytes, the maximum is {max_bytes} bytes")]
    TooLarge {
        field: &'static str,
        max_bytes: usize,
        actual_bytes: usize,
    },
}

impl InputError {
    /// Returns the name of the request field, as it appears in JSON bodies.
    pub fn field(&self) -> &'static str {
        match self {
            InputError::Invalid { field, .. } | InputError::TooLarge { field, .. } => field,
        }
    }

    /// Returns whether the value broke a size limit, which the API responds to with 413.
    pub fn is_too_large(&self) -> bool {
        matches!(self, InputError::TooLarge { .. })
    }

    fn invalid(field: &'static str, rule: impl Into<String>) -> InputError {
        InputError::Invalid {
            field,
            rule: rule.into(),
        }
    }
}

/// An email address: trimmed, lower-cased, with one `@`, a non-empty local part and a domain
/// of dot-separated non-empty labels, at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_BYTES: usize = 254;

    pub fn parse(value: &str) -> Result<Email, InputError> {
        const FIELD: &str = "email";
        let normalized = value.trim().to_lowercase();
        if normalized.is_empty() {
            return Err(InputError::invalid(FIELD, "must not be empty"));
        }
        if normalized.len() > Email::MAX_BYTES {
            return Err(InputError::invalid(
                FIELD,
                format!("must be at most {} bytes", Email::MAX_BYTES),
            ));
        }
        if normalized
            .chars()
            .any(|character| character.is_whitespace() || character.is_control())
        {
            return Err(InputError::invalid(
                FIELD,
                "must not contain whitespace or control characters",
            ));
        }
        let Some((local, domain)) = normalized.split_once('@') else {
            return Err(InputError::invalid(FIELD, "must contain an '@'"));
        };
        if domain.contains('@') {
            return Err(InputError::invalid(FIELD, "must contain exactly one '@'"));
        }
        if local.is_empty() {
            return Err(InputError::invalid(
                FIELD,
                "must have a non-empty part before the '@'",
            ));
        }
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(InputError::invalid(
                FIELD,
                "must have a domain of dot-separated names after the '@', such as example.com",
            ));
        }
        Ok(Email(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A username: 3 to 30 ASCII letters, digits, `_`, `.` or `-`, kept as typed. Uniqueness
/// ignores case, through [`Username::normalized`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub const MIN_CHARACTERS: usize = 3;
    pub const MAX_CHARACTERS: usize = 30;

    pub fn parse(value: &str) -> Result<Username, InputError> {
        const FIELD: &str = "username";
        if let Some(character) = value
            .chars()
            .find(|character| !(character.is_ascii_alphanumeric() || "_.-".contains(*character)))
        {
            return Err(InputError::invalid(
                FIELD,
                format!(
                    "contains {character:?}, but only ASCII letters, digits, '_', '.' and '-' are allowed"
                ),
            ));
        }
        // Every accepted character is ASCII, so the byte length is the character count.
        if !(Username::MIN_CHARACTERS..=Username::MAX_CHARACTERS).contains(&value.len()) {
            return Err(InputError::invalid(
                FIELD,
                format!(
                    "must be {} to {} characters long",
                    Username::MIN_CHARACTERS,
                    Username::MAX_CHARACTERS
                ),
            ));
        }
        Ok(Username(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the lower-cased form that uniqueness is decided on.
    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A display name: 1 to 100 characters after trimming, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARACTERS: usize = 100;

    pub fn parse(value: &str) -> Result<DisplayName, InputError> {
        const FIELD: &str = "display_name";
        let trimmed = trimmed_text(FIELD, value, DisplayName::MAX_CHARACTERS)?;
        if trimmed.chars().any(char::is_control) {
            return Err(InputError::invalid(
                FIELD,
                "must not contain control characters",
            ));
        }
        Ok(DisplayName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A password in clear, 8 to 128 characters, kept as typed (not trimmed). Its `Debug` output
/// hides the value, and the memory is zeroed on drop.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARACTERS: usize = 8;
    pub const MAX_CHARACTERS: usize = 128;

    pub fn parse(value: &str) -> Result<Password, InputError> {
        let characters = value.chars().count();
        if !(Password::MIN_CHARACTERS..=Password::MAX_CHARACTERS).contains(&characters) {
            return Err(InputError::invalid(
                "password",
                format!(
                    "must be {} to {} characters long",
                    Password::MIN_CHARACTERS,
                    Password::MAX_CHARACTERS
                ),
            ));
        }
        Ok(Password(SecretString::from(value)))
    }

    /// Returns the password in clear, for hashing or verifying it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Password([REDACTED])")
    }
}

/// A conversation title: 1 to 100 characters after trimming, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationTitle(String);

impl ConversationTitle {
    pub const MAX_CHARACTERS: usize = 100;

    pub fn parse(value: &str) -> Result<ConversationTitle, InputError> {
        const FIELD: &str = "title";
        let trimmed = trimmed_text(FIELD, value, ConversationTitle::MAX_CHARACTERS)?;
        if trimmed.chars().any(char::is_control) {
            return Err(InputError::invalid(
                FIELD,
                "must not contain control characters",
            ));
        }
        Ok(ConversationTitle(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConversationTitle {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A message body: non-empty, at most 64 KiB and without NUL characters. The server does not
/// otherwise inspect it, because it may be ciphertext, so it is not trimmed. NUL is rejected
/// because PostgreSQL text cannot store it; clients send binary ciphertext base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageContent(String);

impl MessageContent {
    pub const MAX_BYTES: usize = 65_536;

    pub fn parse(value: String) -> Result<MessageContent, InputError> {
        const FIELD: &str = "content";
        if value.is_empty() {
            return Err(InputError::invalid(FIELD, "must not be empty"));
        }
        if value.len() > MessageContent::MAX_BYTES {
            return Err(InputError::TooLarge {
                field: FIELD,
                max_bytes: MessageContent::MAX_BYTES,
                actual_bytes: value.len(),
            });
        }
        if value.contains('\0') {
            return Err(InputError::invalid(
                FIELD,
                "must not contain NUL characters; encode binary content as base64",
            ));
        }
        Ok(MessageContent(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Message metadata: a flat JSON object of at most 32 keys of 1 to 100 bytes, whose values
/// are strings of at most 1,000 bytes, numbers or booleans, at most 8 KiB serialized. Keys and
/// strings must not contain NUL, which PostgreSQL cannot store.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageMetadata(Map<String, Value>);

impl MessageMetadata {
    pub const MAX_KEYS: usize = 32;
    pub const MAX_KEY_BYTES: usize = 100;
    pub const MAX_STRING_VALUE_BYTES: usize = 1_000;
    pub const MAX_SERIALIZED_BYTES: usize = 8 * 1024;

    /// Parses the `metadata` field of a request; JSON `null` means no metadata.
    pub fn parse(value: Value) -> Result<MessageMetadata, InputError> {
        const FIELD: &str = "metadata";
        let object = match value {
            Value::Null => return Ok(MessageMetadata::default()),
            Value::Object(object) => object,
            _ => {
                return Err(InputError::invalid(FIELD, "must be a JSON object"));
            }
        };
        if object.len() > MessageMetadata::MAX_KEYS {
            return Err(InputError::invalid(
                FIELD,
                format!(
                    "has {} keys, but at most {} are allowed",
                    object.len(),
                    MessageMetadata::MAX_KEYS
                ),
            ));
        }
        for (key, entry) in &object {
            let has_nul =
                key.contains('\0') || matches!(entry, Value::String(text) if text.contains('\0'));
            if has_nul {
                return Err(InputError::invalid(
                    FIELD,
                    format!("key {key:?} or its value contains a NUL character"),
                ));
            }
            if key.is_empty() || key.len() > MessageMetadata::MAX_KEY_BYTES {
                return Err(InputError::invalid(
                    FIELD,
                    format!(
                        "key {key:?} must be 1 to {} bytes long",
                        MessageMetadata::MAX_KEY_BYTES
                    ),
                ));
            }
            match entry {
                Value::String(text) if text.len() > MessageMetadata::MAX_STRING_VALUE_BYTES => {
                    return Err(InputError::invalid(
                        FIELD,
                        format!(
                            "the value of key {key:?} must be at most {} bytes",
                            MessageMetadata::MAX_STRING_VALUE_BYTES
                        ),
                    ));
                }
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                Value::Null | Value::Array(_) | Value::Object(_) => {
                    return Err(InputError::invalid(
                        FIELD,
                        format!("the value of key {key:?} must be a string, number or boolean"),
                    ));
                }
            }
        }
        // Serializing a map of strings, numbers and booleans cannot fail.
        let serialized_bytes = serde_json::to_string(&object).map_or(usize::MAX, |json| json.len());
        if serialized_bytes > MessageMetadata::MAX_SERIALIZED_BYTES {
            return Err(InputError::invalid(
                FIELD,
                format!(
                    "is {serialized_bytes} bytes as JSON, but at most {} are allowed",
                    MessageMetadata::MAX_SERIALIZED_BYTES
                ),
            ));
        }
        Ok(MessageMetadata(object))
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// Trims `value` and checks that 1 to `max_characters` characters remain.
fn trimmed_text<'a>(
    field: &'static str,
    value: &'a str,
    max_characters: usize,
) -> Result<&'a str, InputError> {
    let trimmed = value.trim();
    let characters = trimmed.chars().count();
    if characters == 0 || characters > max_characters {
        return Err(InputError::invalid(
            field,
            format!("must be 1 to {max_characters} characters long after trimming"),
        ));
    }
    Ok(trimmed)
}

#[cfg(test)]
mod tests;
