//! The connection to NATS and the JetStream resources behind it: the event stream, created or
//! checked at startup, and the snapshot and ticket buckets. [`JetStreamBackend`] connects once
//! and hands out the log, the stores and the ephemeral bus, which all share that connection.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tracing::{debug, info, warn};

use secureconnect_events::LogError;

use crate::buckets::{BucketSpec, open_bucket};
use crate::config::JetStreamConfig;
use crate::ephemeral::NatsEphemeralBus;
use crate::log::JetStreamLog;
use crate::snapshots::JetStreamSnapshotStore;
use crate::tickets::{JetStreamTicketStore, TICKET_MAX_AGE};
use crate::unavailable;

/// How long JetStream remembers a commit id to suppress a repeated append.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The state the log, the stores and the bus share: one connection and one JetStream context.
pub(crate) struct Shared {
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: jetstream::Context,
    /// The event stream's handle. Its cached info is the one read at connect time and is
    /// used only for the stream's name; live state comes from fresh requests.
    pub(crate) stream: stream::Stream,
    pub(crate) config: JetStreamConfig,
}

/// One connection to NATS and the JetStream resources of one SecureConnect deployment.
/// Cloning is cheap: every clone and every handle it returns shares the connection.
#[derive(Clone)]
pub struct JetStreamBackend {
    shared: Arc<Shared>,
    snapshots: kv::Store,
    tickets: kv::Store,
}

impl JetStreamBackend {
    /// Connects to `config.url`, then creates the event stream and both buckets if they are
    /// missing. An existing stream must already have the settings of an append-only log:
    /// deletes and purges denied, no limits and the expected subjects. Otherwise this fails
    /// with an error that names each wrong setting, and the stream is not used.
    pub async fn connect(config: JetStreamConfig) -> Result<JetStreamBackend, LogError> {
        config.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name("secureconnect")
            .connection_timeout(config.request_timeout)
            .request_timeout(Some(config.request_timeout))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => info!("connected to NATS"),
                    async_nats::Event::Disconnected => warn!("disconnected from NATS"),
                    other => warn!(event = %other, "NATS connection event"),
                }
            })
            .connect(config.url.as_str())
            .await
            .map_err(|error| unavailable(format!("failed to connect to {}", config.url), error))?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());

        let stream = open_event_stream(&jetstream, &config).await?;
        let snapshots = open_bucket(
            &jetstream,
            BucketSpec {
                name: config.snapshot_bucket(),
                description: "SecureConnect aggregate snapshots",
                max_age: Duration::ZERO,
                replicas: config.replicas,
            },
        )
        .await?;
        let tickets = open_bucket(
            &jetstream,
            BucketSpec {
                name: config.ticket_bucket(),
                description: "SecureConnect single-use tickets",
                max_age: TICKET_MAX_AGE,
                replicas: config.replicas,
            },
        )
        .await?;

        Ok(JetStreamBackend {
            shared: Arc::new(Shared {
                client,
                jetstream,
                stream,
                config,
            }),
            snapshots,
            tickets,
        })
    }

    pub fn config(&self) -> &JetStreamConfig {
        &self.shared.config
    }

    pub fn event_log(&self) -> JetStreamLog {
        JetStreamLog::new(self.shared.clone())
    }

    pub fn snapshot_store(&self) -> JetStreamSnapshotStore {
        JetStreamSnapshotStore::new(self.snapshots.clone())
    }

    pub fn ticket_store(&self) -> JetStreamTicketStore {
        JetStreamTicketStore::new(self.tickets.clone())
    }

    pub fn ephemeral_bus(&self) -> NatsEphemeralBus {
        NatsEphemeralBus::new(
            self.shared.client.clone(),
            self.shared.config.ephemeral_prefix.clone(),
            self.shared.config.request_timeout,
        )
    }

    /// Deletes the event stream with every event in it, and both buckets. Meant for tests
    /// that create a stream of their own. The append-only settings forbid deleting messages,
    /// not deleting the whole stream.
    pub async fn delete_all(&self) -> Result<(), LogError> {
        let jetstream = &self.shared.jetstream;
        let config = &self.shared.config;
        jetstream
            .delete_stream(&config.stream_name)
            .await
            .map_err(|error| {
                unavailable(
                    format!("failed to delete stream {}", config.stream_name),
                    error,
                )
            })?;
        for bucket in [config.snapshot_bucket(), config.ticket_bucket()] {
            jetstream
                .delete_key_value(&bucket)
                .await
                .map_err(|error| unavailable(format!("failed to delete bucket {bucket}"), error))?;
        }
        Ok(())
    }
}

/// Builds the settings of the event stream: everything kept, nothing deleted, one subject
/// per aggregate under the prefix.
fn event_stream_config(config: &JetStreamConfig) -> stream::Config {
    stream::Config {
        name: config.stream_name.clone(),
        description: Some("SecureConnect domain events, append-only".to_owned()),
        subjects: vec![stream_subjects(config)],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        max_consumers: -1,
        // No limit is set, so nothing is ever discarded. Should someone add one, `New`
        // rejects appends instead of dropping old events.
        discard: stream::DiscardPolicy::New,
        num_replicas: config.replicas,
        duplicate_window: DUPLICATE_WINDOW,
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    }
}

