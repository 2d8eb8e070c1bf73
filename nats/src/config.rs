//! The settings of the JetStream backend: which server, which stream and buckets, which
//! subjects, and how long a request may take. Checked once when the backend connects.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use secureconnect_events::LogError;

/// Settings of the JetStream backend: the server URL and the names of its stream, buckets
/// and subjects.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JetStreamConfig {
    /// NATS server URL, such as `nats://127.0.0.1:4222`.
    pub url: String,
    /// Name of the stream that contains the domain events. The snapshot and ticket buckets are
    /// named after it (`<stream_name>_SNAPSHOTS`, `<stream_name>_TICKETS`), so it may contain
    /// only ASCII letters, digits, `-` and `_`.
    pub stream_name: String,
    /// Subject prefix of the event stream: a commit goes to
    /// `<subject_prefix>.<aggregate_type>.<aggregate_id>` and the stream captures
    /// `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// Subject prefix of ephemeral frames, published with core NATS on
    /// `<ephemeral_prefix>.<topic>`. It must lie outside the stream's subjects so that no
    /// frame is ever stored.
    pub ephemeral_prefix: String,
    /// Replicas of the stream and buckets: 1 on one server, 3 in a cluster.
    pub replicas: usize,
    /// Maximum wait for one server request or publish acknowledgement. A request that takes
    /// longer fails with [`LogError::Unavailable`]. Given in seconds in configuration files.
    #[serde(deserialize_with = "deserialize_seconds")]
    pub request_timeout: Duration,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream_name: "SECURECONNECT_EVENTS".to_owned(),
            subject_prefix: "sc.events".to_owned(),
            ephemeral_prefix: "sc.ephemeral".to_owned(),
            replicas: 1,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl JetStreamConfig {
    pub fn snapshot_bucket(&self) -> String {
        format!("{}_SNAPSHOTS", self.stream_name)
    }

    pub fn ticket_bucket(&self) -> String {
        format!("{}_TICKETS", self.stream_name)
    }

    /// Checks the settings before anything is sent to the server.
    pub(crate) fn validate(&self) -> Result<(), LogError> {
        let invalid = |reason: String| {
            Err(LogError::Unavailable(format!(
                "invalid JetStream configuration: {reason}"
            )))
        };
        let name_is_valid = !self.stream_name.is_empty()
            && self
                .stream_name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !name_is_valid {
            return invalid(format!(
                "stream_name {:?} must be ASCII letters, digits, '-' or '_'",
                self.stream_name
            ));
        }
        for (setting, prefix) in [
            ("subject_prefix", &self.subject_prefix),
            ("ephemeral_prefix", &self.ephemeral_prefix),
        ] {
            if !is_literal_subject(prefix) {
                return invalid(format!(
                    "{setting} {prefix:?} must be dot-separated tokens of ASCII letters, \
                     digits, '-' or '_'"
                ));
            }
        }
        let ephemeral_inside_stream = self.ephemeral_prefix == self.subject_prefix
            || self
                .ephemeral_prefix
                .starts_with(&format!("{}.", self.subject_prefix));
        if ephemeral_inside_stream {
            return invalid(format!(
                "ephemeral_prefix {:?} lies inside the stream's subjects {:?}, so ephemeral \
                 frames would be stored: choose a prefix outside it",
                self.ephemeral_prefix,
                format!("{}.>", self.subject_prefix)
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return invalid(format!("replicas is {}, expected 1 to 5", self.replicas));
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be above zero".to_owned());
        }
        Ok(())
    }
}

/// Returns true for a subject of one or more tokens of ASCII letters, digits, `-` and `_`,
/// separated by dots: no wildcards, no empty tokens.
pub(crate) fn is_literal_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

/// Reads a duration written as a number of seconds, such as `5` or `2.5`.
fn deserialize_seconds<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    let seconds = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).map_err(|error| {
        serde::de::Error::custom(format!(
            "invalid request_timeout {seconds}: {error}; expected a positive number of seconds"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(JetStreamConfig::default().validate().is_ok());
    }

    #[test]
    fn request_timeout_reads_seconds() {
        let config: JetStreamConfig =
            serde_json::from_str(r#"{"request_timeout": 2.5}"#).expect("valid configuration");

        assert_eq!(config.request_timeout, Duration::from_millis(2500));
        assert_eq!(config.stream_name, "SECURECONNECT_EVENTS");
    }

    #[test]
    fn ephemeral_prefix_inside_stream_is_rejected() {
        let config = JetStreamConfig {
            ephemeral_prefix: "sc.events.live".to_owned(),
            ..JetStreamConfig::default()
        };

        let error = config
            .validate()
            .expect_err("overlapping prefixes must be rejected");
        assert!(error.to_string().contains("ephemeral_prefix"), "{error}");
    }

    #[test]
    fn wildcard_prefix_is_rejected() {
        let config = JetStreamConfig {
            subject_prefix: "sc.*".to_owned(),
            ..JetStreamConfig::default()
        };

        assert!(config.validate().is_err());
    }

    #[test]
    fn dotted_stream_name_is_rejected() {
        let config = JetStreamConfig {
            stream_name: "SC.EVENTS".to_owned(),
            ..JetStreamConfig::default()
        };

        assert!(config.validate().is_err());
    }
}