fn stream_subjects(config: &JetStreamConfig) -> String {
    format!("{}.>", config.subject_prefix)
}

async fn open_event_stream(
    jetstream: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<stream::Stream, LogError> {
    let stream = match find_stream(jetstream, &config.stream_name).await? {
        Some(stream) => stream,
        None => match jetstream.create_stream(event_stream_config(config)).await {
            Ok(stream) => {
                info!(stream = %config.stream_name, "created the event stream");
                return Ok(stream);
            }
            Err(error) => {
                // Another node may have created it in the meantime, so read it again.
                debug!(%error, "creating the event stream failed, reading it again");
                find_stream(jetstream, &config.stream_name)
                    .await?
                    .ok_or_else(|| {
                        unavailable(
                            format!("failed to create stream {}", config.stream_name),
                            error,
                        )
                    })?
            }
        },
    };
    check_event_stream(&stream.cached_info().config, config)?;
    Ok(stream)
}

async fn find_stream(
    jetstream: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Stream>, LogError> {
    match jetstream.get_stream(name).await {
        Ok(stream) => Ok(Some(stream)),
        Err(error) => match error.kind() {
            jetstream::context::GetStreamErrorKind::JetStream(inner)
                if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(unavailable(format!("failed to read stream {name}"), error)),
        },
    }
}

/// Rejects an existing stream whose settings could lose, alter or misplace events, naming
/// every wrong setting at once.
fn check_event_stream(existing: &stream::Config, config: &JetStreamConfig) -> Result<(), LogError> {
    let mut problems = Vec::new();
    let expected_subjects = vec![stream_subjects(config)];
    if existing.subjects != expected_subjects {
        problems.push(format!(
            "subjects are {:?}, expected {:?}",
            existing.subjects, expected_subjects
        ));
    }
    if !existing.deny_delete {
        problems.push("deny_delete is false, so messages can be deleted".to_owned());
    }
    if !existing.deny_purge {
        problems.push("deny_purge is false, so the stream can be purged".to_owned());
    }
    if existing.allow_rollup {
        problems.push("allow_rollup_hdrs is true, so a rollup can remove messages".to_owned());
    }
    if existing.retention != stream::RetentionPolicy::Limits {
        problems.push(format!(
            "retention is {:?}, expected Limits",
            existing.retention
        ));
    }
    for (setting, value) in [
        ("max_msgs", existing.max_messages),
        ("max_bytes", existing.max_bytes),
        ("max_msgs_per_subject", existing.max_messages_per_subject),
    ] {
        if value > 0 {
            problems.push(format!("{setting} is {value}, expected no limit (-1)"));
        }
    }
    if !existing.max_age.is_zero() {
        problems.push(format!(
            "max_age is {:?}, expected no limit (0)",
            existing.max_age
        ));
    }
    if existing.storage != stream::StorageType::File {
        problems.push(format!("storage is {:?}, expected File", existing.storage));
    }
    if !existing.allow_direct {
        problems.push("allow_direct is false, but reads use direct get".to_owned());
    }
    if existing.sealed {
        problems.push("the stream is sealed and accepts no appends".to_owned());
    }
    if existing.mirror.is_some() {
        problems.push("the stream is a mirror and accepts no appends".to_owned());
    }
    if !problems.is_empty() {
        return Err(LogError::Unavailable(format!(
            "existing stream {} cannot be used as the append-only event log: {}. Fix the \
             stream's settings or configure another stream_name",
            config.stream_name,
            problems.join("; ")
        )));
    }

    if existing.num_replicas != config.replicas {
        warn!(
            stream = %config.stream_name,
            existing = existing.num_replicas,
            configured = config.replicas,
            "the event stream's replica count differs from the configured one; using it as is"
        );
    }
    if existing.duplicate_window != DUPLICATE_WINDOW {
        warn!(
            stream = %config.stream_name,
            existing = ?existing.duplicate_window,
            "the event stream's duplicate window differs from two minutes; repeated commits are \
             recognized only within it"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_stream_passes_its_own_check() {
        let config = JetStreamConfig::default();

        assert!(check_event_stream(&event_stream_config(&config), &config).is_ok());
    }

    #[test]
    fn stream_allowing_purges_is_rejected_by_name() {
        let config = JetStreamConfig::default();
        let existing = stream::Config {
            deny_purge: false,
            max_age: Duration::from_secs(3600),
            ..event_stream_config(&config)
        };

        let error = check_event_stream(&existing, &config)
            .expect_err("a purgeable stream must be rejected")
            .to_string();

        assert!(error.contains("deny_purge"), "{error}");
        assert!(error.contains("max_age"), "{error}");
    }

    #[test]
    fn stream_with_other_subjects_is_rejected() {
        let config = JetStreamConfig::default();
        let existing = stream::Config {
            subjects: vec!["sc.>".to_owned()],
            ..event_stream_config(&config)
        };

        let error = check_event_stream(&existing, &config)
            .expect_err("other subjects must be rejected")
            .to_string();

        assert!(error.contains("subjects"), "{error}");
    }
}
